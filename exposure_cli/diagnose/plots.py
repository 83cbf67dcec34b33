"""The comparison's PNG plots: accuracy after k injected errors, search errors by beam, beam curse.
Drawn as report/plots.py draws every figure: on matplotlib's Agg canvas, no pyplot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..report.plots import new_figure, save_png
from .base import KINDS, Options

PLOTS = ("diagnostics.robustness.png", "diagnostics.search_errors.png", "diagnostics.beam_curse.png")


def _errorbar(ax, xs, cells, shift: float = 0.0, **kw):
    """Means with their intervals; `shift` moves a method's points sideways so the bars do not overlap."""
    xs = np.asarray(xs, dtype=np.float64) + shift
    ys = [c["mean"] if c and c["mean"] is not None else math.nan for c in cells]
    lo = [y - c["lo"] if c and c.get("lo") is not None else 0.0 for y, c in zip(ys, cells)]
    hi = [c["hi"] - y if c and c.get("hi") is not None else 0.0 for y, c in zip(ys, cells)]
    ax.errorbar(xs, ys, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)], capsize=3, **kw)


def write_plots(out_dir: Path, agg: dict, opts: Options) -> list[str]:
    """Accuracy after the errors against k, search-error share against beam, beam-curse share."""
    methods = agg["methods"]
    names = []
    fig = new_figure(10, 4)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, kind in zip(axes, KINDS):
        for i, (m, v) in enumerate(methods.items()):
            rob = v["values"]["robustness"]
            _errorbar(ax, opts.errors, [rob.get(f"{kind}_k{k}_acc") for k in opts.errors], _shift(i, methods),
                      color=f"C{i}", marker="o", label=m)
            ax.plot(np.asarray(opts.errors) + _shift(i, methods),
                    [rob.get(f"{kind}_k{k}_clean_acc", {}).get("mean") for k in opts.errors],
                    color=f"C{i}", linestyle=":", alpha=0.7)
        ax.set(title=f"{'model-made' if kind == 'model' else 'random'} errors", xlabel="injected errors k",
               xticks=list(opts.errors))
    axes[0].set_ylabel("accuracy after the last error (%)\n(dotted: same tokens, clean prefix)")
    axes[0].legend()
    names.append(save_png(fig, out_dir / PLOTS[0]).name)
    fig = new_figure(5, 4)
    ax = fig.add_subplot()
    for i, (m, v) in enumerate(methods.items()):
        _errorbar(ax, opts.beams, [v["values"]["search"].get(f"b{b}_search") for b in opts.beams],
                  _shift(i, methods), color=f"C{i}", marker="o", label=m)
    ax.set(xlabel="beam size", ylabel="search errors (% of examples)", xticks=list(opts.beams),
           title="reference scores higher than the output")
    ax.legend()
    names.append(save_png(fig, out_dir / PLOTS[1]).name)
    names.append(save_png(_curse_figure(methods, opts), out_dir / PLOTS[2]).name)
    return names


def _shift(i: int, methods) -> float:
    return 0.06 * (i - (len(methods) - 1) / 2)


def _curse_figure(methods: dict, opts: Options):
    beams = [b for b in opts.beams if b != 1]
    fig = new_figure(5, 4)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(beams))
    for j, b in enumerate(beams):
        cells = [v["values"]["beam_curse"].get(f"b{b}_curse") for v in methods.values()]
        xs = np.arange(len(methods)) + (j - (len(beams) - 1) / 2) * width
        ys = [c["mean"] if c and c["mean"] is not None else 0.0 for c in cells]
        err = [[max(0.0, y - (c["lo"] if c and c["lo"] is not None else y)) for y, c in zip(ys, cells)],
               [max(0.0, (c["hi"] if c and c["hi"] is not None else y) - y) for y, c in zip(ys, cells)]]
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=f"beam {b}")
    ax.set_xticks(np.arange(len(methods)), list(methods), rotation=15)
    ax.set(ylabel="beam curse (% of examples)", title="scores higher than greedy, lower Rouge-L")
    if beams:
        ax.legend()
    return fig
