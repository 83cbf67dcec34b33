"""PNG figures of a summary: each metric against beam size, our differences to baseline beside the
article's, and every run's dev BLEU per epoch.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot: no global state, no GUI backend)
and written atomically. Everything but the dev-BLEU curves comes from summary.json alone.
"""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import fileio
from ..runner import rundir
from . import paper
from .summary import HEADERS, METRICS
from .tables import method_names

DPI = 120
CI_NOTE = ("bars: 95% interval of the mean from the seeds × test-examples variance components "
           "(seed spread and test-set sampling counted; one seed: test examples only)")


def write_plots(summary: dict, out_dir: Path, paper_name: str | None = None,
                run_root: Path | None = None) -> tuple[list[Path], list[str]]:
    """Write every figure the inputs allow into out_dir; returns (files written, one-line notes on
    what was left out and why)."""
    written, notes = [], []
    has_ci = all(f"{m}_ci" in r for r in _scored(summary) for m in METRICS)
    if not has_ci:
        notes.append("this summary has no per-cell intervals (written before they existed): beam plots without bars")
    for m in METRICS:
        written.append(save_png(beam_figure(summary, m, has_ci), out_dir / f"beam_{m}.png"))
    if any("vs_baseline" in r for r in summary["rows"]):
        if paper_name is None:
            notes.append("the article's differences left out: its table is unknown for "
                         f"{summary['name']!r} (give --paper csl or --paper lcsts)")
        written.append(save_png(delta_figure(summary, paper_name), out_dir / "deltas_vs_article.png"))
    else:
        notes.append("no differences to baseline in this summary (no baseline run): delta plot skipped")
    if run_root is None:
        notes.append("dev-BLEU curves skipped: they need the run directories (give the output directory, not a JSON)")
    else:
        curves, missing = dev_bleu_curves(summary, run_root)
        notes += [f"{p}: not found, left out of the dev-BLEU plot" for p in missing]
        if curves:
            written.append(save_png(dev_bleu_figure(summary["name"], curves), out_dir / "dev_bleu.png"))
        else:
            notes.append(f"{run_root}: no run's train.jsonl has an epoch line: dev-BLEU plot skipped")
    return written, notes


def _scored(summary: dict) -> list[dict]:
    return [r for r in summary["rows"] if r.get(METRICS[0]) is not None]


def save_png(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    return fileio.write_bytes(path, buf.getvalue())


def new_figure(width: float = 10, height: float = 5) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def beam_figure(summary: dict, metric: str, with_ci: bool) -> Figure:
    """The metric against beam size, a line per method, with interval bars when the summary has them."""
    fig = new_figure()
    ax = fig.add_subplot()
    rows = _scored(summary)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for i, method in enumerate(methods):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["beam"])
        # A small sideways offset per method keeps overlapping bars apart.
        x = [r["beam"] + (i - (len(methods) - 1) / 2) * 0.04 for r in mine]
        y = [r[metric] for r in mine]
        yerr = None
        if with_ci:
            yerr = [[r[metric] - r[f"{metric}_ci"][0] for r in mine], [r[f"{metric}_ci"][1] - r[metric] for r in mine]]
        ax.errorbar(x, y, yerr=yerr, marker="o", capsize=4, label=method)
    beams = sorted({r["beam"] for r in rows})
    ax.set_xticks(beams)
    ax.set_xlabel("beam size")
    ax.set_ylabel(f"{HEADERS[metric]} (×100)")
    ax.set_title(f"{summary['name']}: test {HEADERS[metric]} by beam size, mean over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: bars stay visible
    fig.supxlabel(CI_NOTE if with_ci else "no interval bars: the summary has none", fontsize="x-small")
    return fig


def delta_figure(summary: dict, paper_name: str | None) -> Figure:
    """Per metric, each method's difference to baseline at each beam: ours with its 95% interval
    (seeds and test examples counted), the article's beside it (when its table is known and has the method). Horizontal bars,
    so that long method labels stay readable."""
    rows = [r for r in summary["rows"] if "vs_baseline" in r]
    names = method_names(summary)
    fig = new_figure(12, 3 + 0.45 * len(rows))
    axes = fig.subplots(2, 2, sharey=True).flat
    y = list(range(len(rows)))
    height = 0.4
    theirs = [paper.article_delta(paper_name, names[r["method"]], r["beam"]) if paper_name else None for r in rows]
    for ax, m in zip(axes, METRICS):
        ours = [r["vs_baseline"][m] for r in rows]
        err = [[d["diff"] - d["lo"] for d in ours], [d["hi"] - d["diff"] for d in ours]]
        ax.barh([i - height / 2 for i in y], [d["diff"] for d in ours], height, xerr=err, capsize=3, label="ours")
        if paper_name is not None:
            # NaN draws no bar: a method the article did not run has none.
            ax.barh([i + height / 2 for i in y], [d[m] if d else float("nan") for d in theirs], height,
                    label=f"article ({paper.TITLES[paper_name]})")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, [f"{r['method']}, beam {r['beam']}" for r in rows], fontsize="small")
        ax.set_title(f"Δ {HEADERS[m]} vs baseline (×100)")
        ax.grid(axis="x", alpha=0.3)
    fig.axes[0].invert_yaxis()  # shared: the table's order, top to bottom
    fig.axes[0].legend(fontsize="small")
    fig.suptitle(f"{summary['name']}: difference to baseline at the same beam")
    fig.supxlabel("ours: mean over seeds, paired by seed, with its 95% interval (seeds and test examples "
                  "counted; docs/statistics.md); article: its table's "
                  "method minus baseline", fontsize="x-small")
    return fig


def dev_bleu_curves(summary: dict, run_root: Path) -> tuple[dict[str, list[tuple[int, float]]], list[Path]]:
    """label → [(epoch, dev BLEU)] of every finished run in summary["runs"], read from its
    train.jsonl; and the logs that were missing."""
    curves, missing = {}, []
    for rec in summary.get("runs", []):
        if "failed" in rec:
            continue
        log = rundir.run_path(run_root, rec["method"], rec["seed"]) / rundir.LOG
        if not log.is_file():
            missing.append(log)
            continue
        epochs = _dev_bleu(log)
        if epochs:
            curves[f"{rec['method']} seed {rec['seed']}"] = sorted(epochs.items())
    return curves, missing


def _dev_bleu(log: Path) -> dict[int, float]:
    """epoch → dev BLEU from a train.jsonl's epoch lines (step lines have no "dev")."""
    return {e["epoch"]: e["dev"]["bleu"] for e in rundir.read_log(log)
            if isinstance(e.get("dev"), dict) and "bleu" in e["dev"]}


def dev_bleu_figure(name: str, curves: dict[str, list[tuple[int, float]]]) -> Figure:
    """Dev BLEU after each epoch, a line per run; the epoch whose weights were kept (the first best,
    as selection keeps only a strict improvement) is starred."""
    fig = new_figure()
    ax = fig.add_subplot()
    for label, points in curves.items():
        line = ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)[0]
        best = max(points, key=lambda p: p[1])
        ax.plot([best[0]], [best[1]], marker="*", markersize=14, color=line.get_color())
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev BLEU (×100, greedy)")
    ax.set_title(f"{name}: dev BLEU per epoch (star: the selected epoch)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: curves stay visible
    return fig
