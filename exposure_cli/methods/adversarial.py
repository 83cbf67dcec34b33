"""Adversarial training on the input embeddings, FGM (Miyato et al., 2017).

Beyond the study. The clean pass gives CE and g = ∂CE/∂e, the gradient w.r.t. the looked-up token
embeddings of every position (padding rows are zero). The perturbation r = ε · g / ‖g‖ is a
constant (no gradient through it); the adversarial pass runs on e + r, and
loss = CE + weight · CE(e + r). At ε = 0 the adversarial pass equals the clean one.

`norm` is what ‖g‖ is taken over:
- `batch` (default, the common FGM recipe): the whole batch's embedding-gradient tensor;
- `example` (Miyato et al.): each example's (L, H) slice;
- `position`: each position's row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..batching import Batch
from .base import Method, StepContext, check_range, inner_grad, param, register

NORMS = ("batch", "example", "position")


@register
@dataclass
class Adversarial(Method):
    name: ClassVar[str] = "adversarial"
    step_cost: ClassVar[float] = 2.2
    epsilon: float = param(1.0, "size of the perturbation r = ε · g / ‖g‖")
    weight: float = param(1.0, "weight of the adversarial pass's cross-entropy in the loss")
    norm: str = param("batch", "what ‖g‖ is taken over: the whole batch, each example, or each position", NORMS)

    def __post_init__(self):
        check_range("epsilon", self.epsilon, 0.0)
        check_range("weight", self.weight, 0.0)

    def perturbation(self, g: torch.Tensor) -> torch.Tensor:
        g = g.to(torch.promote_types(g.dtype, torch.float32))
        dims = {"batch": (0, 1, 2), "example": (1, 2), "position": (2,)}[self.norm]
        norm = g.pow(2).sum(dims, keepdim=True).sqrt()
        return self.epsilon * g / norm.clamp_min(1e-12)

    def loss(self, model, batch: Batch, ctx: StepContext):
        e = model.word_embeddings(batch.input_ids)
        ce = model.target_loss(batch, inputs_embeds=e, label_smoothing=ctx.label_smoothing)
        (g,) = inner_grad(ce, e, ctx, retain_graph=True)
        r = self.perturbation(g).to(e.dtype)
        adv = model.target_loss(batch, inputs_embeds=e + r, label_smoothing=ctx.label_smoothing)
        return ce + self.weight * adv, {"ce": ce.detach(), "adv": adv.detach()}
