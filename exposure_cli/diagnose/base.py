"""The diagnostics' common parts: the options (and their checks), the per-example ratio statistic,
the `Diagnostic` type and its registry. A new measure is one registered `Diagnostic` in its own
file, imported by the package's __init__.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..errors import UserError
from ..registry import Registry

if TYPE_CHECKING:  # scoring imports this module
    from .scoring import Context


SPLITS = ("test", "dev", "train")

KINDS = ("model", "random")  # where an injected wrong token comes from

WINDOWS = ("next", "end")

CHECK_EXAMPLES = 32  # examples whose outputs are rescored per run, to check against the decoder's scores


@dataclass
class Options:
    split: str = "test"
    beams: tuple[int, ...] = (1, 2, 3)
    errors: tuple[int, ...] = (0, 1, 2, 3)
    seed: int = 0  # draws the injected positions and random tokens
    window: str = "next"  # robustness: measure k errors up to the next injected position, or to the "end"
    limit: int | None = None  # only the first N examples of the split
    batch_size: int = 64  # sequences per teacher-forced pass


def check_options(opts: Options) -> None:
    if opts.split not in SPLITS:
        raise UserError(f"--split {opts.split}: expected one of {', '.join(SPLITS)}")
    if not opts.beams or min(opts.beams) < 1 or len(set(opts.beams)) != len(opts.beams):
        raise UserError("--beams: expected distinct beam sizes ≥ 1, e.g. 1,2,3")
    if not opts.errors or min(opts.errors) < 0 or len(set(opts.errors)) != len(opts.errors):
        raise UserError("--errors: expected distinct error counts ≥ 0, e.g. 0,1,2,3")
    if opts.window not in WINDOWS:
        raise UserError(f"--window {opts.window}: expected one of {', '.join(WINDOWS)}")
    if opts.limit is not None and opts.limit < 1:
        raise UserError("--limit: expected at least 1")


@dataclass
class Ratio:
    """A run-level statistic Σ num / Σ den over examples, kept per example for its interval (`linearise`)."""

    num: np.ndarray
    den: np.ndarray

    @property
    def value(self) -> float:
        d = float(self.den.sum())
        return float(self.num.sum()) / d if d > 0 else math.nan


def linearise(num, den) -> np.ndarray:
    """Per-example values of the ratio R = Σ num / Σ den (over the last axis) for an interval over
    seeds × examples: R + (num_i − R·den_i) / mean(den). Their mean is exactly R, and their spread is
    R's to first order in the examples' noise (the delta method: R's influence function). A den of
    all ones gives num itself. NaN throughout where Σ den = 0 (no example to average)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    total = den.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(total > 0, num.sum(axis=-1, keepdims=True) / np.where(total > 0, total, 1.0), np.nan)
        return r + (num - r * den) / (total / den.shape[-1])


def share(mask) -> Ratio:
    """Percentage of examples where `mask` holds."""
    mask = np.asarray(mask, dtype=np.float64)
    return Ratio(100.0 * mask, np.ones_like(mask))


def mean_where(x, mask) -> Ratio:
    """Mean of `x` over the examples where `mask` holds."""
    mask = np.asarray(mask, dtype=np.float64)
    return Ratio(np.where(mask > 0, np.asarray(x, dtype=np.float64), 0.0) * mask, mask)


@dataclass
class Column:
    """A table column of a diagnostic: `stat` may hold `{beam}` (then it is a per-beam column)."""

    stat: str
    header: str
    kind: str = "interval"  # or "number": no interval
    vs_baseline: bool = False  # also tabulate the difference to baseline
    group: str = ""  # its table; default the diagnostic's title


class Diagnostic:
    """One measure: per-example ratio statistics of a run (`stats`), run-level quantities computed
    from their values (`derive`: floats in, floats out, smooth in them; the intervals linearise it
    by finite differences, aggregation.linearised_derived), and columns."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # its column group in the tables
    note: ClassVar[str] = ""  # printed under its table
    order: ClassVar[int] = 0  # its place in the tables

    def __init__(self, opts: Options):
        self.opts = opts

    def stats(self, ctx: Context) -> dict[str, Ratio]:
        raise NotImplementedError

    def derive(self, v: dict) -> dict:
        return {}

    def columns(self) -> list[Column]:
        return []

    def note_for(self, group: str) -> str:
        """The sentence under one of its tables."""
        return self.note


DIAGNOSTICS: Registry[type[Diagnostic]] = Registry("diagnostic", Diagnostic, family="diagnostics")


def diagnostics(opts: Options) -> list[Diagnostic]:
    """Every registered diagnostic, in table order."""
    return sorted((DIAGNOSTICS.get(name)(opts) for name in DIAGNOSTICS.names()), key=lambda d: d.order)
