"""Random replacement (随机替换): corrupt some decoder inputs with tokens drawn from a pool.

For each example independently: with probability `prob` it is corrupted; in a corrupted example
each candidate position — every segment-1 position, i.e. the target tokens and the final [SEP], as
in the authors' script — is replaced with probability `ratio` by a token drawn uniformly from
`pool`, by position (a token occurring twice in the pool is twice as likely):
- `target` (default, the article's text): the example's own segment-1 tokens, its final [SEP]
  included, i.e. exactly the candidate positions' original tokens;
- `sequence` (the authors' script): every real token of the example's concatenated input,
  `[CLS] source [SEP] target [SEP]`, special tokens included, padding excluded.
The labels were computed from the clean inputs before this hook runs, so the loss still predicts
the original tokens; the source (segment 0) and padding are never touched. A draw may equal the
token it replaces; that still counts as a replacement decision (see `decide`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..batching import Batch
from .base import Method, StepContext, check_range, param, register

POOLS = ("target", "sequence")


@register
@dataclass
class RandomReplace(Method):
    name: ClassVar[str] = "random_replace"
    prob: float = param(0.5, "share of examples that are corrupted")
    ratio: float = param(0.3, "share of target positions replaced within a corrupted example")
    pool: str = param("target", "where replacements are drawn from: the example's target tokens (the article) "
                      "or its whole input sequence (the authors' script)", POOLS)

    def __post_init__(self):
        check_range("prob", self.prob, 0.0, 1.0)
        check_range("ratio", self.ratio, 0.0, 1.0)

    def decide(self, batch: Batch, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(corrupted (B,), replaced (B, L), draws (B, L)): the random decisions of one batch.

        `draws` holds a pool token for every position; only the `replaced` ones are used. The same
        three random tensors are drawn whatever the outcome, so the stream advances identically.
        """
        ids = batch.input_ids
        B, L = ids.shape
        dev = ids.device
        candidate = (batch.segment_ids == 1) & batch.pad_mask
        corrupted = torch.rand(B, generator=gen, device=dev) < self.prob
        replaced = (torch.rand(B, L, generator=gen, device=dev) < self.ratio) & candidate & corrupted[:, None]
        pool = candidate if self.pool == "target" else batch.pad_mask
        n = pool.sum(1, keepdim=True)
        # Pool positions first, in order (a stable sort puts the 0s of ~pool before the 1s), so
        # the k-th pool position of row b is order[b, k]; k is uniform in [0, n_b).
        order = torch.sort((~pool).to(torch.uint8), dim=1, stable=True).indices
        k = (torch.rand(B, L, generator=gen, device=dev) * n).long()
        k = torch.minimum(k, (n - 1).clamp_min(0))  # rand·n can round up to n in float32
        draws = ids.gather(1, order.gather(1, k))
        return corrupted, replaced, draws

    def corrupt(self, batch: Batch, ctx: StepContext) -> Batch:
        _, replaced, draws = self.decide(batch, ctx.generator)
        return batch.replace(input_ids=torch.where(replaced, draws, batch.input_ids))
