"""The leaderboard (issue 23): every method of one grid beside baseline, per beam, with the paired
intervals the experiment's tables use, the ranks those intervals allow, each method's training cost
per step (a warm start counted) and its exposure-bias diagnostics.

It reads an output directory of `exposure run` or a directory of kept runs (`exposure keep`): the
runs' metrics.json (scores, seconds, the warm start), predictions (the per-example scores the
intervals come from), train.jsonl (optimizer steps) and, where `exposure diagnose` measured a run,
its diagnostics.json. Nothing here computes a statistic of its own: differences are
report.paired_difference's (stats.difference), diagnostics diagnose.aggregate's. docs/methods.md
("Leaderboard") says how to read the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from .. import fileio
from ..errors import UserError
from ..runner import rundir
from ..spec import Spec, method_label
from . import summary as report
from .plots import new_figure, save_png
from .summary import HEADERS
from .tables import Col, Matrix, markdown

BASELINE = "baseline"
METRICS = ("rouge_l", "bleu")  # the leaderboard's two: the study's headline score and BLEU
NOT_MEASURED = "not measured"
NOT_RECORDED = "not recorded"

DELTA, RANK, COST, DIAG = ("difference to baseline", "rank the intervals allow", "training cost",
                           "exposure-bias diagnostics")


@dataclass
class Grid:
    """One experiment's runs as the leaderboard reads them."""

    dir: Path
    spec: Spec
    results: list[dict]  # each run's metrics.json, or {method, seed, failed}
    per_example: dict  # (label, beam, seed) → {metric: per-example scores in [0, 1]}
    summary: dict  # report.summarize_grid's, from the same per-example scores

    @property
    def finished(self) -> list[dict]:
        return [r for r in self.results if "failed" not in r]

    @property
    def labels(self) -> list[str]:
        """The spec's methods that have a row in the summary, in the spec's order."""
        present = {r["method"] for r in self.summary["rows"]}
        return [m for m in dict.fromkeys(method_label(m) for m in self.spec.methods) if m in present]


def load_grid(source: Path) -> Grid:
    """The runs under SOURCE, summarised by the function `exposure run` summarises with."""
    from ..runner.grid import grid_results  # pulls in torch

    source = Path(source)
    if not source.is_dir():
        raise UserError(f"{source}: not a directory (expected an output directory of `exposure run` or a "
                        "directory of kept runs of `exposure keep`)")
    if not rundir.finished_runs(source):
        raise UserError(f"{source}: no finished run (expected <method>/seed<k>/metrics.json and spec.yaml inside)")
    spec, results = grid_results(source)
    finished = [r for r in results if "failed" not in r]
    if not any(r["method"] == BASELINE for r in finished):
        raise UserError(f"{source}: no finished {BASELINE} run (the leaderboard sets every method beside "
                        f"{BASELINE}; the spec must list it)")
    per_example = report.per_example_scores(source, spec, finished)
    return Grid(source, spec, results, per_example, report.summarize_grid(spec, source, results, per_example))


# ------------------------------------------------------------------------- separation and ranks


def separation(per_example: dict, a: str, b: str, beam: int, metric: str) -> dict | None:
    """The one definition of "separated": methods a and b are separated at (beam, metric) when the
    95% interval of their paired difference a − b — seed s against seed s over the seeds both have,
    from the seeds × test-examples variance components (report.paired_difference, the same function
    as every difference to baseline) — excludes 0 and counts more than one seed (stats.difference's
    `significant`). None when they share no seed. No correction for the number of pairs compared."""
    d = report.paired_difference(per_example, a, b, beam, metric)
    if d is None:
        return None
    return {"a": a, "b": b, "beam": beam, "metric": metric, "diff": d["diff"], "lo": d["lo"], "hi": d["hi"],
            "example_only": d["example_only"], "separated": bool(d["significant"]),
            "seeds": report.paired_seeds(per_example, a, b, beam)}


def rank_ranges(labels: list[str], pairs: list[dict]) -> dict[str, tuple[int, int]]:
    """The ranks (1 = highest score) each method can claim at one (beam, metric) from its separated
    pairs: no better than 1 + the methods separated above it, no worse than N − the methods
    separated below it. A method separated from every other gets one rank; none separated, 1–N."""
    above = {m: 0 for m in labels}
    below = {m: 0 for m in labels}
    for p in pairs:
        if p["separated"] and p["a"] in above and p["b"] in above:
            hi, lo = (p["a"], p["b"]) if p["diff"] > 0 else (p["b"], p["a"])
            above[lo] += 1
            below[hi] += 1
    n = len(labels)
    return {m: (1 + above[m], n - below[m]) for m in labels}


def _rank_text(r: tuple[int, int]) -> str:
    return str(r[0]) if r[0] == r[1] else f"{r[0]}–{r[1]}"


# ------------------------------------------------------------------------------------ cost


def logged_steps(log: Path) -> int | None:
    """The last optimizer step a run's train.jsonl logged (a step line every train.log_every
    steps), or None without one."""
    if not log.is_file():
        return None
    steps = [e["step"] for e in rundir.read_log(log) if isinstance(e.get("step"), int)]
    return max(steps) if steps else None


def _number(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


# Which of metrics.json's training clocks the cost columns read: the process's CPU seconds when every
# run (and every warm start) recorded them, else wall seconds (runs finished before they were recorded).
CLOCKS = {"cpu": "train_cpu_seconds", "wall": "train_seconds"}


def cost_clock(runs: list[dict]) -> str:
    recorded = all(_number(r.get(CLOCKS["cpu"])) is not None and
                   ("warm_start" not in r or _number(r["warm_start"].get(CLOCKS["cpu"])) is not None) for r in runs)
    return "cpu" if runs and recorded else "wall"


def run_cost(grid: Grid, run: dict, clock: str = "wall") -> dict:
    """One run's training seconds on `clock`, the steps its log recorded and its warm start's training
    seconds (metrics.json's `warm_start` record; 0 for a run that starts from scratch, None when a
    warm-started method's record lacks them)."""
    from ..methods import get_method

    key = CLOCKS[clock]
    warm = None if get_method(run.get("method_name", run["method"]), run.get("params")).warm_start else 0.0
    if "warm_start" in run:
        warm = _number(run["warm_start"].get(key))
    return {"seed": run["seed"], "train_seconds": _number(run.get(key)),
            "steps": logged_steps(rundir.run_path(grid.dir, run["method"], run["seed"]) / rundir.LOG),
            "warm_start_seconds": warm, "warm_start_from": run.get("warm_start", {}).get("from")}


def costs(grid: Grid) -> tuple[str, dict[str, dict]]:
    """The clock read (`cost_clock`) and per method: training seconds per optimizer step, pooled over
    its seeds (Σ seconds / Σ steps), relative to baseline's (`step_cost`), and the same with the warm
    start's training seconds added to the method's own (`step_cost_with_warm_start`): MRT and SCST
    fine-tune the same seed's baseline run, so that run's training is part of what they cost. None
    where not recorded."""
    clock = cost_clock(grid.finished)
    runs = {m: [run_cost(grid, r, clock) for r in grid.finished if r["method"] == m] for m in grid.labels}

    def per_step(rs, with_warm):
        if not rs or any(r["train_seconds"] is None or not r["steps"] for r in rs):
            return None
        if with_warm and any(r["warm_start_seconds"] is None for r in rs):
            return None
        seconds = sum(r["train_seconds"] + (r["warm_start_seconds"] if with_warm else 0.0) for r in rs)
        return seconds / sum(r["steps"] for r in rs)

    def mean(rs, key):
        return sum(r[key] for r in rs) / len(rs) if rs and all(r[key] is not None for r in rs) else None

    base = per_step(runs.get(BASELINE, []), False)
    out = {}
    for m, rs in runs.items():
        own, total = per_step(rs, False), per_step(rs, True)
        out[m] = {"runs": rs, "train_seconds": mean(rs, "train_seconds"), "steps": mean(rs, "steps"),
                  "warm_start_seconds": mean(rs, "warm_start_seconds"),
                  "step_cost": own / base if own is not None and base else None,
                  "step_cost_with_warm_start": total / base if total is not None and base else None}
    return clock, out


# ----------------------------------------------------------------------------- diagnostics


def diagnostics(grid: Grid) -> tuple[dict | None, object]:
    """diagnose.aggregate over the finished runs that hold a diagnostics.json (those `exposure
    diagnose` measured; `exposure keep` keeps the file), and the options they were measured with;
    (None, None) when no run has one."""
    from .. import diagnose as dg

    paths = [p for r in grid.finished
             if (p := rundir.kept(rundir.run_path(grid.dir, r["method"], r["seed"]), rundir.DIAGNOSTICS)).is_file()]
    if not paths:
        return None, None
    results = [dg.read_run_record(p, grid.labels) for p in paths]
    opts = dg.options_from_record(results[0].record["options"])
    for p, r in zip(paths, results):
        if dg.options_from_record(r.record["options"]) != opts:
            raise UserError(f"{p}: measured with other options than {paths[0]} ({r.record['options']} vs "
                            f"{results[0].record['options']}); run `exposure diagnose` on the whole grid again")
    return dg.aggregate(results, opts, BASELINE), opts


def diagnostic_columns(opts, beams: list[int]) -> list[tuple[Col, str, str, bool]]:
    """(column, diagnostic, statistic, is a difference to baseline) of the leaderboard's diagnostics:
    sensitivity to its own (model-made) errors and its difference to baseline, search errors per
    beam, beam curse per beam > 1."""
    measured = [b for b in beams if opts is None or b in opts.beams]
    cols = [(Col("sensitivity", "sensitivity to own errors", "interval", DIAG), "robustness", "model_sensitivity",
             False),
            (Col("d_sensitivity", "Δ sensitivity", "delta", DIAG), "robustness", "model_sensitivity", True)]
    cols += [(Col(f"search_b{b}", f"search err % b{b}", "interval", DIAG), "search", f"b{b}_search", False)
             for b in measured]
    cols += [(Col(f"curse_b{b}", f"curse % b{b}", "interval", DIAG), "beam_curse", f"b{b}_curse", False)
             for b in measured if b > 1]
    return cols


# ------------------------------------------------------------------------------- the board


def build(grid: Grid, wall_seconds: float | None = None) -> dict:
    """The leaderboard as one JSON-ready document: per method its differences to baseline, rank
    ranges, cost and diagnostics, rows ordered by the ΔRouge-L estimate at the first beam; every
    pair's separation; the grid's seeds and time."""
    beams = list(grid.spec.decode.beams)
    rows = {r["method"]: {} for r in grid.summary["rows"]}
    for r in grid.summary["rows"]:
        rows[r["method"]][r["beam"]] = r
    labels = grid.labels
    pairs = [p for metric in METRICS for beam in beams for a, b in combinations(labels, 2)
             if (p := separation(grid.per_example, a, b, beam, metric)) is not None]
    ranks = {(metric, beam): rank_ranges([m for m in labels if rows[m].get(beam, {}).get(metric) is not None],
                                         [p for p in pairs if p["metric"] == metric and p["beam"] == beam])
             for metric in METRICS for beam in beams}
    clock, cost = costs(grid)
    agg, opts = diagnostics(grid)
    methods = []
    for m in labels:
        seeds = sorted(r["seed"] for r in grid.finished if r["method"] == m)
        entry = {"method": m, "seeds": seeds, "failed_seeds": sorted(r["seed"] for r in grid.results
                                                                     if r["method"] == m and "failed" in r),
                 "vs_baseline": {metric: {str(b): _delta(rows[m].get(b, {}), metric) for b in beams}
                                 for metric in METRICS},
                 "scores": {metric: {str(b): rows[m].get(b, {}).get(metric) for b in beams} for metric in METRICS},
                 "ranks": {metric: {str(b): list(ranks[(metric, b)][m]) if m in ranks[(metric, b)] else None
                                    for b in beams} for metric in METRICS},
                 "cost": cost[m],
                 "diagnostics": _diagnostics_entry(agg, opts, m, beams)}
        methods.append(entry)
    first = beams[0]
    methods.sort(key=lambda e: -_order_key(e, first))
    seeds = sorted({r["seed"] for r in grid.results})
    run_seconds = sum(report.run_seconds(r) for r in grid.finished)
    return {"name": grid.spec.name, "source": str(grid.dir), "seeds": seeds, "beams": beams,
            "test_examples": _n_examples(grid), "order": f"ΔRouge-L estimate at beam {first}, highest first",
            "runs": len(grid.finished), "failed_runs": len(grid.results) - len(grid.finished),
            "wall_seconds": wall_seconds, "run_seconds": round(run_seconds, 2), "cost_clock": clock, "methods": methods,
            "pairs": pairs, "diagnostics_options": None if opts is None else agg["options"]}


def _delta(row: dict, metric: str) -> dict | None:
    d = row.get("vs_baseline", {}).get(metric)
    return None if d is None else {k: d[k] for k in ("diff", "lo", "hi", "significant", "example_only", "mde")}


def _order_key(entry: dict, beam: int) -> float:
    """The ΔRouge-L estimate at `beam`; baseline is 0; a method without one goes last."""
    if entry["method"] == BASELINE:
        return 0.0
    d = entry["vs_baseline"]["rouge_l"][str(beam)]
    return -math.inf if d is None else d["diff"]


def _n_examples(grid: Grid) -> int | None:
    first = next(iter(grid.per_example.values()), None)
    return None if first is None else len(first["rouge_l"])


def _diagnostics_entry(agg: dict | None, opts, method: str, beams: list[int]) -> dict | str:
    """The method's leaderboard diagnostics from the aggregate, or NOT_MEASURED."""
    if agg is None or method not in agg["methods"]:
        return NOT_MEASURED
    v = agg["methods"][method]
    out = {"seeds": v["seeds"]}
    for col, d, stat, is_delta in diagnostic_columns(opts, beams):
        src = v["vs_baseline"] if is_delta else v["values"]
        out[col.key] = src.get(d, {}).get(stat)
    return out


# ------------------------------------------------------------------------------ the outputs


DELTA_NOTE = ("Rows in the order of the ΔRouge-L estimate at beam 1, highest first (baseline at 0); the order "
              "alone claims no rank (the next table does). Each cell: the method minus baseline at that beam, ×100, "
              "paired seed by seed, with its 95% interval from the seeds × test-examples variance components "
              "(seed-to-seed spread and the test set's sampling both counted; docs/statistics.md), exactly as the "
              "experiment's table.md; * the interval excludes 0 (the method is separated from baseline); † one "
              "seed: the test examples only, never *.")
RANK_NOTE = ("The ranks each method can claim (1 = highest score; baseline included): from 1 + the methods "
             "separated above it to N − the methods separated below it, a single number only when it is "
             "separated from every other. Two methods are *separated* when the 95% interval of their paired "
             "difference (seed s against seed s over the seeds both have, seeds × test examples counted, the "
             "function of the Δ columns) excludes 0 on more than one seed; each pair is tested at 95% with no "
             "correction for the number of pairs. Every pair's difference and interval is in the JSON (`pairs`).")
COST_NOTE = ("Training seconds per optimizer step relative to baseline's: metrics.json's {key} (training "
             "only: no dev or test decoding) over the last step train.jsonl logged, pooled over the method's seeds. "
             "MRT and SCST fine-tune the same seed's baseline run (a warm start): *incl. warm start* adds that "
             "run's training seconds (metrics.json's warm_start record) to the method's own, per step of its own "
             "training, so it counts everything it took to get the model; for the other methods the two are equal. "
             "{clock} `exposure bench train` is the controlled measure of a step.")
CLOCK_NOTE = {"cpu": "CPU seconds of each run's process: time the run was stopped or waited for a core is not counted, "
                     "but runs sharing the machine (--jobs) still slow each other's caches and memory, so this is "
                     "what the grid cost, not a clean measure;",
              "wall": "Wall-clock seconds of runs sharing the machine (--jobs; some runs finished before CPU seconds "
                      "were recorded): what this grid cost, noisy (the seeds of one method can differ 2×, and a run's "
                      "seconds include any time its process was stopped, docs/methods.md);"}


DIAG_NOTE = ("From `exposure diagnose` (docs/diagnostics.md): the mean over the method's measured seeds with its 95% "
             "interval. Sensitivity to own errors: accuracy points lost per injected model-made error (the slope of "
             "the robustness drop over k); Δ: minus baseline's, paired by seed (* excludes 0). Search err %: "
             "examples whose reference outscores the beam-k output (the rest of the non-exact outputs are model "
             "errors). Curse %: beam-k outputs that outscore the greedy one yet have a lower Rouge-L. "
             f"{NOT_MEASURED}: no diagnostics.json in the method's runs.")


def matrix(board: dict) -> Matrix:
    """The leaderboard's table: one row per method, four column groups (Δ, ranks, cost, diagnostics)."""
    beams = board["beams"]
    cols = [Col("method", "method"), Col("seeds", "seeds")]
    cols += [Col(f"d_{m}_b{b}", f"Δ {HEADERS[m]} b{b}", "delta", DELTA) for m in METRICS for b in beams]
    cols += [Col(f"rank_{m}_b{b}", f"{HEADERS[m]} b{b}", "text", RANK) for m in METRICS for b in beams]
    cols += [Col("step_cost", "step cost", "number", COST),
             Col("step_cost_with_warm_start", "step cost incl. warm start", "number", COST),
             Col("steps", "steps / run", "int", COST), Col("train_seconds", "train s / run", "number", COST),
             Col("warm_start_seconds", "warm start s / run", "number", COST)]
    opts = board["diagnostics_options"]
    from ..diagnose import options_from_record

    diag_cols = diagnostic_columns(options_from_record(opts) if opts else None, beams)
    cols += [c for c, *_ in diag_cols]
    rows = []
    for e in board["methods"]:
        row = {"method": e["method"], "seeds": ", ".join(map(str, e["seeds"])) or "failed"}
        for m in METRICS:
            for b in beams:
                d = e["vs_baseline"][m][str(b)]
                row[f"d_{m}_b{b}"] = ("0 (reference)" if e["method"] == BASELINE else
                                      d if d is not None else "failed" if e["scores"][m][str(b)] is None else "")
                r = e["ranks"][m][str(b)]
                row[f"rank_{m}_b{b}"] = _rank_text(r) if r else "failed"
        c = e["cost"]
        for k in ("step_cost", "step_cost_with_warm_start", "steps", "train_seconds"):
            row[k] = NOT_RECORDED if c[k] is None else c[k]
        if c["steps"] is not None:
            row["steps"] = f"{c['steps']:g}"  # the seeds' mean: whole when they logged alike
        row["warm_start_seconds"] = (NOT_RECORDED if c["warm_start_seconds"] is None else
                                     "–" if c["warm_start_seconds"] == 0 else c["warm_start_seconds"])
        for col, _, _, is_delta in diag_cols:
            v = e["diagnostics"]
            if v == NOT_MEASURED:
                row[col.key] = NOT_MEASURED
            else:
                row[col.key] = "0 (reference)" if is_delta and e["method"] == BASELINE else v.get(col.key) or ""
        rows.append(row)
    notes = {DELTA: DELTA_NOTE.replace("beam 1", f"beam {beams[0]}"), RANK: RANK_NOTE,
             COST: COST_NOTE.format(key=CLOCKS[board["cost_clock"]], clock=CLOCK_NOTE[board["cost_clock"]]),
             DIAG: DIAG_NOTE}
    return Matrix(f"{board['name']}: the leaderboard", cols, rows, notes)


def grid_text(board: dict) -> str:
    """The grid's facts under the tables: seeds, runs, test examples, time."""
    wall = (f"{_hours(board['wall_seconds'])} (every `exposure run` invocation on the grid, stopped time not "
            "counted; runs copied with --reuse cost none of it)"
            if board["wall_seconds"] is not None else "not recorded (no wall.json; --wall-seconds)")
    return (f"Grid: `{board['name']}` from `{board['source']}`, seeds {', '.join(map(str, board['seeds']))}, beams "
            f"{', '.join(map(str, board['beams']))}, {board['test_examples']} test examples; {board['runs']} finished "
            f"runs, {board['failed_runs']} failed. Wall time of the grid: {wall}. Σ run seconds (training, dev and "
            f"test decoding of every run, the grid one run at a time): {_hours(board['run_seconds'])}.\n")


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h ({seconds:.0f} s)"


def figure(board: dict):
    """Top, one panel per metric: each method's difference to baseline against beam size, with its
    95% interval bars; the zero line is baseline. Bottom: each method's training cost per step
    relative to baseline (the warm start's share hatched), and its sensitivity to its own errors
    minus baseline's, with its interval. A method keeps its colour in every panel."""
    fig = new_figure(12, 9)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.1, 1])
    axes = top.subplots(1, len(METRICS), sharex=True)
    others = [e for e in board["methods"] if e["method"] != BASELINE]
    colour = {e["method"]: f"C{i % 10}" for i, e in enumerate(others)}
    for ax, m in zip(axes, METRICS):
        for i, e in enumerate(others):
            points = [(b, d) for b in board["beams"] if (d := e["vs_baseline"][m][str(b)]) is not None]
            if not points:
                continue
            shift = (i - (len(others) - 1) / 2) * 0.05  # keeps overlapping bars apart
            ax.errorbar([b + shift for b, _ in points], [d["diff"] for _, d in points],
                        yerr=[[d["diff"] - d["lo"] for _, d in points], [d["hi"] - d["diff"] for _, d in points]],
                        marker="o", capsize=3, color=colour[e["method"]], label=e["method"])
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(board["beams"])
        ax.set(xlabel="beam size", title=f"Δ {HEADERS[m]} vs baseline (×100)")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # table order
    top.suptitle(f"{board['name']}: difference to baseline at the same beam")
    top.supxlabel("mean over seeds, paired by seed, with its 95% interval (seeds and test examples counted; "
                  "docs/statistics.md); legend in the table's order", fontsize="x-small")
    cost_ax, sens_ax = bottom.subplots(1, 2)
    _cost_panel(cost_ax, board, colour)
    _sensitivity_panel(sens_ax, board, colour)
    return fig


def _method_rows(ax, board: dict) -> list[tuple[int, dict]]:
    """A horizontal panel's rows: the table's methods top down, labelled; (y, entry) pairs."""
    entries = board["methods"][::-1]
    ax.set_yticks(range(len(entries)), [e["method"] for e in entries], fontsize="small")
    ax.set_ylim(-0.5, len(entries) - 0.5)
    return list(enumerate(entries))


def _cost_panel(ax, board: dict, colour: dict) -> None:
    for y, e in _method_rows(ax, board):
        own, total = e["cost"]["step_cost"], e["cost"]["step_cost_with_warm_start"]
        if own is None:
            continue
        c = colour.get(e["method"], "black")  # baseline: black, apart from every method's colour
        ax.barh(y, own, color=c)
        if total is not None and total > own:
            ax.barh(y, total - own, left=own, color=c, alpha=0.35, hatch="//")
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set(xlabel=f"this grid's seconds per step / baseline's ({board['cost_clock']} clock)\n"
                  "`exposure bench train` is the controlled measure",
           title="training cost per step (hatched: the warm start)")
    ax.grid(alpha=0.3, axis="x")


def _sensitivity_panel(ax, board: dict, colour: dict) -> None:
    for y, e in _method_rows(ax, board):
        d = e["diagnostics"]
        d = d.get("d_sensitivity") if isinstance(d, dict) else None
        if e["method"] == BASELINE or d is None:
            continue
        ax.errorbar([d["diff"]], [y], xerr=[[d["diff"] - d["lo"]], [d["hi"] - d["diff"]]], marker="o", capsize=3,
                    color=colour[e["method"]])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set(xlabel="Δ points lost per own error vs baseline (lower: less sensitive)",
           title="sensitivity to its own errors (exposure diagnose)")
    ax.grid(alpha=0.3, axis="x")


def write(board: dict, out_dir: Path, name: str) -> list[Path]:
    """<name>.md, <name>.json and <name>.png in out_dir (each written atomically)."""
    text = markdown(matrix(board)) + "\n" + grid_text(board) + f"\n![{name}.png]({name}.png)\n"
    return [fileio.write_text(out_dir / f"{name}.md", text), fileio.write_json(out_dir / f"{name}.json", board),
            save_png(figure(board), out_dir / f"{name}.png")]
