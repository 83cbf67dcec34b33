"""Scheduled sampling for transformers, the two-pass parallel form (Mihaylova & Martins, 2019).

Beyond the study. Pass 1 (no gradient, same model and mode) runs on the gold inputs and predicts
every target token at once: position t predicts token t+1. Each decoder input at a target
position t+1 — every segment-1 position: the target tokens and the final [SEP] — is then replaced
by the model's prediction of it from position t, independently with probability p(step). The
first target token is a candidate too: it is the second decoder input (the source's [SEP] plays
the start token, which is never replaced), predicted from that [SEP]. The final [SEP] input is
replaced like any other but feeds no loss term (nothing is predicted from it). Pass 2 trains on
the mixed inputs with the original labels.

p(step) = max_prob · s(f), f = step / total_steps ∈ [0, 1] the share of training done:
- `linear`:          s = f
- `exponential`:     s = 1 − exp(−k·f)                (teacher forcing decays as exp(−k·f))
- `inverse_sigmoid`: s = 1 / (1 + exp(−k·(f − c)))    (midpoint at f = c, steepness k)
- `constant`:        s = 1
Bengio et al. (2015) state the schedules in raw steps; here they run over the share of training,
so one setting fits any data size. `predict`: `argmax` (default) or `sample` (from the softmax at
`temperature`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch

from ..batching import Batch
from .base import Method, StepContext, check_range, param, register

SCHEDULES = ("linear", "exponential", "inverse_sigmoid", "constant")
PREDICT = ("argmax", "sample")


@register
@dataclass
class ScheduledSampling(Method):
    name: ClassVar[str] = "scheduled_sampling"
    step_cost: ClassVar[float] = 1.5
    schedule: str = param("inverse_sigmoid", "how the replacement probability rises over training", SCHEDULES)
    max_prob: float = param(0.25, "the replacement probability the schedule rises to")
    k: float = param(10.0, "rate (exponential) or steepness (inverse_sigmoid)")
    c: float = param(0.5, "midpoint of inverse_sigmoid, as a share of training")
    predict: str = param("argmax", "how pass 1 turns its distribution into a token", PREDICT)
    temperature: float = param(1.0, "softmax temperature when predict is sample")

    def __post_init__(self):
        check_range("max_prob", self.max_prob, 0.0, 1.0)
        check_range("k", self.k, 0.0, lo_open=True)
        check_range("c", self.c, 0.0, 1.0)
        check_range("temperature", self.temperature, 0.0, lo_open=True)

    def prob(self, step: int, total_steps: int) -> float:
        f = min(1.0, max(0.0, step / max(1, total_steps)))
        s = {"linear": lambda: f,
             "exponential": lambda: 1.0 - math.exp(-self.k * f),
             "inverse_sigmoid": lambda: 1.0 / (1.0 + math.exp(-self.k * (f - self.c))),
             "constant": lambda: 1.0}[self.schedule]()
        return self.max_prob * s

    def pick(self, logp: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.predict == "argmax":
            return logp.argmax(-1)
        probs = torch.softmax(logp / self.temperature, -1)
        return torch.multinomial(probs, 1, generator=gen).squeeze(-1)

    def mix(self, model, batch: Batch, p: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixed input ids, replaced mask): pass 1 and the per-position coin flips."""
        return mix_predictions(model, batch, p, gen, self.pick)

    def loss(self, model, batch: Batch, ctx: StepContext):
        p = self.prob(ctx.step, ctx.total_steps)
        mixed, replaced = self.mix(model, batch, p, ctx.generator)
        ce = model.target_loss(batch, input_ids=mixed, label_smoothing=ctx.label_smoothing)
        n_cand = len(batch.target_rows)
        # Logged values stay on the device; train_step reads them with the loss in one go.
        return ce, {"ce": ce.detach(), "ss_prob": p, "ss_replaced": replaced.sum().double() / max(1, n_cand)}


def mix_predictions(model, batch: Batch, p: float, gen: torch.Generator,
                    pick: Callable[[torch.Tensor, torch.Generator], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mixed input ids, replaced mask): pass 1 (no gradient) turns the model's next-token
    log-probabilities at every target-predicting position into tokens with `pick`; each decoder input
    at a target position is then replaced by the token picked for it, with probability p."""
    ids = batch.input_ids
    sel = batch.labels != -100  # positions that predict a target token
    with torch.no_grad():
        # The model's whole next-token distribution, copy pointer included when it has one.
        pred = pick(model.target_log_probs(batch), gen)
    guess = torch.zeros_like(ids)
    guess[batch.target_rows, batch.target_cols] = pred  # guess[:, t] is the model's token for position t + 1
    replaced = torch.zeros_like(sel)
    coin = torch.rand(ids.shape[0], ids.shape[1] - 1, generator=gen, device=ids.device) < p
    replaced[:, 1:] = sel[:, :-1] & coin
    mixed = ids.clone()
    mixed[:, 1:] = torch.where(replaced[:, 1:], guess[:, :-1], ids[:, 1:])
    return mixed, replaced
