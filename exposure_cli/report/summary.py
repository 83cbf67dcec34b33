"""Per-run metrics → the experiment's summary: the statistics of summary.json (mean ± std over
seeds, intervals, differences to baseline), reading and writing it, and the regression check of one
summary against another. Its tables are tables.py's.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np

from .. import fileio, stats
from ..decode.predictions import read_columns
from ..errors import UserError
from ..metrics import study_per_example
from ..runner import rundir
from ..spec import Spec, method_label

METRICS = ["rouge_l", "rouge_1", "rouge_2", "bleu"]  # the study's column order
# Extra columns beside the headline: rouge-score F over jieba words (metrics.word_scores), present
# in runs evaluated since they were added.
WORD_METRICS = ["word_rouge_l", "word_rouge_1", "word_rouge_2"]
# A run's wall-clock parts in metrics.json: training, dev selection, test decoding.
SECONDS = ("train_seconds", "dev_seconds", "eval_seconds")
HEADERS = {"rouge_l": "Rouge-L", "rouge_1": "Rouge-1", "rouge_2": "Rouge-2", "bleu": "BLEU",
           "word_rouge_l": "Rouge-L (words)", "word_rouge_1": "Rouge-1 (words)", "word_rouge_2": "Rouge-2 (words)"}


# ------------------------------------------------------------------------------ summary


def summarize_grid(spec: Spec, out_dir: Path, results: list[dict], per_example: dict | None = None) -> dict:
    """The grid's summary.json from its runs' results (metrics.json or a failure) and, for the
    intervals, the per-example scores of their predictions files (`per_example_scores`, read here
    unless the caller has them already)."""
    finished = [r for r in results if "failed" not in r]
    failed = failures(results)
    summary = summarize(spec.name, finished, [method_label(m) for m in spec.methods], spec.decode.beams, failed)
    if per_example is None:
        per_example = per_example_scores(out_dir, spec, finished)
    add_cell_intervals(summary, per_example)
    add_differences(summary, per_example)
    summary["runs"] = [run_record(r) for r in results]
    if failed:
        summary["failed"] = failed
    return summary


def failures(results: list[dict]) -> list[dict]:
    """The failed runs among a grid's results, as summary.json lists them."""
    return [{"method": r["method"], "seed": r["seed"], **r["failed"]} for r in results if "failed" in r]


def run_seconds(metrics: dict) -> float:
    """A run's wall-clock seconds (the SECONDS parts of its metrics.json; a part not recorded counts 0)."""
    return sum(float(v) for k in SECONDS if isinstance(v := metrics.get(k), (int, float)) and not isinstance(v, bool)
               and math.isfinite(v))


def outcome_line(result: dict) -> str:
    """How a run ended, in a few words: `failed (reason)`, or its epochs, best epoch and minutes."""
    if "failed" in result:
        return f"failed ({result['failed'].get('reason')})"
    return f"{result.get('epochs')} epochs, best {result.get('best_epoch')}, {run_seconds(result) / 60:.1f} min"


def per_example_scores(out_dir: Path, spec: Spec, finished: list[dict]) -> dict:
    """(method, beam, seed) → per-example study scores, recomputed from the predictions files."""
    scores = {}
    for r in finished:
        for beam in spec.decode.beams:
            path = rundir.kept(rundir.run_path(out_dir, r["method"], r["seed"]), rundir.predictions(beam))
            cols = read_columns(path)
            if cols is None:
                raise UserError(f"{path.parent}: {path.name} has no header")
            scores[(r["method"], beam, r["seed"])] = study_per_example(cols["prediction"], cols["reference"],
                                                                       spec.score.lowercase)
    return scores


def summarize(name: str, runs: list[dict], method_order: list[str], beams: list[int],
              failed: list[dict] | None = None) -> dict:
    """Mean and std over seeds of each (method, beam) cell; rows ordered beam-major like the study.
    A method whose every seed failed keeps its rows, with no scores and `failed` set."""
    failed = failed or []
    rows = []
    for beam in beams:
        for method in method_order:
            cells = [r["test"][str(beam)] for r in runs if r["method"] == method and str(beam) in r["test"]]
            n_failed = sum(1 for f in failed if f["method"] == method)
            if not cells and not n_failed:
                continue
            row = {"method": method, "beam": beam}
            for m in METRICS:
                vals = [c[m] for c in cells]
                row[m] = round(statistics.fmean(vals), 4) if vals else None
                row[f"{m}_std"] = round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0
            row.update(_word_means(cells))
            row["n_seeds"] = len(cells)
            if n_failed:
                row["failed"] = n_failed
            rows.append(row)
    return {"name": name, "rows": rows}


def _word_means(cells: list[dict]) -> dict:
    """Mean and std of the word-level Rouge columns, when every seed's cell has them (runs
    evaluated before they existed have not; a mixed cell would average different seeds)."""
    out = {}
    for m in WORD_METRICS:
        vals = [c[m] for c in cells if m in c]
        if vals and len(vals) == len(cells):
            out[m] = round(statistics.fmean(vals), 4)
            out[f"{m}_std"] = round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0
    return out


def run_record(result: dict) -> dict:
    """What summary.json keeps of one run: everything deterministic (no wall-clock seconds)."""
    if "failed" in result:
        return {"method": result["method"], "seed": result["seed"], "failed": result["failed"].get("reason", "")}
    keep = ("method", "method_name", "seed", "best_epoch", "dev_bleu", "epochs", "test")
    return {k: result[k] for k in keep if k in result}


def _seed_matrix(per_example: dict, method: str, beam: int, metric: str, seeds: list[int]) -> np.ndarray:
    """seeds × examples scores ×100 of one cell, rows in the order of `seeds`."""
    return np.stack([np.asarray(per_example[(method, beam, s)][metric], dtype=np.float64) for s in seeds]) * 100


def _rounded(d: dict, digits: int = 4) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, stats.Components):  # what `exposure power` plans from (variances, ×100² points)
            v = _rounded(v.record(), 6)
        elif isinstance(v, dict):
            v = _rounded(v, digits)
        elif isinstance(v, float):
            v = None if not math.isfinite(v) else round(v, digits)  # an infinite df: the normal quantile
        out[k] = v
    return out


def add_differences(summary: dict, per_example: dict, baseline: str = "baseline") -> dict:
    """Give each non-baseline row `vs_baseline`: per metric, the difference to the baseline at the
    same beam, ×100, over the seeds both have, paired seed by seed, with its 95% interval from the
    seeds × examples variance components (stats.difference: seeds and shared test examples both
    counted), `significant` when it excludes 0 (never on one seed), its minimum detectable effect
    at 80% power (`mde`) and the components.

    `per_example` maps (method, beam, seed) → {metric: per-example scores in [0, 1]}.
    """
    for row in summary["rows"]:
        if row["method"] == baseline:
            continue
        diffs = {m: paired_difference(per_example, row["method"], baseline, row["beam"], m) for m in METRICS}
        if diffs[METRICS[0]] is not None:
            row["vs_baseline"] = diffs
    return summary


def paired_seeds(per_example: dict, method: str, other: str, beam: int) -> list[int]:
    """The seeds both methods have at this beam, sorted: the rows a paired difference pairs."""
    return sorted(s for (m, b, s) in per_example if m == method and b == beam and (other, beam, s) in per_example)


def paired_difference(per_example: dict, method: str, other: str, beam: int, metric: str) -> dict | None:
    """`method` minus `other` at one beam, ×100, paired seed by seed over the seeds both have, with
    its 95% interval from the seeds × examples variance components (stats.difference) and
    `significant` when it excludes 0 on more than one seed; None without a seed in common or with
    one test example (no spread over examples to build an interval from). The difference to
    baseline of every table, and the leaderboard's comparison of any two methods."""
    seeds = paired_seeds(per_example, method, other, beam)
    if not seeds or len(per_example[(method, beam, seeds[0])][metric]) < 2:
        return None
    d = stats.difference(_seed_matrix(per_example, method, beam, metric, seeds),
                         _seed_matrix(per_example, other, beam, metric, seeds))
    return _rounded({k: d[k] for k in ("diff", "lo", "hi", "significant", "mde", "df", "example_only", "components")})


def add_cell_intervals(summary: dict, per_example: dict) -> dict:
    """Give each scored row `{metric}_ci: [lo, hi]`: the 95% interval of its mean, ×100, from the
    seeds × examples variance components (stats.interval: seed-to-seed spread and the test set's
    sampling both counted); with one seed the test examples alone, and `ci_example_only` is set.

    `per_example` maps (method, beam, seed) → {metric: per-example scores in [0, 1]}.
    """
    for row in summary["rows"]:
        seeds = sorted(s for (m, b, s) in per_example if m == row["method"] and b == row["beam"])
        if not seeds or row.get(METRICS[0]) is None or len(per_example[(row["method"], row["beam"], seeds[0])][METRICS[0]]) < 2:
            continue
        for m in METRICS:
            r = stats.interval(_seed_matrix(per_example, row["method"], row["beam"], m, seeds))
            row[f"{m}_ci"] = [round(r["lo"], 4), round(r["hi"], 4)]
        if len(seeds) == 1:
            row["ci_example_only"] = True
    return summary


def write_summary(out_dir: Path, summary: dict) -> None:
    """summary.json (its tables: `tables.write_tables`)."""
    fileio.write_json(out_dir / rundir.SUMMARY, summary)


def load_summary(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / rundir.SUMMARY
    if not path.is_file():
        raise UserError(f"{path}: not found (run `exposure run` first, or give a summary.json)")
    data = fileio.read_json(path, "summary")
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise UserError(f"{path}: expected an object with a 'rows' list (a summary.json)")
    for i, r in enumerate(data["rows"]):
        if not isinstance(r, dict):
            raise UserError(f"{path}: rows[{i}]: expected an object")
        missing = [k for k in ["method", "beam", *METRICS] if k not in r]
        if missing:
            raise UserError(f"{path}: rows[{i}]: missing key {missing[0]!r}")
        bad = [k for k in [*METRICS, *WORD_METRICS] if r.get(k) is not None and not isinstance(r[k], (int, float))]
        if bad or not isinstance(r["beam"], int):
            raise UserError(f"{path}: rows[{i}].{bad[0] if bad else 'beam'}: expected a number")
        bad = [f"{m}_ci" for m in METRICS if f"{m}_ci" in r and not _is_interval(r[f"{m}_ci"])]
        if bad:
            raise UserError(f"{path}: rows[{i}].{bad[0]}: expected [lo, hi], two numbers")
    return data


def _is_interval(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)


# ------------------------------------------------------------------------------ compare


def compare(current: dict, reference: dict, tol: float, delta_tol: float | None = None) -> list[str]:
    """Cells (mean ± tol) and differences to baseline (diff, interval ends ± delta_tol, and the
    significance mark) that drifted, or are missing or failed on either side; ×100 points."""
    delta_tol = tol if delta_tol is None else delta_tol

    def index(s):
        return {(r["method"], int(r["beam"])): r for r in s["rows"]}

    cur, ref = index(current), index(reference)
    problems = []
    for key in sorted(ref.keys() | cur.keys(), key=lambda k: (k[1], k[0])):
        method, beam = key
        where = f"{method} beam {beam}"
        if key not in cur:
            problems.append(f"{where}: missing from the run")
            continue
        if key not in ref:
            problems.append(f"{where}: not in the reference")
            continue
        c, r = cur[key], ref[key]
        for m in METRICS:
            if c[m] is None or r[m] is None:
                if (c[m] is None) != (r[m] is None):
                    problems.append(f"{where} {HEADERS[m]}: {'failed' if c[m] is None else c[m]} vs reference "
                                    f"{'failed' if r[m] is None else r[m]}")
                continue
            d = c[m] - r[m]
            if abs(d) > tol or math.isnan(d):
                problems.append(f"{where} {HEADERS[m]}: {c[m]:.2f} vs reference {r[m]:.2f} ({d:+.2f}, tolerance {tol})")
        problems += _compare_deltas(where, c.get("vs_baseline"), r.get("vs_baseline"), delta_tol)
    return problems


def _compare_deltas(where: str, cur: dict | None, ref: dict | None, tol: float) -> list[str]:
    if not cur and not ref:
        return []
    if not cur or not ref:
        return [f"{where}: difference to baseline {'missing from the run' if not cur else 'not in the reference'}"]
    problems = []
    for m in METRICS:
        c, r = cur.get(m), ref.get(m)
        if c is None or r is None:
            problems.append(f"{where} Δ {HEADERS[m]}: missing")
            continue
        for k in ("diff", "lo", "hi"):
            d = c[k] - r[k]
            if abs(d) > tol or math.isnan(d):
                problems.append(f"{where} Δ {HEADERS[m]} {k}: {c[k]:+.2f} vs reference {r[k]:+.2f} "
                                f"({d:+.2f}, tolerance {tol})")
        if bool(c["significant"]) != bool(r["significant"]):
            problems.append(f"{where} Δ {HEADERS[m]}: significance mark {'set' if c['significant'] else 'unset'}, "
                            f"reference {'set' if r['significant'] else 'unset'}")
    return problems
