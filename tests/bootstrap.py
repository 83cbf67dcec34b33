"""The paired percentile bootstrap over test examples that the tables used before the seeds ×
examples intervals (stats.py): a peer that tests compare the analytic pooled interval with."""

from __future__ import annotations

import numpy as np


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_resamples: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict:
    """Mean difference b − a (×100) of paired per-example scores with its percentile (1 − alpha)
    interval over resamples of example indices; significant when the interval excludes 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores need two 1-D arrays of one length, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("paired bootstrap needs at least one example")
    d = (b - a) * 100
    lo, hi = np.percentile(_resampled_means(d, n_resamples, seed), [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {
        "diff": float(d.mean()),
        "lo": float(lo),
        "hi": float(hi),
        "significant": bool(lo > 0 or hi < 0),
    }


def _resampled_means(x: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """The mean of x over each of n_resamples resamples (with replacement) of its indices."""
    rng = np.random.default_rng(seed)
    n = x.size
    means = np.empty(n_resamples)
    # Chunks bound memory (resamples × examples indices) on large test sets.
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    return means
