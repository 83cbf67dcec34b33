"""The target scoring every measure shares: the model's teacher-forced scores of a given target,
summed as the decoder sums them, and `Context`, one run's examples with the passes computed once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..batching import Batch, collate
from ..decode.beam import LOG_EPS
from ..metrics import study_per_example
from .base import CHECK_EXAMPLES, Options
from .runs import RunData


@dataclass
class TokenScores:
    """Per target token of one sequence (the final [SEP] included), from one teacher-forced pass."""

    nll: np.ndarray  # −log p(gold), the cross-entropy target_loss averages
    score: np.ndarray  # log(p(gold) + 1e-12), the decoder's per-token score
    correct: np.ndarray  # the most probable token is the gold one
    wrong: np.ndarray  # the most probable token other than the gold one (special tokens excluded)

    @property
    def total(self) -> float:
        """The decoder's score of the sequence: Σ log(p + 1e-12)."""
        return float(self.score.sum())


def _pair(prompt: list[int], target: list[int]) -> tuple[list[int], list[int]]:
    return prompt + target, [0] * len(prompt) + [1] * len(target)


def _fit_positions(batch: Batch, fed, max_positions: int):
    """A target's last token is fed but predicts nothing, and under the UniLM mask nothing attends
    to it; it still takes a position. When decode.max_len fills every position the model has, a
    full-length prompt plus a full-length target is one longer: drop that column (its label sits
    one column earlier and stays)."""
    L = batch.input_ids.shape[1]
    if L <= max_positions:
        return batch, fed
    if L > max_positions + 1:  # generate_ids refuses such a prompt; a reference is cut to decode.max_len
        raise ValueError(f"{L} positions for a model with {max_positions}")
    cut = {f: getattr(batch, f)[:, :max_positions] for f in ("input_ids", "segment_ids", "pad_mask", "labels")}
    return batch.replace(**cut), None if fed is None else fed[:, :max_positions]


def _flat_scores(model, batch: Batch, fed, banned: torch.Tensor):
    logp = model.target_log_probs(batch, input_ids=fed).float()
    labels = batch.labels[batch.labels != -100]
    nll = F.cross_entropy(logp, labels, reduction="none")  # target_loss's computation, unreduced
    score = torch.log(logp.gather(1, labels[:, None])[:, 0].exp() + LOG_EPS)  # as decode.log_probs
    correct = logp.argmax(1) == labels
    others = logp.index_fill(1, banned, -math.inf).scatter(1, labels[:, None], -math.inf)
    return nll, score, correct, others.argmax(1)


@torch.inference_mode()
def score_targets(model, prompts: list[list[int]], targets: list[list[int]], inputs: list[list[int]] | None = None,
                  *, batch_size: int = 64, pad_id: int = 0, banned=()) -> list[TokenScores]:
    """Teacher-forced scores of each target (the ids after `[CLS] source [SEP]`; a finished one
    ends with [SEP]) given its prompt, the model fed `inputs` instead (same lengths) when given:
    the labels stay the targets. Batched by length."""
    dev = next(model.parameters()).device
    banned_t = torch.tensor(sorted(banned), dtype=torch.long, device=dev)
    order = sorted(range(len(targets)), key=lambda i: len(prompts[i]) + len(targets[i]))
    out: list[TokenScores | None] = [None] * len(targets)
    for b in range(0, len(order), batch_size):
        idx = order[b: b + batch_size]
        batch = collate([_pair(prompts[i], targets[i]) for i in idx], pad_id)
        fed = None if inputs is None else collate([_pair(prompts[i], inputs[i]) for i in idx], pad_id).input_ids
        batch, fed = _fit_positions(batch, fed, model.config.max_positions)
        cols = _flat_scores(model, batch.to(dev), None if fed is None else fed.to(dev), banned_t)
        cols = [c.cpu().numpy().astype(t) for c, t in zip(cols, (np.float64, np.float64, bool, np.int64))]
        start = 0
        for i in idx:  # target_log_probs is row-major: each row's target tokens in order
            n = len(targets[i])
            out[i] = TokenScores(*(c[start: start + n] for c in cols))
            start += n
    return out  # type: ignore[return-value]


def reference_targets(tok, references: list[str], max_len: int) -> tuple[list[list[int]], int]:
    """Each reference as a target the decoder could output (its first max_len − 1 tokens and
    [SEP]), and how many were cut to fit."""
    ids = [tok.encode(r) for r in references]
    return [r[: max_len - 1] + [tok.sep_id] for r in ids], sum(len(r) > max_len - 1 for r in ids)


def special_ids(tok) -> list[int]:
    """Tokens the decoder never feeds back: padding, [CLS], [MASK], and [SEP] (it ends a hypothesis)."""
    ids = {tok.pad_id, tok.cls_id, tok.sep_id, getattr(tok, "mask_id", tok.pad_id)}
    return sorted(ids)


class Context:
    """One run's examples and the teacher-forced passes the diagnostics share, each computed once."""

    def __init__(self, run: RunData, opts: Options):
        self.run, self.opts = run, opts
        tok, spec = run.tok, run.spec
        self.prompts = [tok.encode_pair(s, None, spec.model.source_len(), 0)[0] for s in run.sources]
        self.gold, self.truncated = reference_targets(tok, run.references, spec.decode.max_len)
        self.banned = special_ids(tok)
        self.ordinary = np.array([i for i in range(len(tok)) if i not in self.banned], dtype=np.int64)
        self._clean: list[TokenScores] | None = None
        self._rouge: dict[int, np.ndarray] = {}

    @property
    def n(self) -> int:
        return len(self.gold)

    def score(self, idx: list[int], targets, inputs=None) -> list[TokenScores]:
        return score_targets(self.run.model, [self.prompts[i] for i in idx], targets, inputs,
                             batch_size=self.opts.batch_size, pad_id=self.run.tok.pad_id, banned=self.banned)

    def clean(self) -> list[TokenScores]:
        """The gold reference, teacher-forced."""
        if self._clean is None:
            self._clean = self.score(list(range(self.n)), self.gold)
        return self._clean

    def reference_scores(self) -> np.ndarray:
        return np.array([c.total for c in self.clean()])

    def output_scores(self, beam: int) -> np.ndarray:
        """The decoder's score of each beam-`beam` output, as it recorded it (`score_check` shows that
        teacher forcing gives the same number, so it compares with `reference_scores`)."""
        return np.array([h.score for h in self.run.outputs[beam]])

    def score_check(self, n: int = CHECK_EXAMPLES) -> float:
        """The largest |teacher-forced score − the decoder's score| over the outputs of the first n
        examples at every beam: rescoring every output would cost a pass per beam, and the scoring
        is the same function for all of them."""
        found = {(i, tuple(h.tokens)): h.score for hs in self.run.outputs.values() for i, h in enumerate(hs[:n])}
        if not found:
            return 0.0
        keys = list(found)
        scored = self.score([i for i, _ in keys], [list(t) for _, t in keys])
        return max(abs(s.total - found[k]) for k, s in zip(keys, scored))

    def same_as_reference(self, beam: int) -> np.ndarray:
        return np.array([h.tokens == g for h, g in zip(self.run.outputs[beam], self.gold)])

    def rouge_l(self, beam: int) -> np.ndarray:
        """Per-example study Rouge-L (×100) of the beam-`beam` predictions."""
        if beam not in self._rouge:
            per = study_per_example(self.run.predictions[beam], self.run.references, self.run.spec.score.lowercase)
            self._rouge[beam] = per["rouge_l"] * 100
        return self._rouge[beam]
