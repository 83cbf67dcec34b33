"""Gradient penalty (梯度惩罚): loss = CE + ε · Σ_i ‖∂CE/∂e_i‖².

e_i is the token-embedding vector looked up at input position i; the sum runs over every real
position of the batch, source and target. Padding positions are excluded explicitly; their
gradient is exactly zero anyway, since no query attends to a padding key and no loss term sits on
a padding position. CE is the batch's mean target cross-entropy (the same CE the baseline trains
on), and the penalty is differentiated through, which needs a second-order backward
(create_graph=True): `needs_double_backward` makes the model use its plain-ops attention, as the
fused CPU kernel has no derivative of its backward.

`backward`:
- `exact` (default): the penalty is differentiated with a second-order backward, as in the study.
- `perturbation`: the first-order identity ∇θ[CE(e) + ε‖g‖²] = ∇θ CE(e + 2ε·g) + O(ε²‖g‖²), with
  g = ∂CE/∂e held constant, gives the gradient from one input-gradient pass and one ordinary
  training pass at the shifted embeddings, with no double backward (about 1.8× a baseline step
  against about 3× for `exact`). Both passes draw the same dropout masks, so they differentiate
  one function. It is an approximation: on 16 real CSL examples at initialisation (fp64, a
  2 × 32 model) the penalty's part of the gradient comes out within 6% and the whole gradient
  within 2% of `exact` (tests/test_methods.py measures both). Only `scope: inputs`.

`scope`:
- `inputs` (default, the conventional definition): the per-position input-embedding gradients only;
- `embedding_rows` (as the authors' script computes it under TF 1.x): additionally
  ‖∂CE/∂E‖²_F of the gradient that the tied MLM output head sends to the embedding matrix E. The
  script squares the rows of the embedding variable's gradient, which TF 1.x forms by
  concatenating the looked-up rows above with that dense output gradient. Here that output part
  is the whole gradient w.r.t. E minus the looked-up rows scattered into E (what the lookup sends).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..batching import Batch
from .base import Method, ParamError, StepContext, check_range, inner_grad, param, register

SCOPES = ("inputs", "embedding_rows")
BACKWARDS = ("exact", "perturbation")


def _wide(t: torch.Tensor) -> torch.Tensor:
    """At least float32 (a bf16 gradient is widened; float64 stays float64)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def penalty_terms(model, batch: Batch, label_smoothing: float = 0.0, scope: str = "inputs",
                  ctx: StepContext | None = None):
    """(ce, Σ_i ‖∂CE/∂e_i‖², ‖∂CE/∂E‖²_F of the output use or None), all differentiable; the inner
    gradient is `inner_grad`'s (scaled under fp16's gradient scaler, when `ctx` has one)."""
    ctx = ctx or StepContext(0, 0, None)
    emb = model.word_embeddings
    e = emb(batch.input_ids)
    ce = model.target_loss(batch, inputs_embeds=e, label_smoothing=label_smoothing)
    if scope == "inputs":
        (g,) = inner_grad(ce, e, ctx, create_graph=True)
    else:
        g, g_matrix = inner_grad(ce, [e, emb.weight], ctx, create_graph=True)
    g = g * batch.pad_mask[..., None].to(g.dtype)
    rows = _wide(g).pow(2).sum()
    if scope == "inputs":
        return ce, rows, None
    # What the lookup sends to E is the looked-up rows' gradients scattered into their token rows;
    # the rest of E's gradient comes from the tied output head.
    from_lookup = torch.zeros_like(g_matrix).index_add(0, batch.input_ids.flatten(), g.flatten(0, 1).to(g_matrix.dtype))
    output = _wide(g_matrix - from_lookup).pow(2).sum()
    return ce, rows, output


@register
@dataclass
class GradientPenalty(Method):
    name: ClassVar[str] = "gradient_penalty"
    epsilon: float = param(0.5, "weight of the penalty Σ‖∂CE/∂e_i‖² (the study's 0.5)")
    scope: str = param("inputs", "inputs: the looked-up embedding rows' gradients (the article); embedding_rows: "
                       "also the tied output head's gradient of the embedding matrix (the authors' script)", SCOPES)
    backward: str = param("exact", "exact: a second-order backward; perturbation: a first-order approximation "
                          "from a second pass at e + 2ε·g (about 1.8× a baseline step instead of ~2.8×)", BACKWARDS)

    def __post_init__(self):
        check_range("epsilon", self.epsilon, 0.0)
        if self.backward == "perturbation" and self.scope != "inputs":
            raise ParamError("backward", "perturbation supports only scope: inputs")

    @property
    def needs_double_backward(self) -> bool:  # type: ignore[override]
        return self.backward == "exact"

    @property
    def step_cost(self) -> float:  # type: ignore[override]
        return 2.2 if self.backward == "exact" else 1.8

    def loss(self, model, batch: Batch, ctx: StepContext):
        if self.backward == "perturbation":
            return self._perturbation_loss(model, batch, ctx)
        ce, rows, output = penalty_terms(model, batch, ctx.label_smoothing, self.scope, ctx)
        pen = rows if output is None else rows + output
        logs = {"ce": ce.detach(), "penalty": pen.detach()}
        if output is not None:
            logs["penalty_output"] = output.detach()
        return ce + self.epsilon * pen, logs

    def _perturbation_loss(self, model, batch: Batch, ctx: StepContext):
        emb = model.word_embeddings
        rng = torch.random.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if batch.input_ids.is_cuda else None
        e = emb(batch.input_ids).detach().requires_grad_()
        ce = model.target_loss(batch, inputs_embeds=e, label_smoothing=ctx.label_smoothing)
        (g,) = inner_grad(ce, e, ctx)  # input gradients only: no weight-gradient products
        g = g * batch.pad_mask[..., None].to(g.dtype)
        torch.random.set_rng_state(rng)  # the same dropout masks in both passes
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        shifted = emb(batch.input_ids) + (2 * self.epsilon) * g
        loss = model.target_loss(batch, inputs_embeds=shifted, label_smoothing=ctx.label_smoothing)
        pen = _wide(g).pow(2).sum()
        return loss, {"ce": ce.detach(), "penalty": pen}
