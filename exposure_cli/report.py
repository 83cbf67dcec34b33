"""Per-run metrics → the experiment's table: summary.json, and table.md / table.csv / LaTeX / rich.

As lm-evaluation-harness's `make_table`: the value matrix (`Matrix`: typed columns, rows of raw
values) is built once from a summary, and each writer only formats it. Markdown and LaTeX write
one table per column group (scores, then differences to baseline), repeating the key columns.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.table import Table

from . import fileio
from .errors import UserError

METRICS = ["rouge_l", "rouge_1", "rouge_2", "bleu"]  # the study's column order
HEADERS = {"rouge_l": "Rouge-L", "rouge_1": "Rouge-1", "rouge_2": "Rouge-2", "bleu": "BLEU"}
DELTA_NOTE = ("Difference to baseline at the same beam, ×100, with its 95% paired-bootstrap interval "
              "(1,000 resamples of test examples, pooled over seeds); * marks an interval that excludes 0.")


# ------------------------------------------------------------------------------ summary


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
            row["n_seeds"] = len(cells)
            if n_failed:
                row["failed"] = n_failed
            rows.append(row)
    return {"name": name, "rows": rows}


def run_record(result: dict) -> dict:
    """What summary.json keeps of one run: everything deterministic (no wall-clock seconds)."""
    if "failed" in result:
        return {"method": result["method"], "seed": result["seed"], "failed": result["failed"].get("reason", "")}
    keep = ("method", "seed", "best_epoch", "dev_bleu", "epochs", "test")
    return {k: result[k] for k in keep if k in result}


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


# ------------------------------------------------------------------------------- matrix


@dataclass
class Col:
    key: str  # the row field
    header: str
    kind: str = "text"  # text | int | score ({mean, std, n}) | interval ({mean, lo, hi}) | delta ({diff, lo, hi, significant}) | number | signed | flag
    group: str = ""  # "" for key columns (repeated in every group's table)
    name: str = ""  # base name of its CSV column(s); default the key

    @property
    def csv_name(self) -> str:
        return self.name or self.key


@dataclass
class Matrix:
    title: str
    cols: list[Col]
    rows: list[dict]
    notes: dict[str, str] = field(default_factory=dict)  # group → a sentence printed under its table

    def groups(self) -> list[str]:
        return list(dict.fromkeys(c.group for c in self.cols if c.group))


def summary_matrix(summary: dict) -> Matrix:
    """The experiment table: scores (mean ± std over seeds) and differences to baseline."""
    cols = [Col("method", "method"), Col("beam", "beam", "int")]
    cols += [Col(m, HEADERS[m], "score", "scores") for m in METRICS] + [Col("n_seeds", "seeds", "int", "scores")]
    has_delta = any("vs_baseline" in r for r in summary["rows"])
    if has_delta:
        cols += [Col(f"d_{m}", f"Δ {HEADERS[m]}", "delta", "deltas", m) for m in METRICS]
    rows = []
    for r in summary["rows"]:
        row = {"method": r["method"], "beam": r["beam"], "n_seeds": r["n_seeds"]}
        for m in METRICS:
            row[m] = "failed" if r.get(m) is None else {"mean": r[m], "std": r.get(f"{m}_std", 0.0), "n": r["n_seeds"]}
            if has_delta:
                row[f"d_{m}"] = r.get("vs_baseline", {}).get(m)
        rows.append(row)
    return Matrix(summary["name"], cols, rows, {"deltas": DELTA_NOTE})


def fmt(col: Col, v, interval: bool = True) -> str:
    """A cell as text (markdown, LaTeX, rich)."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if col.kind == "score":
        return f"{v['mean']:.2f}" + (f" ± {v['std']:.2f}" if v.get("n", 1) > 1 else "")
    if col.kind == "interval":
        if v.get("mean") is None:
            return ""
        span = f" [{v['lo']:.2f}, {v['hi']:.2f}]" if interval and v.get("lo") is not None else ""
        return f"{v['mean']:.2f}{span}"
    if col.kind == "delta":
        if v.get("diff") is None:
            return ""
        span = f" [{v['lo']:+.2f}, {v['hi']:+.2f}]" if interval and v.get("lo") is not None else ""
        return f"{v['diff']:+.2f}{span}" + ("*" if v.get("significant") else "")
    if col.kind == "number":
        return f"{v:.2f}"
    if col.kind == "signed":
        return f"{v:+.2f}"
    if col.kind == "flag":
        return "yes" if v else "no"
    return str(v)


def _flat(col: Col, v) -> dict:
    """A cell as CSV/JSON fields."""
    n = col.csv_name
    if col.kind == "score":
        return {n: v, f"{n}_std": ""} if not isinstance(v, dict) else {n: v["mean"], f"{n}_std": v["std"]}
    if col.kind == "interval":
        return {f"{n}{s}": (v or {}).get(k, "") for k, s in (("mean", ""), ("lo", "_lo"), ("hi", "_hi"))}
    if col.kind == "delta":
        keys = ("diff", "lo", "hi", "significant")
        return {f"{n}_{k}": (v or {}).get(k, "") for k in keys}
    return {n: "" if v is None else v}


def markdown(mx: Matrix) -> str:
    keys = [c for c in mx.cols if not c.group]
    lines = [f"# {mx.title}"]
    for group in mx.groups():
        cols = keys + [c for c in mx.cols if c.group == group]
        rows = [r for r in mx.rows if any(r.get(c.key) is not None for c in cols if c.group)]
        if not rows:
            continue
        if mx.notes.get(group):
            lines += ["", mx.notes[group]]
        lines += ["", "| " + " | ".join(c.header for c in cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(fmt(c, r.get(c.key)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_text(mx: Matrix) -> str:
    buf = io.StringIO()
    flat = [{k: v for c in mx.cols for k, v in _flat(c, r.get(c.key)).items()} for r in mx.rows]
    names = list(dict.fromkeys(k for c in mx.cols for k in _flat(c, None)))
    w = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    w.writeheader()
    w.writerows(flat)
    return buf.getvalue()


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_escape(s: str) -> str:
    s = "".join(_LATEX_ESCAPES.get(ch, ch) for ch in s)
    return s.replace("±", r"$\pm$").replace("Δ", r"$\Delta$")


def latex(mx: Matrix) -> str:
    """One booktabs tabular per column group, a row per matrix row."""
    keys = [c for c in mx.cols if not c.group]
    out = [f"% {mx.title}"]
    for group in mx.groups():
        cols = keys + [c for c in mx.cols if c.group == group]
        rows = [r for r in mx.rows if any(r.get(c.key) is not None for c in cols if c.group)]
        if not rows:
            continue
        if mx.notes.get(group):
            out.append(f"% {mx.notes[group]}")
        out += [r"\begin{tabular}{" + "l" * len(keys) + "r" * (len(cols) - len(keys)) + "}", r"\toprule",
                " & ".join(_latex_escape(c.header) for c in cols) + r" \\", r"\midrule"]
        out += [" & ".join(_latex_escape(fmt(c, r.get(c.key))) for c in cols) + r" \\" for r in rows]
        out += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(out)


def rich_table(mx: Matrix, delta_key: str = "d_rouge_l") -> Table:
    """The terminal view: every key and score column, and one difference column (Rouge-L's)."""
    groups = mx.groups()
    shown = [c for c in mx.cols if not c.group or c.group == groups[0] or c.key == delta_key]
    t = Table(title=f"{mx.title} — test set, ×100, mean ± std over seeds")
    for c in shown:
        t.add_column("Δ R-L" if c.key == delta_key else c.header, justify="left" if c.kind == "text" else "right",
                     overflow="fold" if c.kind == "text" else "ellipsis")
    if any(c.key == delta_key for c in shown):
        t.caption = ("Δ R-L: Rouge-L minus baseline's at the same beam; * its 95% paired-bootstrap interval "
                     "excludes 0. table.md has the interval of every metric.")
    for r in mx.rows:
        t.add_row(*(fmt(c, r.get(c.key), interval=c.key != delta_key) for c in shown))
    return t


WRITERS = {"md": markdown, "csv": csv_text, "latex": latex}


def write_summary(out_dir: Path, summary: dict) -> None:
    fileio.write_json(out_dir / "summary.json", summary)
    mx = summary_matrix(summary)
    fileio.write_text(out_dir / "table.md", markdown(mx))
    fileio.write_text(out_dir / "table.csv", csv_text(mx))


def load_summary(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "summary.json"
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
        bad = [k for k in METRICS if r[k] is not None and not isinstance(r[k], (int, float))]
        if bad or not isinstance(r["beam"], int):
            raise UserError(f"{path}: rows[{i}].{bad[0] if bad else 'beam'}: expected a number")
    return data


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
