"""`robustness`: the gold tokens' accuracy and NLL after k injected errors (the model's own best
wrong token, or a uniformly random one) against the clean pass on the same tokens, and the slope
over k of the drop: the model's exposure-bias sensitivity.

Injected errors go at sorted random positions, so under the causal mask the tokens between the
k-th and the (k+1)-th error are predicted exactly as in a sequence holding only the first k: one
corrupted pass per kind measures every k (`window="next"`); `window="end"` costs a pass per k.
"""

from __future__ import annotations

import math

import numpy as np

from .base import DIAGNOSTICS, KINDS, Column, Diagnostic, Ratio
from .scoring import TokenScores


def injection_plan(gold: list[int], wrong: np.ndarray, ordinary: np.ndarray, seed: int, example: int,
                   n_errors: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(positions, tokens) of one example's injected errors: up to `n_errors` target positions drawn
    uniformly without replacement, in increasing order (k errors are the first k), and per kind the
    token put at each.

    Candidates are the target tokens before the last one (the last is fed but nothing after it is
    measured). `model`: `wrong`, the model's best non-gold token at that position under teacher
    forcing; `random`: uniform over `ordinary` (sorted ids, special tokens excluded) minus the gold
    token. Drawn from (seed, example) alone, so every run of an experiment gets the same positions.
    """
    m = len(gold) - 1
    rng = np.random.default_rng([seed, example])
    positions = np.sort(rng.permutation(m)[:n_errors])
    u = rng.random(m)[positions]
    g = np.asarray(gold, dtype=np.int64)[positions]
    at = np.searchsorted(ordinary, g)
    is_ordinary = (at < len(ordinary)) & (ordinary[np.minimum(at, len(ordinary) - 1)] == g)
    choice = np.floor(u * (len(ordinary) - is_ordinary)).astype(np.int64)
    choice += is_ordinary & (choice >= at)  # skip the gold token itself
    return positions, {"model": np.asarray(wrong, dtype=np.int64)[positions], "random": ordinary[choice]}


def slope(ks, ys) -> np.ndarray | float:
    """Least-squares slope of ys (a list of floats or of equal-shape arrays) over ks."""
    ks = np.asarray(ks, dtype=np.float64)
    if len(ks) < 2 or np.all(ks == ks[0]):
        return math.nan
    kc = ks - ks.mean()
    mean = sum(ys) / len(ys)
    return sum(k * (y - mean) for k, y in zip(kc, ys)) / float((kc ** 2).sum())


def _robustness_group(kind: str) -> str:
    return f"robustness: {'model-made' if kind == 'model' else 'random'} errors"


def _inject(gold: list[int], positions, tokens) -> list[int]:
    fed = list(gold)
    for j, t in zip(positions, tokens):
        fed[int(j)] = int(t)
    return fed


def _window_stats(corrupt: list[TokenScores], clean: list[TokenScores], gold, windows) -> dict[str, Ratio]:
    """Accuracy (%) and NLL over each example's window (a boolean mask over its target tokens; None:
    all of them), of the corrupted pass and of the clean one on the same tokens."""
    windows = windows if windows is not None else [np.ones(len(g), dtype=bool) for g in gold]
    n = np.array([w.sum() for w in windows], dtype=np.float64)

    def total(scores, attr):
        return np.array([getattr(s, attr)[w].sum() for s, w in zip(scores, windows)], dtype=np.float64)

    return {"acc": Ratio(100.0 * total(corrupt, "correct"), n), "nll": Ratio(total(corrupt, "nll"), n),
            "clean_acc": Ratio(100.0 * total(clean, "correct"), n), "clean_nll": Ratio(total(clean, "nll"), n)}


@DIAGNOSTICS.register()
class Robustness(Diagnostic):
    """Accuracy and NLL of the gold tokens after k injected errors, against the clean pass on the same tokens."""

    name = "robustness"
    order = 1
    title = "robustness to injected errors"
    note = ("k target-prefix tokens replaced by the model's own best wrong token (model) or a uniformly random one "
            "(random); drop k=n: accuracy (%) of the gold tokens after the k-th error (up to the next injected "
            "position), clean pass minus corrupted pass on the same tokens; sensitivity: the least-squares slope of "
            "that drop over k (accuracy points lost per injected error), and of the NLL rise (nats per error).")

    def stats(self, ctx):
        clean = ctx.clean()
        ks = [k for k in self.opts.errors if k]
        plans = [injection_plan(g, c.wrong, ctx.ordinary, self.opts.seed, i, max(ks, default=0))
                 for i, (g, c) in enumerate(zip(ctx.gold, clean))]
        out = {}
        for kind in KINDS:
            out.update({f"{kind}_k0_{s}": r for s, r in _window_stats(clean, clean, ctx.gold, None).items()})
            # One pass with every error serves every k ("next"); "end" needs a pass per k.
            for m in ([max(ks)] if self.opts.window == "next" and ks else ks):
                fed = [_inject(g, pos[:m], tokens[kind][:m]) for g, (pos, tokens) in zip(ctx.gold, plans)]
                corrupt = ctx.score(list(range(ctx.n)), ctx.gold, fed)
                # errors in the prefix that predicts each target token (token j sees the inputs before j)
                seen = [np.searchsorted(pos[:m], np.arange(len(g))) for g, (pos, _) in zip(ctx.gold, plans)]
                for k in ks if self.opts.window == "next" else [m]:
                    windows = [e == k for e in seen]
                    out.update({f"{kind}_k{k}_{s}": r for s, r in _window_stats(corrupt, clean, ctx.gold,
                                                                                windows).items()})
        return out

    def derive(self, v):
        out = {}
        ks = self.opts.errors
        for kind in KINDS:
            drops = [v[f"{kind}_k{k}_clean_acc"] - v[f"{kind}_k{k}_acc"] for k in ks]
            rises = [v[f"{kind}_k{k}_nll"] - v[f"{kind}_k{k}_clean_nll"] for k in ks]
            out.update({f"{kind}_drop_k{k}": d for k, d in zip(ks, drops)})
            out[f"{kind}_sensitivity"] = slope(ks, drops)
            out[f"{kind}_sensitivity_nll"] = slope(ks, rises)
        return out

    def note_for(self, group):
        if group == _robustness_group("random"):
            return ("The same at the same positions, each error a token drawn uniformly from the vocabulary without "
                    "the special tokens and the gold one.")
        return self.note

    def columns(self):
        cols = []
        for kind in KINDS:
            group = _robustness_group(kind)
            cols += [Column(f"{kind}_drop_k{k}", f"drop k={k}", group=group) for k in self.opts.errors if k]
            cols += [Column(f"{kind}_sensitivity", "sensitivity", vs_baseline=True, group=group),
                     Column(f"{kind}_sensitivity_nll", "sensitivity NLL", group=group)]
        return cols
