"""Word-level oracle sampling (Zhang et al., 2019, "Bridging the Gap between Training and Inference
for Neural Machine Translation"), in the two-pass parallel form of scheduled_sampling.py.

Beyond the study. Pass 1 (no gradient, same model and mode) runs on the gold inputs and predicts
every target token at once; the oracle word for position t + 1 is argmax(log p_t + η) with η
i.i.d. Gumbel(0, 1) noise (`noise: gumbel`, the paper's choice) — the Gumbel-max trick, so the
oracle word is a draw from the model's own distribution p_t — or argmax(log p_t) (`noise: none`).
The paper writes softmax((o + η)/τ) before the argmax; a temperature τ > 0 does not move an argmax,
so there is no τ here. Each decoder input at a target position is replaced by its oracle word
independently with probability

    p(e) = 1 − μ / (μ + exp(e / μ)),

e the epochs finished (0 during the first), so the gold word is kept with probability
μ / (μ + exp(e/μ)), decaying over epochs as in the paper. μ = inf keeps every gold word: pass 1 is
skipped and the step is baseline's. Pass 2 trains on the mixed inputs with the original labels.
The sentence-level oracle (the paper's beam-searched, BLEU-selected one) is not built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..batching import Batch
from .base import Method, ParamError, StepContext, param, register
from .scheduled_sampling import mix_predictions

NOISE = ("gumbel", "none")


def gumbel_argmax(logp: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """argmax(logp + η), η ~ Gumbel(0, 1) i.i.d.: a draw from softmax(logp) per row (Gumbel-max)."""
    u = torch.rand(logp.shape, generator=gen, device=logp.device, dtype=torch.float64)
    eta = -torch.log(-torch.log(u.clamp(1e-300, 1.0 - 1e-16)))
    return (logp.double() + eta).argmax(-1)


@register
@dataclass
class WordOracle(Method):
    name: ClassVar[str] = "word_oracle"
    step_cost: ClassVar[float] = 1.5
    mu: float = param(12.0, "decay μ: an input becomes the oracle word with probability 1 − μ/(μ + exp(e/μ)) "
                      "at epoch e (0-based); .inf = never (baseline)")
    noise: str = param("gumbel", "gumbel: the oracle word is argmax(log p + Gumbel noise), a draw from the "
                       "model's distribution (the paper); none: the argmax", NOISE)

    def __post_init__(self):
        if not (self.mu > 0):  # inf allowed: the gold word always
            raise ParamError("mu", f"expected a number in (0, ∞], got {self.mu!r}")

    def prob(self, epoch: int) -> float:
        """The probability that an input is replaced by its oracle word at epoch `epoch`."""
        if math.isinf(self.mu):
            return 0.0
        # 1 − μ/(μ + exp(e/μ)) written as 1/(1 + μ·exp(−e/μ)): no overflow at small μ
        return 1.0 / (1.0 + self.mu * math.exp(-epoch / self.mu))

    def pick(self, logp: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return gumbel_argmax(logp, gen) if self.noise == "gumbel" else logp.argmax(-1)

    def loss(self, model, batch: Batch, ctx: StepContext):
        p = self.prob(ctx.epoch)
        if p == 0.0:  # nothing to replace: no pass 1, exactly baseline's step
            ce = model.target_loss(batch, label_smoothing=ctx.label_smoothing)
            return ce, {"ce": ce.detach(), "oracle_prob": 0.0, "oracle_replaced": 0.0}
        mixed, replaced = mix_predictions(model, batch, p, ctx.generator, self.pick)
        ce = model.target_loss(batch, input_ids=mixed, label_smoothing=ctx.label_smoothing)
        n_cand = len(batch.target_rows)
        # Logged values stay on the device; train_step reads them with the loss in one go.
        return ce, {"ce": ce.detach(), "oracle_prob": p, "oracle_replaced": replaced.sum().double() / max(1, n_cand)}
