"""Across runs: per method the mean over seeds with its 95% interval from the seeds × examples
variance components (stats.interval), and each method's difference to baseline, paired by seed
number (stats.difference).

The diagnostics are ratios Σ num / Σ den over examples, and statistics derived from them (the
robustness slope), not means of one number per example. stats wants a seeds × examples array whose
row mean is the run's statistic, so each run's statistic is linearised (delta method): per example
R + (num_i − R·den_i)/mean(den), whose mean is exactly R and whose spread over examples is R's to
first order; a derived statistic D = f(ratios) gets D + Σ_k ∂f/∂R_k · (z_k,i − R_k), the gradient
taken numerically through the diagnostic's own `derive`. docs/diagnostics.md says why.
"""

from __future__ import annotations

import math

import numpy as np

from .. import stats
from ..errors import UserError
from .base import Diagnostic, Options, diagnostics, linearise
from .record import RunResult, _clean, _options_record

STEP = 1e-5  # relative finite-difference step of the derived statistics' gradients (≈ eps^(1/3))


def linearised_derived(d: Diagnostic, values: dict[str, float], lin: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-example values of each statistic `d.derive` computes from the ratios `values` (with their
    linearised values `lin`): D + Σ_k g_k (lin_k − R_k), g the central finite-difference gradient of
    `derive` at the ratios. Its mean is exactly D; for a `derive` linear in the ratios it is exact."""
    point = d.derive(values)
    out = {k: np.full_like(next(iter(lin.values())), float(v)) for k, v in point.items()} if lin else {}
    for k, r in values.items():
        if not math.isfinite(r):
            continue  # a ratio with no example: a statistic reading it is NaN anyway
        h = STEP * max(1.0, abs(r))
        up, down = d.derive({**values, k: r + h}), d.derive({**values, k: r - h})
        for stat in out:
            g = (float(up[stat]) - float(down[stat])) / (2 * h)
            if g != 0.0 and math.isfinite(g):
                out[stat] += g * (lin[k] - r)
    return out


def linearised(res: RunResult, diags: list[Diagnostic]) -> dict[str, dict[str, np.ndarray]]:
    """Diagnostic → statistic → the run's per-example linearised values (NaN where the statistic is)."""
    out = {}
    for d in diags:
        lin = {k: linearise(r.num, r.den) for k, r in res.ratios[d.name].items()}
        out[d.name] = {**lin, **linearised_derived(d, {k: r.value for k, r in res.ratios[d.name].items()}, lin)}
    return out


def _rows(rows: list[np.ndarray]) -> np.ndarray | None:
    """The seeds × examples array of the finite rows, or None when no interval can be built."""
    rows = [r for r in rows if np.all(np.isfinite(r))]
    return np.stack(rows) if rows and len(rows[0]) >= 2 else None


def cell(rows: list[np.ndarray], per_seed: list[float]) -> dict:
    """A method's statistic: the mean over its seeds (those where it is defined) with its interval."""
    x = _rows(rows)
    finite = [v for v in per_seed if math.isfinite(v)]
    if x is None:
        mean = sum(finite) / len(finite) if finite else math.nan
        return {"mean": _clean(mean), "lo": None, "hi": None, "example_only": None}
    r = stats.interval(x)
    return {"mean": _clean(r["mean"]), "lo": _clean(r["lo"]), "hi": _clean(r["hi"]), "example_only": r["example_only"]}


def difference(method: dict[int, np.ndarray], baseline: dict[int, np.ndarray]) -> dict | None:
    """Method minus baseline over the seeds both have (seed s against seed s: the same initialisation
    and data order), from their linearised values; None when no seed pairs up."""
    seeds = [s for s in method if s in baseline and np.all(np.isfinite(method[s])) and np.all(np.isfinite(baseline[s]))]
    if not seeds or len(method[seeds[0]]) < 2:
        return None
    r = stats.difference(np.stack([method[s] for s in seeds]), np.stack([baseline[s] for s in seeds]))
    return {"diff": _clean(r["diff"]), "lo": _clean(r["lo"]), "hi": _clean(r["hi"]), "significant": r["significant"],
            "example_only": r["example_only"], "mde": None if r["mde"] is None else _clean(r["mde"]),
            "seeds": seeds}


def method_order(results: list[RunResult], baseline: str = "baseline") -> list[str]:
    """Baseline first, then the spec's order of methods, then any other method found."""
    labels = list(dict.fromkeys(r.method for r in results))
    ordered = [m for m in [baseline, *results[0].spec_methods] if m in labels]
    return list(dict.fromkeys(ordered + labels))


def aggregate(results: list[RunResult], opts: Options, baseline: str = "baseline") -> dict:
    """Per method: each statistic's mean over seeds with its 95% interval, and the difference to
    baseline with its interval, paired by seed number (module docstring)."""
    ns = {r.record["n_examples"] for r in results}
    if len(ns) != 1:
        raise UserError("the runs do not share one set of examples (" + ", ".join(
            f"{r.method} seed {r.seed}: {r.record['n_examples']} examples" for r in results) + ")")
    diags = diagnostics(opts)
    lin = [linearised(r, diags) for r in results]
    mine = {m: [i for i, r in enumerate(results) if r.method == m] for m in method_order(results, baseline)}
    methods = {}
    for m, idx in mine.items():
        methods[m] = {"seeds": [results[i].seed for i in idx], "values": {}, "vs_baseline": {}}
        for d in diags:
            for stat in results[idx[0]].values[d.name]:
                c = cell([lin[i][d.name][stat] for i in idx], [float(results[i].values[d.name][stat]) for i in idx])
                c["per_seed"] = [_clean(results[i].values[d.name][stat]) for i in idx]
                methods[m]["values"].setdefault(d.name, {})[stat] = c
                if m != baseline and baseline in mine and stat in results[mine[baseline][0]].values[d.name]:
                    diff = difference({results[i].seed: lin[i][d.name][stat] for i in idx},
                                      {results[i].seed: lin[i][d.name][stat] for i in mine[baseline]})
                    if diff is not None:
                        methods[m]["vs_baseline"].setdefault(d.name, {})[stat] = diff
    return {"split": opts.split, "n_examples": results[0].record["n_examples"], "options": _options_record(opts),
            "interval": INTERVAL_NOTE, "methods": methods,
            "runs": [{"method": r.method, "seed": r.seed, "dir": f"{r.dir.parent.name}/{r.dir.name}",
                      "values": r.record["values"], "checks": r.record["checks"]} for r in results]}


INTERVAL_NOTE = ("95% intervals from the seeds × test-examples variance components (docs/statistics.md: seed-to-seed "
                 "spread and the test set's sampling both counted, a t quantile on Satterthwaite's degrees of "
                 "freedom), each run's ratio statistic linearised per example (delta method; derived ones such as "
                 "the sensitivity through their gradient). Differences to baseline pair seed s with seed s (same "
                 "initialisation and data order) over the seeds both have. With one seed the interval counts the "
                 "test examples only (example_only, † on a difference, never *); per_seed lists each seed's value.")
