"""Intervals and power for scores measured on seeds × test examples.

A table cell is the mean of one method's per-example scores over S seeds and n test examples; a
difference is the same mean of the paired per-example differences (method minus baseline, seed s
against seed s: both share the initialisation and the data order, see docs/statistics.md). Neither
is a mean of S·n independent numbers: the same test example is hard or easy under every seed, and a
whole seed is lucky or not. The model (two-way random effects, one value per cell):

    x[s, i] = mu + a[s] + b[i] + e[s, i],   var a = seed, var b = example, var e = noise

so that var(mean) = seed/S + example/n + noise/(S·n). The components are estimated by the method
of moments (two-way ANOVA without replication, each clipped at 0); the interval is the mean ± a t
quantile on Satterthwaite's degrees of freedom times the estimated standard error. With one seed
no seed part can be estimated: the interval then counts the test examples alone, says so
(`example_only`), and no difference is called significant on it.

Plain functions over numpy arrays shaped seeds × examples, in whatever unit the scores are (the
report passes ×100). docs/statistics.md gives the formulas and why; tests/test_stats.py checks the
coverage by simulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sp

ALPHA = 0.05
POWER = 0.8


@dataclass(frozen=True)
class Components:
    """Variance components of seeds × examples scores, and the mean squares they come from.
    `seed` and `noise` are None with one seed (not separable from the examples then)."""

    seeds: int
    examples: int
    seed: float | None  # var of the seed effect a[s]
    example: float  # var of the per-example effect b[i] shared by every seed (with one seed: b + e)
    noise: float | None  # var of the seed × example noise e[s, i]
    ms_seed: float | None
    ms_example: float
    ms_noise: float | None

    # What summary.json keeps of them (the report's differences) and `exposure power` plans from.
    RECORD = ("seeds", "examples", "seed", "example", "noise")

    def record(self) -> dict:
        return {k: getattr(self, k) for k in self.RECORD}

    @classmethod
    def from_record(cls, d: dict) -> "Components":
        """Components from `record()`'s fields (the mean squares are not kept, nor needed for planning)."""
        return cls(*(d[k] for k in cls.RECORD), None, None, None)


def _matrix(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 2:
        raise ValueError(f"expected scores shaped seeds × examples with at least 2 examples, got shape {x.shape}")
    return x


def mean_squares(x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MS_seed, MS_example and MS_noise of x shaped (..., seeds, examples), over its last two
    axes (so that a simulation computes thousands at once); seeds ≥ 2."""
    x = np.asarray(x, dtype=np.float64)
    s, n = x.shape[-2:]
    grand = x.mean(axis=(-2, -1), keepdims=True)
    seed_means, ex_means = x.mean(axis=-1, keepdims=True), x.mean(axis=-2, keepdims=True)
    ms_seed = n * ((seed_means - grand) ** 2).sum(axis=(-2, -1)) / (s - 1)
    ms_ex = s * ((ex_means - grand) ** 2).sum(axis=(-2, -1)) / (n - 1)
    ms_noise = ((x - seed_means - ex_means + grand) ** 2).sum(axis=(-2, -1)) / ((s - 1) * (n - 1))
    return ms_seed, ms_ex, ms_noise


def components(x) -> Components:
    """Method-of-moments variance components of a seeds × examples array (each clipped at 0).

    E[MS_seed] = noise + n·seed, E[MS_example] = noise + S·example, E[MS_noise] = noise."""
    x = _matrix(x)
    s, n = x.shape
    if s == 1:
        ms_ex = float(x.var(ddof=1))
        return Components(1, n, None, ms_ex, None, None, ms_ex, None)
    ms_seed, ms_ex, ms_noise = (float(v) for v in mean_squares(x))
    return Components(s, n, max(0.0, (ms_seed - ms_noise) / n), max(0.0, (ms_ex - ms_noise) / s), ms_noise,
                      ms_seed, ms_ex, ms_noise)


def variance_and_df(ms_seed, ms_ex, ms_noise, s: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """var(mean) = (MS_seed + MS_example − MS_noise)/(S·n), and Satterthwaite's degrees of freedom
    of that sum of mean squares; where MS_example < MS_noise the example part is clipped to 0 and
    the seed part alone is left (S − 1 df). Vectorised over arrays of mean squares."""
    ms_seed, ms_ex, ms_noise = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (ms_seed, ms_ex, ms_noise)))
    keep = ms_ex > ms_noise
    total = ms_seed + np.where(keep, ms_ex - ms_noise, 0.0)
    denom = ms_seed ** 2 / (s - 1) + np.where(keep, ms_ex ** 2 / (n - 1) + ms_noise ** 2 / ((s - 1) * (n - 1)), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denom > 0, total ** 2 / np.where(denom > 0, denom, 1.0), np.inf)
    return total / (s * n), df


def quantile(q: float, df) -> np.ndarray:
    """Student's t quantile on df degrees of freedom (the normal one where df is infinite)."""
    df = np.asarray(df, dtype=np.float64)
    return np.where(np.isinf(df), _sp.norm.ppf(q), _sp.t.ppf(q, np.where(np.isinf(df), 1.0, df)))


def standard_error(c: Components) -> tuple[float, float, bool]:
    """(standard error of the mean, degrees of freedom, example_only) from estimated components."""
    if c.seeds == 1:
        return math.sqrt(c.ms_example / c.examples), math.inf, True
    var, df = variance_and_df(c.ms_seed, c.ms_example, c.ms_noise, c.seeds, c.examples)
    return math.sqrt(max(float(var), 0.0)), float(df), False


def _t(q: float, df: float) -> float:
    return float(quantile(q, df))


def interval(x, alpha: float = ALPHA) -> dict:
    """The mean of a seeds × examples array with its (1 − alpha) interval: the cell's own interval
    (one method) or, given paired differences, a difference's. Keys: mean, lo, hi, se, df,
    example_only, components."""
    x = _matrix(x)
    c = components(x)
    se, df, example_only = standard_error(c)
    mean = float(x.mean())
    half = _t(1 - alpha / 2, df) * se
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "se": se, "df": df, "example_only": example_only,
            "components": c}


def difference(method, baseline, alpha: float = ALPHA, power: float = POWER) -> dict:
    """Method minus baseline over paired seeds × examples arrays (row s of each from the same seed):
    diff, lo, hi, significant (the interval excludes 0, and it counts the seeds), se, df,
    example_only, mde (the effect this design detects with `power`), components."""
    method, baseline = _matrix(method), _matrix(baseline)
    if method.shape != baseline.shape:
        raise ValueError(f"paired scores need one shape, got {method.shape} and {baseline.shape}")
    r = interval(method - baseline, alpha)
    c = r["components"]
    return {"diff": r["mean"], "lo": r["lo"], "hi": r["hi"],
            "significant": bool(not r["example_only"] and (r["lo"] > 0 or r["hi"] < 0)),
            "se": r["se"], "df": r["df"], "example_only": r["example_only"],
            "mde": None if r["example_only"] else mde(c, c.seeds, alpha, power), "components": c}


# ------------------------------------------------------------------------------- power


def _planned(c: Components, seeds: int) -> tuple[float, float]:
    """Standard error and Satterthwaite df of a design with `seeds` seeds on the same test
    examples, when the true components are c's (their expected mean squares at that S)."""
    if c.seed is None:
        raise ValueError("one seed: the seed component is not estimable, so no design can be planned from it")
    n = c.examples
    ms_seed, ms_ex, ms_noise = c.noise + n * c.seed, c.noise + seeds * c.example, c.noise
    if seeds == 1:
        return math.sqrt(c.seed + (c.example + c.noise) / n), math.inf  # no df: nothing estimable anyway
    var, df = variance_and_df(ms_seed, ms_ex, ms_noise, seeds, n)
    return math.sqrt(float(var)), float(df)


def mde(c: Components, seeds: int | None = None, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable effect: the true difference that a two-sided test at `alpha` on `seeds`
    seeds (default: c's) rejects with probability `power`, (t_{1−α/2} + t_{power}) · SE."""
    se, df = _planned(c, c.seeds if seeds is None else seeds)
    return (_t(1 - alpha / 2, df) + _t(power, df)) * se


def floor(c: Components, alpha: float = ALPHA, power: float = POWER) -> float:
    """The MDE that no number of seeds goes below on this test set: the shared-example part,
    (z_{1−α/2} + z_{power}) · sqrt(example / n)."""
    if c.seed is None:
        raise ValueError("one seed: the shared-example component is not separable from the noise")
    return (_t(1 - alpha / 2, math.inf) + _t(power, math.inf)) * math.sqrt(c.example / c.examples)


def seeds_needed(c: Components, effect: float, alpha: float = ALPHA, power: float = POWER,
                 limit: int = 1_000_000) -> int | None:
    """The fewest seeds (≥ 2) whose MDE is ≤ effect; None when the floor is ≥ effect ("unreachable
    on this test set") or more than `limit` seeds would be needed."""
    effect = abs(effect)
    if floor(c, alpha, power) >= effect:
        return None
    lo, hi = 2, 2
    while mde(c, hi, alpha, power) > effect:  # MDE falls with S: double, then bisect
        if hi >= limit:
            return None
        lo, hi = hi, min(limit, hi * 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if mde(c, mid, alpha, power) <= effect:
            hi = mid
        else:
            lo = mid + 1
    return hi


# A planned 95% half-width is the MDE at 50% power: t_{0.5} = 0 leaves t_{1−α/2} · SE.
HALF_WIDTH_POWER = 0.5


def half_width(c: Components, seeds: int | None = None, alpha: float = ALPHA) -> float:
    """The (1 − alpha) interval's half-width t_{1−α/2} · SE that `seeds` seeds (default: c's) give."""
    return mde(c, seeds, alpha, HALF_WIDTH_POWER)


def half_width_floor(c: Components, alpha: float = ALPHA) -> float:
    """The half-width no number of seeds goes below on this test set: z_{1−α/2} · sqrt(example / n)."""
    return floor(c, alpha, HALF_WIDTH_POWER)


def seeds_for_half_width(c: Components, target: float, alpha: float = ALPHA) -> int | None:
    """The fewest seeds whose planned half-width is ≤ target; None when the floor is ≥ target."""
    return seeds_needed(c, target, alpha, HALF_WIDTH_POWER)
