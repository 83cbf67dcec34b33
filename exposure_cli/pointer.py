"""The copy pointer (See et al., 2017), in one place: its settings (`PointerConfig`, part of
`ModelConfig`), its head (`CopyHead`, the parameters `cls.copy.*`), what it keeps of the source
(`source_memory`) and of the target fed so far (`target_history`), and the target rows it reads in a
teacher-forced batch (`target_rows`). `UniLM.log_probs` mixes it into the output distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .model import ModelConfig


@dataclass(kw_only=True)
class PointerConfig:
    """The pointer's fields of `ModelConfig` (keyword-only there, after the encoder's)."""

    # A pointer over the source mixed into the output distribution (`cls.copy.*`); see `UniLM.log_probs`.
    copy: bool = False
    # Copy continuation (needs `copy`): the pointer's score of source position j gains a learned
    # w_n when the n source tokens before j equal the last n target tokens fed, for n = 1..this. It
    # makes "keep copying the phrase you are in" a single learned weight instead of something a
    # small model must learn from absolute positions (titles are mostly spans of the abstract).
    copy_continuation: int = 0
    # Copy coverage (needs `copy`): the pointer's score of source position j gains a learned weight
    # (starting at 0) when j's token is already among the target tokens fed: the pointer can learn
    # not to copy the same thing twice.
    copy_coverage: bool = False


NO_TOKEN = -1  # an empty target-history slot (never equals a token id)
_NO_SOURCE = -2  # a source slot before [CLS] (never equals a token or NO_TOKEN)


class CopyHead(nn.Module):
    """A pointer over the source (See et al., 2017): attention of a position over the source's final
    hidden states, and a gate p_gen mixing the vocabulary distribution with the attention mass of
    each source token; optionally the continuation and coverage terms of `ModelConfig`."""

    # The continuation and coverage weights are scalars that must travel several units in about a
    # thousand steps, but Adam moves any parameter by about lr per step whatever its scale: they
    # are stored divided by GAIN (GAIN× their effective learning rate). Without it, at lr 2e-3
    # they ended every run about 0.5 from where they started, still moving.
    GAIN = 10.0

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.query = nn.Linear(c.hidden, c.hidden)
        self.key = nn.Linear(c.hidden, c.hidden)
        self.gate = nn.Linear(c.hidden, 1)
        if c.copy_continuation:
            # One weight per match length; each starts at 1, so a longer match already scores higher.
            self.continuation = nn.Parameter(torch.ones(c.copy_continuation) / self.GAIN)
        if c.copy_coverage:
            self.coverage = nn.Parameter(torch.zeros(()))

    def continuation_weights(self) -> torch.Tensor:
        return self.continuation * self.GAIN

    def coverage_weight(self) -> torch.Tensor:
        return self.coverage * self.GAIN

    def forward(self, hidden, logits, memory, history=None) -> torch.Tensor:
        """p = g·softmax(logits) + (1 − g)·(attention mass on the source positions holding each token),
        from final hidden states (B, T, H), the MLM head's logits (B, T, V, float32 or wider), the
        source `memory` of `UniLM.source_memory` and the target `history` (see `UniLM.log_probs`)."""
        keys, ids, mask = memory[:3]
        scores = torch.matmul(self.query(hidden), keys.transpose(1, 2)).to(logits.dtype) / keys.shape[-1] ** 0.5
        n = self.continuation.numel() if hasattr(self, "continuation") else 0
        cover = hasattr(self, "coverage")
        if n or cover:
            if history is None:
                raise ValueError("a model with copy continuation or coverage needs the target history")
            if history.shape[-1] < n:
                history = F.pad(history, (0, n - history.shape[-1]), value=NO_TOKEN)
        if n:
            prev = memory[3]  # (B, S, n)
            w = self.continuation_weights().to(scores.dtype)
            match = torch.ones_like(scores, dtype=torch.bool)
            for k in range(n):
                match = match & (prev[:, None, :, k] == history[:, :, None, k])
                scores = scores + w[k] * match
        if cover:
            seen = (ids[:, None, :, None] == history[:, :, None, :]).any(-1)  # (B, T, S)
            scores = scores + self.coverage_weight().to(scores.dtype) * seen
        attn = torch.softmax(scores.masked_fill(~mask[:, None, :], -1e4), -1) * mask[:, None, :]
        g = torch.sigmoid(self.gate(hidden).to(logits.dtype))
        p = g * torch.softmax(logits, -1)
        return p.scatter_add(-1, ids[:, None, :].expand(-1, hidden.shape[1], -1), (1 - g) * attn)


def source_memory(head: CopyHead, continuation: int, hidden, input_ids, segment_ids, pad_mask):
    """What the pointer needs of the source: a tuple of tensors whose first dimension is the batch
    (reorder beams with `tuple(t[idx] for t in memory)`).

    `hidden` (B, S, H) are final hidden states of any prefix holding `[CLS] source [SEP]`
    (under the UniLM mask they do not depend on the target); the pointer may pick any real
    segment-0 position (padding excluded, whichever side it is on). `continuation`: the model's
    `copy_continuation`.
    """
    S = hidden.shape[1]
    ids = input_ids[:, :S]
    mask = (segment_ids[:, :S] == 0) & pad_mask[:, :S]
    n = continuation
    if not n:
        return head.key(hidden), ids, mask
    # prev[b, j, k] = ids[b, j−1−k]: the tokens a copy of position j would continue.
    back = torch.arange(S, device=ids.device)[:, None] - 1 - torch.arange(n, device=ids.device)
    prev = ids[:, back.clamp_min(0)].masked_fill(back < 0, _NO_SOURCE)
    return head.key(hidden), ids, mask, prev


def target_history(input_ids: torch.Tensor, first: torch.Tensor, positions: torch.Tensor, n: int) -> torch.Tensor:
    """(B, T, n): for each of `positions` (B, T), the target tokens fed up to and including it,
    latest first: the inputs at p, p−1, …, p−n+1 that lie after `first` (B,), the source's [SEP];
    NO_TOKEN elsewhere. At the source's [SEP] itself (which predicts the first target token) the
    history is empty."""
    back = positions[..., None] - torch.arange(n, device=positions.device)
    ids = torch.gather(input_ids, 1, back.clamp_min(0).flatten(1)).view_as(back)
    return ids.masked_fill(back <= first[:, None, None], NO_TOKEN)


def target_rows(h: torch.Tensor, ids: torch.Tensor, first: torch.Tensor, T: int):
    """The pointer reads (B, T, H), not the flat selection: each row's T target-predicting positions
    from `first` (B,) on (consecutive) gathered as (hidden states (B, T, H), their target history).
    T comes from the host (the batch's `target_width`): reading it off the device would wait for it."""
    pos = (first[:, None] + torch.arange(T, device=h.device)).clamp_max(h.shape[1] - 1)
    ht = torch.gather(h, 1, pos[:, :, None].expand(-1, -1, h.shape[2]))
    return ht, target_history(ids, first, pos, T)
