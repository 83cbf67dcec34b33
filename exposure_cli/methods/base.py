"""The method registry and the `Method` base class.

A method may override two hooks:
- `corrupt(batch, ctx)`: change the decoder inputs before the forward pass (labels stay);
- `loss(model, batch, ctx)`: compute the training loss, adding terms or extra passes.
Its parameters are its dataclass fields; the spec names it `{name: {param: value}}`.
"""

from __future__ import annotations

import dataclasses
import random
import typing
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..batching import Batch
from ..errors import UserError

_REGISTRY: dict[str, type["Method"]] = {}


def register(cls: type["Method"]) -> type["Method"]:
    _REGISTRY[cls.name] = cls
    return cls


@dataclass
class StepContext:
    step: int  # optimizer steps done so far
    total_steps: int
    generator: torch.Generator  # the method's own random stream (device of the batch)
    rng: random.Random
    label_smoothing: float = 0.0


@dataclass
class Method:
    name: ClassVar[str] = ""
    # True when the loss differentiates a gradient (create_graph=True): the model then avoids the
    # fused attention kernels, which have no double backward.
    needs_double_backward: ClassVar[bool] = False

    def corrupt(self, batch: Batch, ctx: StepContext) -> Batch:
        return batch

    def loss(self, model, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        ce = model.target_loss(batch, label_smoothing=ctx.label_smoothing)
        return ce, {"ce": ce.item()}

    def label(self) -> str:
        """Name plus the parameters that differ from their defaults, e.g. `random_replace(ratio=0.2)`."""
        changed = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                   if getattr(self, f.name) != _default(f)]
        return f"{self.name}({', '.join(changed)})" if changed else self.name


class ParamError(ValueError):
    """A parameter value out of range; `validate_method` reports it under the parameter's key path."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ParamError(key, f"expected one of {', '.join(choices)}, got {value!r}")


def check_range(key: str, value: float, lo: float, hi: float | None = None, *, lo_open: bool = False) -> None:
    ok = (value > lo if lo_open else value >= lo) and (hi is None or value <= hi)
    if not ok:
        lo_s = f"{'(' if lo_open else '['}{lo}"
        raise ParamError(key, f"expected a number in {lo_s}, {hi if hi is not None else '∞'}{']' if hi is not None else ')'}, got {value!r}")


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@register
@dataclass
class Baseline(Method):
    """Plain teacher forcing."""

    name: ClassVar[str] = "baseline"


def available() -> list[str]:
    return sorted(_REGISTRY)


def validate_method(name: str, params: dict, where: str = "methods") -> dict:
    """Check a method name and its parameters; return the parameters with their types converted."""
    from ..spec import _convert

    cls = _REGISTRY.get(name)
    if cls is None:
        raise UserError(f"{where}: unknown method {name!r} (available: {', '.join(available())})")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    out = {}
    for key, value in params.items():
        if key not in names:
            expected = ", ".join(names) if names else "no parameters"
            raise UserError(f"{where}.{name}.{key}: unknown parameter (expected {expected})")
        out[key] = _convert(value, hints[key], f"{where}.{name}.{key}")
    try:
        cls(**out)
    except ParamError as e:
        raise UserError(f"{where}.{name}.{e.key}: {e}") from None
    except (ValueError, TypeError) as e:
        raise UserError(f"{where}.{name}: {e}") from None
    return out


def get_method(name: str, params: dict | None = None) -> Method:
    return _REGISTRY[name](**(params or {}))
