"""The method registry and the `Method` base class.

A method may override two hooks:
- `corrupt(batch, ctx)`: change the decoder inputs before the forward pass (labels stay);
- `loss(model, batch, ctx)`: compute the training loss, adding terms or extra passes.
Its parameters are its dataclass fields, each with `param(default, help[, choices])`; the spec
names it `{name: {param: value}}`, and `exposure ls` lists the parameters with their help.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..batching import Batch
from ..errors import UserError
from ..registry import Registry
from ..tokenizers import Tokenizer
from ..typed import build, default, param  # noqa: F401  (param: for the methods)


@dataclass
class StepContext:
    step: int  # optimizer steps done so far
    total_steps: int
    generator: torch.Generator  # the method's own random stream (device of the batch)
    rng: random.Random | None = None  # unused by the built-in methods; data order has its own stream
    label_smoothing: float = 0.0
    epoch: int = 0  # epochs finished (word-level oracle sampling decays by epoch)
    tokenizer: Tokenizer | None = None  # the run's tokenizer (texts to score, special tokens to avoid)
    max_len: int = 32  # generated target tokens, [SEP] included, when a method samples (the spec's decode.max_len)
    # fp16's gradient scale (a device scalar) while a GradScaler runs, for `inner_grad`; else None.
    loss_scale: torch.Tensor | None = None
    # Device flags, one per scaled inner gradient: it overflowed (train_step then lets the scaler skip the step).
    overflow: list = dataclasses.field(default_factory=list)


def inner_grad(outputs: torch.Tensor, inputs, ctx: StepContext, **kw) -> tuple[torch.Tensor, ...]:
    """`torch.autograd.grad(outputs, inputs, **kw)` of a loss inside the training step. Under fp16's
    gradient scaler it is taken of the scaled loss and unscaled after (PyTorch's AMP recipe for
    gradient penalties): the fp16 backward of the loss itself underflows to zeros, as the scaler
    exists to prevent. A scaled gradient that overflows is noted in `ctx.overflow`; the loss is then
    not finite, and the scaler skips the step and lowers its scale, as for any overflow."""
    if ctx.loss_scale is None:
        return torch.autograd.grad(outputs, inputs, **kw)
    grads = torch.autograd.grad(outputs * ctx.loss_scale, inputs, **kw)
    ctx.overflow += [~torch.isfinite(g).all() for g in grads]
    inv = 1.0 / ctx.loss_scale
    return tuple(g * inv for g in grads)


@dataclass
class Method:
    name: ClassVar[str] = ""
    # True when the loss differentiates a gradient (create_graph=True): the model then avoids the
    # fused attention kernels, which have no double backward.
    needs_double_backward: ClassVar[bool] = False
    # A step's cost against baseline's (exposure bench train): executors running several runs at
    # once start the costliest first, so that no long run is left alone at the end of a grid.
    step_cost: ClassVar[float] = 1.0
    # A method that fine-tunes another's model names it here (e.g. "baseline"): the runner trains that
    # method's run of the same seed first and starts this one from its best.pt (train.run_one's `init_from`).
    warm_start: ClassVar[str | None] = None
    # True when a step decodes texts to score on the host (sequence-level rewards: MRT, SCST). Such a
    # step reads the device once per decoding step and per scoring, beyond the one read of the loss
    # and logs that every other method's step keeps to (tests/test_device.py checks both).
    scores_texts: ClassVar[bool] = False

    def corrupt(self, batch: Batch, ctx: StepContext) -> Batch:
        return batch

    def loss(self, model, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
        """The loss and the values to log; a logged tensor stays on the device (train_step reads every
        one of them with the loss in a single host read: each `.item()` would wait for the GPU)."""
        ce = model.target_loss(batch, label_smoothing=ctx.label_smoothing)
        return ce, {"ce": ce.detach()}

    def peak_lr(self, lr: float) -> float:
        """This method's peak learning rate, given the spec's `train.lr`."""
        return lr

    def start_is_candidate(self) -> bool:
        """True when a warm-started run's starting weights compete in its selection on dev (epoch 0)."""
        return False

    def label(self) -> str:
        """Name plus the parameters that differ from their defaults, e.g. `random_replace(ratio=0.2)`."""
        changed = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                   if getattr(self, f.name) != default(f)]
        return f"{self.name}({', '.join(changed)})" if changed else self.name


METHODS: Registry[type[Method]] = Registry("method", Method, family="methods")
register = METHODS.register()


class ParamError(ValueError):
    """A parameter value out of range; `validate_method` reports it under the parameter's key path."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def check_range(key: str, value: float, lo: float, hi: float | None = None, *, lo_open: bool = False) -> None:
    ok = math.isfinite(value) and (value > lo if lo_open else value >= lo) and (hi is None or value <= hi)
    if not ok:
        lo_s = f"{'(' if lo_open else '['}{lo}"
        raise ParamError(key, f"expected a number in {lo_s}, {hi if hi is not None else '∞'}{']' if hi is not None else ')'}, got {value!r}")


@register
@dataclass
class Baseline(Method):
    """Plain teacher forcing."""

    name: ClassVar[str] = "baseline"


@dataclass
class FineTuning(Method):
    """A method that fine-tunes the same seed's baseline run (its best.pt), as MRT and SCST do in their
    papers: the runner trains that run first (train.run_one's `init_from`). Registers nothing."""

    warm_start: ClassVar[str | None] = "baseline"
    lr: float | None = param(None, "peak learning rate of the fine-tuning (warm-up and schedule as train's); "
                             "null = train.lr, the MLE stage's (the papers fine-tune at about a tenth)")
    keep_start: bool = param(False, "the starting weights are the epoch-0 candidate of selection on dev (their "
                             "recorded dev scores): fine-tuning is kept only where dev says it helped")

    def __post_init__(self):
        if self.lr is not None:
            check_range("lr", self.lr, 0.0, lo_open=True)

    def peak_lr(self, lr: float) -> float:
        return lr if self.lr is None else self.lr

    def start_is_candidate(self) -> bool:
        return self.keep_start


def available() -> list[str]:
    return METHODS.names()


def validate_method(name: str, params: dict, where: str = "methods") -> dict:
    """Check a method name and its parameters; return the parameters with their types converted."""
    cls = METHODS.get(name, where)
    try:
        method = build(cls, params, f"{where}.{name}", noun="parameter")
    except ParamError as e:
        raise UserError(f"{where}.{name}.{e.key}: {e}") from None
    except (ValueError, TypeError) as e:
        raise UserError(f"{where}.{name}: {e}") from None
    return {k: getattr(method, k) for k in params}


def get_method(name: str, params: dict | None = None) -> Method:
    return METHODS.get(name)(**(params or {}))
