"""Across runs: per method the mean over seeds, with a 95% percentile bootstrap over test examples
(the same resampled examples for every run, so each method's difference to baseline is paired).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UserError
from .base import Diagnostic, Options, diagnostics
from .record import RunResult, _clean, _options_record


def resample_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(R, n): how often each example is drawn in each bootstrap resample (one draw for every run)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    counts = np.zeros((n_resamples, n))
    np.add.at(counts, (np.arange(n_resamples)[:, None], idx), 1.0)
    return counts


def _resampled(res: RunResult, counts: np.ndarray, diags: list[Diagnostic]) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for d in diags:
        rs = res.ratios[d.name]
        with np.errstate(invalid="ignore", divide="ignore"):
            v = {k: np.where((den := counts @ r.den) > 0, (counts @ r.num) / den, np.nan) for k, r in rs.items()}
        out[d.name] = {**v, **d.derive(v)}
    return out


def _interval(point: float, boot: np.ndarray) -> dict:
    if math.isnan(point) or np.all(np.isnan(boot)):
        return {"mean": _clean(point), "lo": None, "hi": None}
    lo, hi = np.nanpercentile(boot, [2.5, 97.5])
    return {"mean": _clean(point), "lo": _clean(lo), "hi": _clean(hi)}


def _seed_mean(xs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean over seeds that are all NaN is NaN
        return np.nanmean(np.stack([np.asarray(x, dtype=np.float64) for x in xs]), axis=0)


def method_order(results: list[RunResult], baseline: str = "baseline") -> list[str]:
    """Baseline first, then the spec's order of methods, then any other method found."""
    labels = list(dict.fromkeys(r.method for r in results))
    ordered = [m for m in [baseline, *results[0].spec_methods] if m in labels]
    return list(dict.fromkeys(ordered + labels))


def aggregate(results: list[RunResult], opts: Options, baseline: str = "baseline") -> dict:
    """Per method: each statistic's mean over seeds with its 95% bootstrap interval, and the
    difference to baseline with its paired interval (one set of resampled examples for all runs)."""
    ns = {r.record["n_examples"] for r in results}
    if len(ns) != 1:
        raise UserError("the runs do not share one set of examples (" + ", ".join(
            f"{r.method} seed {r.seed}: {r.record['n_examples']} examples" for r in results) + ")")
    diags = diagnostics(opts)
    counts = resample_counts(ns.pop(), opts.n_resamples, opts.seed)
    boots = [_resampled(r, counts, diags) for r in results]
    # (method, diagnostic, statistic) → (mean over seeds, its resamples)
    est: dict[tuple[str, str, str], tuple[float, np.ndarray]] = {}
    methods = {}
    for m in method_order(results, baseline):
        mine = [i for i, r in enumerate(results) if r.method == m]
        methods[m] = {"seeds": [results[i].seed for i in mine], "values": {}, "vs_baseline": {}}
        for d in diags:
            for stat in results[mine[0]].values[d.name]:
                point = float(_seed_mean([results[i].values[d.name][stat] for i in mine]))
                est[(m, d.name, stat)] = point, _seed_mean([boots[i][d.name][stat] for i in mine])
                cell = _interval(*est[(m, d.name, stat)])
                cell["per_seed"] = [_clean(results[i].values[d.name][stat]) for i in mine]
                methods[m]["values"].setdefault(d.name, {})[stat] = cell
    for (m, d, stat), (point, boot) in est.items():
        if m != baseline and (baseline, d, stat) in est:
            bp, bb = est[(baseline, d, stat)]
            cell = _interval(point - bp, boot - bb)
            sig = cell["lo"] is not None and (cell["lo"] > 0 or cell["hi"] < 0)
            methods[m]["vs_baseline"].setdefault(d, {})[stat] = {"diff": cell["mean"], "lo": cell["lo"],
                                                                 "hi": cell["hi"], "significant": sig}
    return {"split": opts.split, "n_examples": results[0].record["n_examples"], "options": _options_record(opts),
            "interval": INTERVAL_NOTE, "methods": methods,
            "runs": [{"method": r.method, "seed": r.seed, "dir": f"{r.dir.parent.name}/{r.dir.name}",
                      "values": r.record["values"], "checks": r.record["checks"]} for r in results]}


INTERVAL_NOTE = ("95% percentile bootstrap over examples: 1,000 resamples of the examples, the same for every run; "
                 "in each resample a statistic is recomputed per run and averaged over the method's seeds, so the "
                 "interval covers the choice of test examples, not the spread between seeds (per_seed lists that). "
                 "Differences to baseline use the same resamples on both sides (paired).")
