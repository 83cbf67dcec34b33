"""Tables of a summary (and of diagnostics): a value matrix and the writers that format it.

As lm-evaluation-harness's `make_table`: the value matrix (`Matrix`: typed columns, rows of raw
values) is built once from a summary, and each writer only formats it (markdown, CSV, LaTeX, JSON,
rich). Markdown and LaTeX write one table per column group (scores, then differences to baseline),
repeating the key columns.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.table import Table

from .. import fileio
from ..runner import rundir
from . import paper
from .summary import HEADERS, METRICS, SECONDS, WORD_METRICS

WORD_GROUP = "word-level Rouge (jieba)"
INTERVAL_NOTE = ("95% interval from the seeds × test-examples variance components (seed-to-seed spread and the "
                 "test set's sampling both counted, seeds paired; docs/statistics.md)")
DELTA_NOTE = ("Difference to baseline at the same beam, ×100, paired seed by seed, with its " + INTERVAL_NOTE
              + "; * marks an interval that excludes 0; † one seed: the interval counts the test examples only "
              "(no seed spread can be estimated) and earns no *. `exposure power` gives each difference's "
              "minimum detectable effect and the seeds a given effect needs.")
WORD_NOTE = ("Word-level Rouge (jieba): rouge-score's F over jieba words of the lower-cased texts, ×100, mean ± std "
             "over seeds; an extra for comparison with word-level papers. The character-level scores are the study's.")


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
    meta: dict = field(default_factory=dict)  # extra data the JSON writer keeps (e.g. published anchors)

    def groups(self) -> list[str]:
        return list(dict.fromkeys(c.group for c in self.cols if c.group))

    def sections(self):
        """(group, columns, rows) for each column group that has a value: the key columns then the
        group's, and the rows with a value in the group. Every sectioned writer lays tables out so."""
        keys = [c for c in self.cols if not c.group]
        for group in self.groups():
            cols = keys + [c for c in self.cols if c.group == group]
            rows = [r for r in self.rows if any(r.get(c.key) is not None for c in cols if c.group)]
            if rows:
                yield group, cols, rows


def summary_matrix(summary: dict) -> Matrix:
    """The experiment table: scores (mean ± std over seeds) and differences to baseline."""
    cols = [Col("method", "method"), Col("beam", "beam", "int")]
    cols += [Col(m, HEADERS[m], "score", "scores") for m in METRICS] + [Col("n_seeds", "seeds", "int", "scores")]
    words = [m for m in WORD_METRICS if any(m in r for r in summary["rows"])]
    cols += [Col(m, HEADERS[m], "score", WORD_GROUP) for m in words]
    has_delta = any("vs_baseline" in r for r in summary["rows"])
    if has_delta:
        cols += [Col(f"d_{m}", f"Δ {HEADERS[m]}", "delta", "deltas", m) for m in METRICS]
    rows = []
    for r in summary["rows"]:
        row = {"method": r["method"], "beam": r["beam"], "n_seeds": r["n_seeds"]}
        for m in words:
            row[m] = {"mean": r[m], "std": r.get(f"{m}_std", 0.0), "n": r["n_seeds"]} if m in r else None
        for m in METRICS:
            row[m] = "failed" if r.get(m) is None else {"mean": r[m], "std": r.get(f"{m}_std", 0.0), "n": r["n_seeds"]}
            if has_delta:
                row[f"d_{m}"] = r.get("vs_baseline", {}).get(m)
        rows.append(row)
    return Matrix(summary["name"], cols, rows, {"deltas": DELTA_NOTE, WORD_GROUP: WORD_NOTE})


PAPER_NOTE = ("Ours: test set, ×100, mean ± std over seeds; article: mean of its 2 runs. Δ: method minus baseline "
              "at the same beam; ours with its 95% interval from the seeds × test-examples variance components "
              "(* when it excludes 0; † one seed, test examples only). Signs agree: "
              "both Δ point the same way. A variant of a method (e.g. random_replace(pool=sequence)) is set beside "
              "the article's row for that method.")


def method_names(summary: dict) -> dict[str, str]:
    """Row label → registered method name: from the runs' records, else the label up to its "(",
    which is how Method.label() writes non-default parameters."""
    names = {r["method"]: r["method_name"] for r in summary.get("runs", []) if "method_name" in r}
    return {r["method"]: names.get(r["method"], r["method"].partition("(")[0]) for r in summary["rows"]}


def paper_matrix(summary: dict, name: str) -> Matrix:
    """Our table beside the article's: per metric a group of our cell, the article's, both Δ to
    baseline and whether their signs agree; a row per (method, beam) of ours, plus the article's
    rows that no method of ours maps to."""
    paper.check_paper(name)
    cols = [Col("method", "method"), Col("article_method", "article method"), Col("beam", "beam", "int")]
    for m in METRICS:
        h = HEADERS[m]
        cols += [Col(m, f"{h} ours", "score", h), Col(f"paper_{m}", f"{h} article", "number", h),
                 Col(f"d_{m}", f"Δ {h} ours", "delta", h), Col(f"paper_d_{m}", f"Δ {h} article", "signed", h),
                 Col(f"agree_{m}", "signs agree", "flag", h, f"signs_agree_{m}")]
    names = method_names(summary)
    rows, mapped = [], set()
    for r in summary["rows"]:
        rows.append(_paper_row(name, r["method"], names[r["method"]], r["beam"], r))
        mapped.add((names[r["method"]], r["beam"]))
    for method, beam in paper.TABLES[name]:
        if (method, beam) not in mapped:
            rows.append(_paper_row(name, "(not run)", method, beam, None))
    order = {b: i for i, b in enumerate(dict.fromkeys(r["beam"] for r in summary["rows"]))}
    rows.sort(key=lambda row: order.get(row["beam"], len(order) + row["beam"]))  # stable: beam-major
    anchors = paper.ANCHORS[name]
    others = "; ".join(f"{label} {' / '.join(f'{v:.2f}' for v in values)}" for label, values in anchors.items())
    if others:
        others = f" Also published on this task (Rouge-L / Rouge-1 / Rouge-2 / BLEU): {others}."
    notes = {HEADERS[METRICS[0]]: PAPER_NOTE + others}
    meta = {"paper": name, "paper_title": paper.TITLES[name],
            "anchors": {label: dict(zip(paper.PAPER_METRICS, v)) for label, v in anchors.items()}}
    return Matrix(f"{summary['name']} beside the article ({paper.TITLES[name]})", cols, rows, notes, meta)


def _paper_row(name: str, label: str, method: str, beam: int, ours: dict | None) -> dict:
    cell, delta = paper.article_cell(name, method, beam), paper.article_delta(name, method, beam)
    row = {"method": label, "article_method": paper.ARTICLE_METHODS.get(method, ""), "beam": beam}
    for m in METRICS:
        if ours is not None:
            row[m] = "failed" if ours.get(m) is None else {"mean": ours[m], "std": ours.get(f"{m}_std", 0.0),
                                                           "n": ours["n_seeds"]}
        ours_d = (ours or {}).get("vs_baseline", {}).get(m)
        row[f"d_{m}"] = ours_d
        row[f"paper_{m}"] = cell[m] if cell else None
        row[f"paper_d_{m}"] = delta[m] if delta else None
        row[f"agree_{m}"] = bool(np.sign(ours_d["diff"]) == np.sign(delta[m])) if ours_d and delta else None
    return row


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
        return f"{v['diff']:+.2f}{span}" + ("*" if v.get("significant") else "") + ("†" if v.get("example_only") else "")
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


def _md_cell(text: str) -> str:
    """A markdown table cell: a literal | would end the cell and split the column."""
    return text.replace("|", "\\|")


def markdown(mx: Matrix) -> str:
    lines = [f"# {mx.title}"]
    for group, cols, rows in mx.sections():
        if mx.notes.get(group):
            lines += ["", mx.notes[group]]
        lines += ["", "| " + " | ".join(_md_cell(c.header) for c in cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_md_cell(fmt(c, r.get(c.key))) for c in cols) + " |" for r in rows]
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
    out = [f"% {mx.title}"]
    for group, cols, rows in mx.sections():
        keys = [c for c in cols if not c.group]
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
        t.caption = ("Δ R-L: Rouge-L minus baseline's at the same beam; * its 95% interval (seeds and test "
                     "examples counted) excludes 0; † one seed. table.md has the interval of every metric.")
    for r in mx.rows:
        t.add_row(*(fmt(c, r.get(c.key), interval=c.key != delta_key) for c in shown))
    return t


def runs_matrix(summary: dict, seconds: list[dict] | None = None) -> Matrix:
    """Each run's own test scores at each beam, its selected epoch and, from its directory, its
    wall-clock seconds (training, dev decoding, test decoding): any single run can be checked later."""
    cols = [Col("method", "method"), Col("seed", "seed", "int"), Col("beam", "beam", "int")]
    cols += [Col(m, HEADERS[m], "number", "runs") for m in METRICS]
    cols += [Col("best_epoch", "best epoch", "int", "runs"), Col("dev_bleu", "dev BLEU", "number", "runs")]
    if seconds:
        cols += [Col(k, k.replace("_", " "), "number", "runs") for k in SECONDS]
    secs = {(s["method"], s["seed"]): s for s in seconds or []}
    rows = []
    for r in summary.get("runs", []):
        if "failed" in r:
            rows.append({"method": r["method"], "seed": r["seed"], "beam": None, "rouge_l": "failed"})
            continue
        for beam, scores in r["test"].items():
            row = {"method": r["method"], "seed": r["seed"], "beam": int(beam), "best_epoch": r.get("best_epoch"),
                   "dev_bleu": r.get("dev_bleu"), **{m: scores[m] for m in METRICS}}
            row.update({k: v for k, v in secs.get((r["method"], r["seed"]), {}).items() if k.endswith("_seconds")})
            rows.append(row)
    return Matrix(f"{summary['name']}: every run", cols, rows,
                  {"runs": "Each run's test scores ×100 at each beam, the epoch its dev BLEU selected, and its "
                           "wall-clock seconds on the machine that ran it."})


def json_text(mx: Matrix) -> str:
    """The matrix as JSON: its columns (key, header, kind, group) and rows of raw values."""
    cols = [{"key": c.key, "header": c.header, "kind": c.kind, "group": c.group} for c in mx.cols]
    doc = {"title": mx.title, **mx.meta, "notes": mx.notes, "columns": cols, "rows": mx.rows}
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


WRITERS = {"md": markdown, "csv": csv_text, "latex": latex, "json": json_text}


def write_tables(out_dir: Path, summary: dict) -> None:
    """table.md and table.csv beside summary.json."""
    mx = summary_matrix(summary)
    fileio.write_text(out_dir / rundir.TABLE_MD, markdown(mx))
    fileio.write_text(out_dir / rundir.TABLE_CSV, csv_text(mx))
