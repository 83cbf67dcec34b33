"""Minimum risk training, MRT (Shen et al., 2016), mixed with maximum likelihood.

Beyond the study. For each source, S candidates are sampled from the model (decode.sample_ids: the
cached decoder, the full distribution at `temperature`, no gradient), the reference is added when
`reference` is true (as Shen et al. allow), and duplicates are dropped, giving the set S(x). All
candidates of the batch are then scored with gradients in one teacher-forced pass
(sequence_level.sequence_log_probs), and over each set

    Q(y | x) = p(y | x)^α / Σ_{y' ∈ S(x)} p(y' | x)^α,     risk(x) = Σ_{y ∈ S(x)} Q(y | x) · (1 − Rouge-L(y, y*)),

with Rouge-L the study's scorer on the decoded texts. loss = weight · mean risk + (1 − weight) · CE,
CE the baseline's teacher-forced cross-entropy on the reference (Edunov et al., 2018, found such a
mix better than risk alone; Shen et al. train on the risk only: weight 1).

As in the paper, training starts from a maximum-likelihood model (`warm_start`: the same seed's
baseline best.pt). Shen et al. sample S = 100 with α = 5e-3; here S ≤ 8, because every candidate
costs its share of decoding and a forward and backward over its target tokens (the source pass is
shared by a source's candidates): at the default S = 8 a step costs about 4.5 baseline steps here
(`exposure bench train`), and S = 100 would cost dozens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..batching import Batch
from . import sequence_level as sl
from .base import FineTuning, StepContext, check_range, param, register

MAX_SAMPLES = 8


def expected_risk(seq_logp: torch.Tensor, cost: torch.Tensor, group: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per group g: Σ_{i ∈ g} Q_i · cost_i with Q = softmax(α · seq_logp) within g; shape (G,)."""
    G = int(group.max()) + 1
    scores = alpha * seq_logp
    top = torch.full((G,), -torch.inf, dtype=scores.dtype, device=scores.device)
    top = top.scatter_reduce(0, group, scores.detach(), "amax")
    w = torch.exp(scores - top[group])
    z = torch.zeros(G, dtype=w.dtype, device=w.device).index_add(0, group, w)
    return torch.zeros(G, dtype=w.dtype, device=w.device).index_add(0, group, w * cost.to(w.dtype)) / z


@register
@dataclass
class MinimumRisk(FineTuning):
    name: ClassVar[str] = "mrt"
    step_cost: ClassVar[float] = 4.5
    scores_texts: ClassVar[bool] = True
    samples: int = param(8, f"S: candidates sampled per source (at most {MAX_SAMPLES}; the paper's 100 is too "
                         "costly here)")
    alpha: float = param(5e-3, "sharpness α of Q(y|x) ∝ p(y|x)^α over the candidates (the paper's 5e-3)")
    weight: float = param(0.7, "share of the expected risk in the loss; the rest is the MLE cross-entropy")
    temperature: float = param(1.0, "sampling temperature (1: the model's distribution)")
    reference: bool = param(True, "add the reference to every candidate set")

    def __post_init__(self):
        super().__post_init__()
        check_range("samples", self.samples, 1, MAX_SAMPLES)
        check_range("alpha", self.alpha, 0.0, lo_open=True)
        check_range("weight", self.weight, 0.0, 1.0)
        check_range("temperature", self.temperature, 0.0, lo_open=True)

    def candidates(self, model, batch: Batch, ctx: StepContext) -> tuple[list[tuple[int, list[int]]], list[list[int]]]:
        """((example, target ids) of every distinct candidate, references)."""
        refs = sl.references(batch)
        drawn = sl.sample(model, batch, self.samples, self.temperature, ctx.max_len, ctx.tokenizer.sep_id,
                          ctx.generator)
        out = []
        for b, ys in enumerate(drawn):
            seen = set()
            for y in ([refs[b]] if self.reference else []) + ys:
                if tuple(y) not in seen:
                    seen.add(tuple(y))
                    out.append((b, y))
        return out, refs

    def loss(self, model, batch: Batch, ctx: StepContext):
        cands, refs = self.candidates(model, batch, ctx)
        cost = 1.0 - torch.tensor(sl.rewards(ctx.tokenizer, [y for _, y in cands], [refs[b] for b, _ in cands]),
                                  dtype=torch.float64, device=batch.input_ids.device)
        group = torch.tensor([b for b, _ in cands], device=batch.input_ids.device)
        logp = sl.sequence_log_probs(model, batch, cands)
        risk = expected_risk(logp, cost, group, self.alpha).mean()
        logs = {"risk": risk.detach(), "candidates": len(cands) / len(refs), "reward": 1.0 - cost.mean()}
        if self.weight == 1.0:
            return risk.to(logp.dtype), logs
        ce = model.target_loss(batch, label_smoothing=ctx.label_smoothing)
        logs["ce"] = ce.detach()
        return self.weight * risk.to(ce.dtype) + (1.0 - self.weight) * ce, logs
