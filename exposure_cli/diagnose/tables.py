"""The comparison's tables (per method; per method and beam) and OUT/diagnostics.{json,md}.
"""

from __future__ import annotations

from pathlib import Path

from .. import fileio
from ..report.tables import Col, Matrix, markdown
from ..runner import rundir
from .aggregation import INTERVAL_NOTE
from .base import Diagnostic, Options, diagnostics
from .plots import write_plots


def matrices(agg: dict, opts: Options) -> list[Matrix]:
    """Two tables: per method (teacher forced, robustness) and per method × beam (search, curse)."""
    diags = diagnostics(opts)
    per_method, per_beam = _table_cols(diags, per_beam=False), _table_cols(diags, per_beam=True)
    rows_m, rows_b = [], []
    for m, v in agg["methods"].items():
        rows_m.append({"method": m, "seeds": len(v["seeds"]), **_cells(v, per_method, None)})
        for b in opts.beams:
            rows_b.append({"method": m, "beam": b, **_cells(v, per_beam, b)})
    keys_m = [Col("method", "method"), Col("seeds", "seeds", "int")]
    keys_b = [Col("method", "method"), Col("beam", "beam", "int")]
    # The markdown writer prints a group's note above its table: the note opens with the group's name.
    notes = {c.group or d.title: f"**{c.group or d.title}**: {d.note_for(c.group or d.title)}"
             for d in diags for c in d.columns()}
    notes[DELTA_GROUP] = f"**{DELTA_GROUP}**: {DELTA_NOTE}"
    title = f"exposure-bias diagnostics, {agg['split']} split ({agg['n_examples']} examples)"
    return [Matrix(f"{title}: per method", keys_m + [c for c, _ in per_method], rows_m, notes),
            Matrix(f"{title}: per method and beam", keys_b + [c for c, _ in per_beam], rows_b, notes)]


DELTA_GROUP = "difference to baseline"

DELTA_NOTE = ("Method minus baseline, seed s against seed s over the seeds both have, with its 95% interval from "
              "the seeds × test-examples variance components (below); * marks an interval that excludes 0; † one "
              "seed: the interval counts the test examples only and earns no *.")


def _table_cols(diags: list[Diagnostic], per_beam: bool) -> list[tuple[Col, tuple[str, str, bool]]]:
    cols, deltas = [], []
    for d in diags:
        for c in d.columns():
            if ("{beam}" in c.stat) != per_beam:
                continue
            cols.append((Col(f"{d.name}.{c.stat}", c.header, c.kind, c.group or d.title), (d.name, c.stat, False)))
            if c.vs_baseline:
                header = f"Δ {c.stat.split('_')[0]} {c.header}" if c.group else f"Δ {c.header}"
                deltas.append((Col(f"d.{d.name}.{c.stat}", header, "delta", DELTA_GROUP),
                               (d.name, c.stat, True)))
    return cols + deltas


def _cells(v: dict, cols, beam: int | None) -> dict:
    row = {}
    for col, (d, stat, delta) in cols:
        key = stat.format(beam=beam) if beam is not None else stat
        src = v["vs_baseline"] if delta else v["values"]
        row[col.key] = src.get(d, {}).get(key)
    return row


def write_report(out_dir: Path, agg: dict, opts: Options) -> list[Matrix]:
    """OUT/diagnostics.json, diagnostics.md and the PNG plots; returns the tables."""
    mxs = matrices(agg, opts)
    fileio.write_json(out_dir / rundir.DIAGNOSTICS, agg)
    plots = write_plots(out_dir, agg, opts)
    text = "\n".join(markdown(mx) for mx in mxs)
    text += "\n" + INTERVAL_NOTE + "\n\n" + "".join(f"![{p}]({p})\n\n" for p in plots)
    fileio.write_text(out_dir / "diagnostics.md", text)
    return mxs
