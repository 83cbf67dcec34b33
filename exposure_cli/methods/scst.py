"""Self-critical sequence training, SCST (Rennie et al., 2017), in the mixed objective of Paulus et
al. (2018) for summarisation.

Beyond the study. For each source, `samples` targets y^s are drawn from the model (decode.sample_ids:
the cached decoder, the full distribution at `temperature`, no gradient) and the greedy output ŷ is
decoded (beam 1, the study's search); both in eval mode. Each sample's advantage is
A = r(y^s) − r(ŷ), r the study's per-example Rouge-L (or BLEU) on the decoded texts, and

    L_rl = −mean over samples of A · log p(y^s | x),    loss = γ · L_rl + (1 − γ) · CE,

log p(y^s | x) summed over the sample's tokens, its final [SEP] included, from one teacher-forced
pass with gradients (sequence_level.sequence_log_probs); CE is the baseline's cross-entropy on the
reference. Rennie et al. draw one sample per source; Paulus et al. mix with γ = 0.9984 and reward
Rouge-L. As in both papers, training starts from a maximum-likelihood model (`warm_start`: the same
seed's baseline best.pt); S ≤ 8 samples for the cost reason given in mrt.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..batching import Batch
from . import sequence_level as sl
from .base import FineTuning, StepContext, check_range, param, register
from .mrt import MAX_SAMPLES


def advantages(tok, samples: list[list[list[int]]], greedy: list[list[int]], refs: list[list[int]],
               metric: str = "rouge_l") -> list[list[float]]:
    """reward(sample) − reward(greedy) for every sample of every example, by the study's scorer."""
    base = sl.rewards(tok, greedy, refs, metric)
    flat = sl.rewards(tok, [y for ys in samples for y in ys], [refs[b] for b, ys in enumerate(samples) for _ in ys],
                      metric)
    out, i = [], 0
    for b, ys in enumerate(samples):
        out.append([flat[i + k] - base[b] for k in range(len(ys))])
        i += len(ys)
    return out


@register
@dataclass
class SelfCritical(FineTuning):
    name: ClassVar[str] = "scst"
    step_cost: ClassVar[float] = 3.4
    scores_texts: ClassVar[bool] = True
    samples: int = param(1, f"samples per source, each with the greedy output as its baseline (Rennie et al.: 1; "
                         f"at most {MAX_SAMPLES})")
    gamma: float = param(0.9984, "share γ of the self-critical loss; the rest is the MLE cross-entropy "
                         "(Paulus et al.'s 0.9984)")
    reward: str = param("rouge_l", "the study's per-example score used as the reward", sl.REWARDS)
    temperature: float = param(1.0, "sampling temperature (1: the model's distribution)")

    def __post_init__(self):
        super().__post_init__()
        check_range("samples", self.samples, 1, MAX_SAMPLES)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("temperature", self.temperature, 0.0, lo_open=True)

    def loss(self, model, batch: Batch, ctx: StepContext):
        tok, refs = ctx.tokenizer, sl.references(batch)
        drawn = sl.sample(model, batch, self.samples, self.temperature, ctx.max_len, tok.sep_id, ctx.generator)
        best = sl.greedy(model, batch, ctx.max_len, tok.sep_id)
        adv = advantages(tok, drawn, best, refs, self.reward)
        cands = [(b, y) for b, ys in enumerate(drawn) for y in ys]
        logp = sl.sequence_log_probs(model, batch, cands)
        a = torch.tensor([x for row in adv for x in row], dtype=logp.dtype, device=logp.device)
        rl = -(a * logp).mean()
        ce = model.target_loss(batch, label_smoothing=ctx.label_smoothing)
        logs = {"rl": rl.detach(), "advantage": a.mean().detach(), "ce": ce.detach()}
        return self.gamma * rl + (1.0 - self.gamma) * ce, logs
