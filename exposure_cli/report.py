"""Per-run metrics → the experiment's table: summary.json, table.md, table.csv, a rich table."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import numpy as np
from rich.table import Table

from . import fileio
from .errors import UserError

METRICS = ["rouge_l", "rouge_1", "rouge_2", "bleu"]  # the study's column order
HEADERS = {"rouge_l": "Rouge-L", "rouge_1": "Rouge-1", "rouge_2": "Rouge-2", "bleu": "BLEU"}


def summarize(name: str, runs: list[dict], method_order: list[str], beams: list[int]) -> dict:
    """Mean and std over seeds of each (method, beam) cell; rows ordered beam-major like the study."""
    rows = []
    for beam in beams:
        for method in method_order:
            cells = [r["test"][str(beam)] for r in runs if r["method"] == method and str(beam) in r["test"]]
            if not cells:
                continue
            row = {"method": method, "beam": beam}
            for m in METRICS:
                vals = [c[m] for c in cells]
                row[m] = round(statistics.fmean(vals), 4)
                row[f"{m}_std"] = round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0
            row["n_seeds"] = len(cells)
            rows.append(row)
    return {"name": name, "rows": rows}


def add_bootstrap(summary: dict, per_example: dict, baseline: str = "baseline", n_resamples: int = 1000,
                  seed: int = 0) -> dict:
    """Give each non-baseline row `vs_baseline`: per metric, the paired-bootstrap difference to the
    baseline at the same beam with its 95% interval, pooled over the seeds both have.

    `per_example` maps (method, beam, seed) → {metric: per-example scores in [0, 1]}.
    """
    from .metrics import paired_bootstrap

    for row in summary["rows"]:
        method, beam = row["method"], row["beam"]
        if method == baseline:
            continue
        seeds = sorted(s for (m, b, s) in per_example if m == method and b == beam
                       and (baseline, beam, s) in per_example)
        if not seeds:
            continue
        row["vs_baseline"] = {}
        for m in METRICS:
            a = np.concatenate([per_example[(baseline, beam, s)][m] for s in seeds])
            b = np.concatenate([per_example[(method, beam, s)][m] for s in seeds])
            r = paired_bootstrap(a, b, n_resamples=n_resamples, seed=seed)
            row["vs_baseline"][m] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
    return summary


def _delta(row: dict, m: str, interval: bool = True) -> str:
    d = row.get("vs_baseline", {}).get(m)
    if d is None:
        return ""
    span = f" [{d['lo']:+.2f}, {d['hi']:+.2f}]" if interval else ""
    return f"{d['diff']:+.2f}{span}" + ("*" if d["significant"] else "")


def _fmt(row: dict, m: str) -> str:
    s = f"{row[m]:.2f}"
    return s + (f" ± {row[m + '_std']:.2f}" if row.get("n_seeds", 1) > 1 else "")


def markdown(summary: dict) -> str:
    lines = [f"# {summary['name']}", "", "| method | beam | " + " | ".join(HEADERS[m] for m in METRICS) + " | seeds |",
             "|---|---|" + "---|" * len(METRICS) + "---|"]
    for r in summary["rows"]:
        lines.append(f"| {r['method']} | {r['beam']} | " + " | ".join(_fmt(r, m) for m in METRICS)
                     + f" | {r['n_seeds']} |")
    deltas = [r for r in summary["rows"] if "vs_baseline" in r]
    if deltas:
        lines += ["", "Difference to baseline at the same beam, ×100, with its 95% paired-bootstrap interval "
                  "(1,000 resamples of test examples, pooled over seeds); * marks an interval that excludes 0.", "",
                  "| method | beam | " + " | ".join(f"Δ {HEADERS[m]}" for m in METRICS) + " |",
                  "|---|---|" + "---|" * len(METRICS)]
        for r in deltas:
            lines.append(f"| {r['method']} | {r['beam']} | " + " | ".join(_delta(r, m) for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


def csv_text(summary: dict) -> str:
    buf = io.StringIO()
    cols = (["method", "beam"] + [c for m in METRICS for c in (m, f"{m}_std")] + ["n_seeds"]
            + [f"{m}_{k}" for m in METRICS for k in ("diff", "lo", "hi", "significant")])
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in summary["rows"]:
        flat = dict(r)
        for m, d in r.get("vs_baseline", {}).items():
            flat.update({f"{m}_{k}": v for k, v in d.items()})
        w.writerow(flat)
    return buf.getvalue()


def rich_table(summary: dict) -> Table:
    t = Table(title=f"{summary['name']} — test set, ×100, mean ± std over seeds")
    t.add_column("method", overflow="fold")
    t.add_column("beam", justify="right")
    for m in METRICS:
        t.add_column(HEADERS[m], justify="right")
    t.add_column("seeds", justify="right")
    has_delta = any("vs_baseline" in r for r in summary["rows"])
    if has_delta:
        t.add_column("Δ R-L", justify="right")
        t.caption = ("Δ R-L: Rouge-L minus baseline's at the same beam; * its 95% paired-bootstrap interval "
                     "excludes 0. table.md has the interval of every metric.")
    for r in summary["rows"]:
        cells = [r["method"], str(r["beam"]), *(_fmt(r, m) for m in METRICS), str(r["n_seeds"])]
        if has_delta:
            cells.append(_delta(r, "rouge_l", interval=False))
        t.add_row(*cells)
    return t


def write_summary(out_dir: Path, summary: dict) -> None:
    fileio.write_json(out_dir / "summary.json", summary)
    fileio.write_text(out_dir / "table.md", markdown(summary))
    fileio.write_text(out_dir / "table.csv", csv_text(summary))


def load_summary(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "summary.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found (run `exposure run` first, or give a summary.json)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise UserError(f"{path}: expected an object with a 'rows' list (a summary.json)")
    for i, r in enumerate(data["rows"]):
        missing = [k for k in ["method", "beam", *METRICS] if k not in r]
        if missing:
            raise UserError(f"{path}: rows[{i}]: missing key {missing[0]!r}")
    return data


def compare(current: dict, reference: dict, tol: float) -> list[str]:
    """Cells that drift more than `tol` (in ×100 points) or are missing on either side."""
    def index(s):
        return {(r["method"], int(r["beam"])): r for r in s["rows"]}

    cur, ref = index(current), index(reference)
    problems = []
    for key in sorted(ref.keys() | cur.keys(), key=lambda k: (k[1], k[0])):
        method, beam = key
        if key not in cur:
            problems.append(f"{method} beam {beam}: missing from the run")
            continue
        if key not in ref:
            problems.append(f"{method} beam {beam}: not in the reference")
            continue
        for m in METRICS:
            d = cur[key][m] - ref[key][m]
            if abs(d) > tol:
                problems.append(f"{method} beam {beam} {HEADERS[m]}: {cur[key][m]:.2f} vs reference "
                                f"{ref[key][m]:.2f} ({d:+.2f}, tolerance {tol})")
    return problems
