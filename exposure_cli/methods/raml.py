"""Reward-augmented maximum likelihood, RAML (Norouzi et al., 2016), with the Hamming-distance sampler.

Beyond the study. Each step trains on a target sampled from the exponentiated-payoff distribution
around the reference, q(y | y*) ∝ exp(r(y, y*)/τ) with r the negative Hamming distance, instead of
the reference itself. Sampling is stratified as in the authors' code: first the number of
substitutions e ∈ {0..n} (n the target's tokens before its final [SEP]), with weight

    w(e) = C(n, e) · exp(−e/τ) · (V − 1)^(e − e/τ),

then e distinct target positions uniformly, each set to a token drawn uniformly among the V − 1
admissible tokens other than the one it replaces (so the realised Hamming distance is e). V is the
number of admissible tokens: the vocabulary without its special tokens ([PAD], [UNK], [CLS], [SEP],
[MASK], [unusedN], ...). This is the authors' rescaled form (Norouzi's gist, used by the RAML code
texar builds on): exactly, q(e) ∝ C(n, e)(V − 1)^e exp(−e/τ), which at the paper's τ puts nearly all
mass on replacing nearly every token; the rescaled weight equals that exact form at the smaller
temperature τ' = τ / (1 + log(V − 1)), which is what keeps e small.

The sampled target replaces the decoder inputs and the labels alike (labels are the next input at
every target position): the model learns to produce y, conditioned on y's own prefix. The source,
the final [SEP] and padding never change.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..batching import Batch
from .base import Method, StepContext, check_range, param, register

_SPECIAL = re.compile(r"^\[[^\[\]]+\]$")  # [PAD], [SEP], [unused12], ...: never a substitute


def admissible_ids(tokens: list[str]) -> torch.Tensor:
    """Sorted ids of the tokens a substitution may produce: all but the bracketed special tokens."""
    return torch.tensor([i for i, t in enumerate(tokens) if not _SPECIAL.match(t)], dtype=torch.long)


def edit_log_weights(n: torch.Tensor, tau: float, V: int, max_n: int) -> torch.Tensor:
    """(B, max_n + 1) float64: log w(e) = log[C(n, e) · exp(−e/τ) · (V − 1)^(e − e/τ)] for e = 0..max_n
    of each row's n, −inf where e > n (a softmax over a row gives its q(e))."""
    e = torch.arange(max_n + 1, dtype=torch.float64, device=n.device)
    n = n[:, None].double()
    log_c = torch.lgamma(n + 1) - torch.lgamma(e + 1) - torch.lgamma((n - e).clamp_min(0) + 1)
    log_w = log_c - e / tau + (e - e / tau) * math.log(max(V - 1, 1))
    return log_w.masked_fill(e > n, float("-inf"))


@register
@dataclass
class RAML(Method):
    name: ClassVar[str] = "raml"
    tau: float = param(0.85, "temperature τ of the payoff distribution exp(−Hamming/τ); smaller keeps the "
                       "sampled target closer to the reference")

    def __post_init__(self):
        check_range("tau", self.tau, 0.0, lo_open=True)
        self._admissible: tuple[int, torch.Tensor] | None = None

    def admissible(self, ctx: StepContext) -> torch.Tensor:
        if ctx.tokenizer is None:
            raise ValueError("raml needs the run's tokenizer (StepContext.tokenizer) to know the special tokens")
        if self._admissible is None or self._admissible[0] != id(ctx.tokenizer):
            self._admissible = (id(ctx.tokenizer), admissible_ids(ctx.tokenizer.tokens))
        return self._admissible[1]

    def sample_targets(self, batch: Batch, adm: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(new input ids, e per example): the Hamming sampler applied to every example's target, the
        whole batch at once on its device (no per-example loop, nothing read back to the host)."""
        ids = batch.input_ids
        dev = ids.device
        adm = adm.to(dev)
        V = len(adm)
        tgt = (batch.segment_ids == 1) & batch.pad_mask
        cand = tgt & (tgt.cumsum(1) < tgt.sum(1, keepdim=True))  # target positions, the final [SEP] excluded
        q = torch.softmax(edit_log_weights(cand.sum(1), self.tau, V, ids.shape[1]), 1)
        e = torch.multinomial(q, 1, generator=gen).squeeze(1)
        # e distinct positions, uniformly: the e smallest of uniform keys over the candidates
        keys = torch.rand(ids.shape, generator=gen, device=dev).masked_fill(~cand, 2.0)
        where = cand & (keys.argsort(1).argsort(1) < e[:, None])
        # each to a uniform admissible token other than the original: index k among the others
        j = torch.searchsorted(adm, ids)
        present = (j < V) & (adm[j.clamp_max(V - 1)] == ids)
        options = V - present.long()
        k = (torch.rand(ids.shape, generator=gen, device=dev, dtype=torch.float64) * options).long()
        k = torch.minimum(k, options - 1)
        k = k + (present & (k >= j)).long()  # skip the original's own slot
        return torch.where(where, adm[k.clamp_max(V - 1)], ids), e

    def corrupt(self, batch: Batch, ctx: StepContext) -> Batch:
        new, _ = self.sample_targets(batch, self.admissible(ctx), ctx.generator)
        labels = batch.labels.clone()
        labels[:, :-1] = torch.where(batch.labels[:, :-1] != -100, new[:, 1:], batch.labels[:, :-1])
        return batch.replace(input_ids=new, labels=labels)
