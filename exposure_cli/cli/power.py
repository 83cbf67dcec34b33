"""`exposure power`: how many seeds each difference to baseline needs to resolve a given effect, from
the seeds × test-examples variance components measured on an experiment's runs (exposure_cli.stats)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import UserError
from .app import app, console, err_console

UNREACHABLE = "unreachable on this test set"


def power_rows(summary: dict, effect: float, alpha: float, power: float) -> list[dict]:
    """Per metric, beam and method: the difference's current 95% half-width, its components (as
    standard deviations, ×100), the MDE at its seeds, the seeds the effect needs and the floor."""
    from .. import stats
    from ..report.summary import HEADERS, METRICS

    rows = []
    for m in METRICS:
        for r in summary["rows"]:
            d = r.get("vs_baseline", {}).get(m)
            if d is None:
                continue
            c = d.get("components")
            row = {"metric": HEADERS[m], "beam": r["beam"], "method": r["method"], "diff": d["diff"],
                   "half_width": (d["hi"] - d["lo"]) / 2}
            if not c or c.get("seed") is None:
                rows.append({**row, "seeds": c.get("seeds", 1) if c else None,
                             "note": "one seed: the seed component cannot be estimated; run 2 seeds or more"})
                continue
            comp = stats.Components.from_record(c)
            needed = stats.seeds_needed(comp, effect, alpha, power)
            fl = stats.floor(comp, alpha, power)
            rows.append({**row, "seeds": comp.seeds, "sd_seed": math.sqrt(comp.seed),
                         "sd_example": math.sqrt(comp.example), "sd_noise": math.sqrt(comp.noise),
                         "mde": stats.mde(comp, None, alpha, power), "seeds_needed": needed, "floor": fl,
                         "note": UNREACHABLE if fl >= effect else ("" if needed is not None else "over a million seeds")})
    return rows


def _tables(rows: list[dict], effect: float, alpha: float, power: float) -> list[Table]:
    """One table per metric: the widths a terminal holds."""
    out = []
    for metric in dict.fromkeys(r["metric"] for r in rows):
        t = Table(title=f"{metric}: seeds to resolve {effect:g} at {power:.0%} power, two-sided α = {alpha:g}")
        for h in ("beam", "method", "seeds", "Δ", "±95% now", "sd seed", "sd ex.", "sd noise", "MDE now",
                  f"seeds for {effect:g}", "floor"):
            t.add_column(h, justify="left" if h == "method" else "right", overflow="fold")
        for r in (r for r in rows if r["metric"] == metric):
            cells = [str(r["beam"]), r["method"], str(r.get("seeds") or ""), f"{r['diff']:+.2f}", _num(r["half_width"])]
            if "mde" not in r:
                t.add_row(*cells, "", "", "", "", "one seed: no seed part", "")
                continue
            need = r["seeds_needed"]
            t.add_row(*cells, *(_num(r[k]) for k in ("sd_seed", "sd_example", "sd_noise", "mde")),
                      str(need) if need is not None else (r["note"] or "-"), _num(r["floor"]))
        out.append(t)
    return out


def _num(v) -> str:
    return "" if v is None else f"{v:.2f}"


CAPTION = ("sd seed / ex. / noise: standard deviations (×100) of the seed effect, of the per-example effect shared "
           "by every seed and of the seed × example noise in the paired per-example differences. MDE now: the "
           "true difference the current seeds detect with that power. floor: the MDE no number of seeds goes "
           f"below on this test set; an effect at or under it is {UNREACHABLE}. Formulas: docs/statistics.md.")


@app.command()
def power(
    out_dir: str = typer.Argument(..., metavar="OUT_DIR", help="An output directory of `exposure run`, a directory "
                                  "of kept runs (`exposure keep`), or a summary.json written since the intervals "
                                  "carry variance components."),
    effect: float = typer.Option(0.5, "--effect", min=0, help="The difference to resolve, ×100 points (e.g. 0.5 "
                                 "Rouge-L)."),
    alpha: float = typer.Option(0.05, "--alpha", min=1e-6, max=0.5, help="Two-sided significance level."),
    power_: float = typer.Option(0.8, "--power", min=0.5, max=0.9999, help="Probability of resolving the effect."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the rows to this JSON file."),
):
    """How many seeds each difference to baseline needs to resolve an effect, and whether any can.

    For every metric, beam and method: the difference's current 95% half-width; the variance
    components measured on the runs (seed effect, per-example effect shared by every seed, seed ×
    example noise); the minimum detectable effect (MDE) at the current seeds; the seeds needed for
    --effect; and the floor no number of seeds removes (the shared-example part on this test set),
    with "unreachable on this test set" when the floor is at or above --effect. The MDE is
    (t_{1-α/2} + t_power) × standard error on Satterthwaite's degrees of freedom (docs/statistics.md).
    Reads no checkpoint: a directory's summary.json, or its runs' predictions."""
    from .. import fileio
    from .report import load_summary

    path = Path(out_dir)
    if not path.exists():
        raise UserError(f"{out_dir}: not found (expected an output directory of `exposure run`)")
    if path.is_dir() and not (path / "summary.json").exists() and not any(path.glob("*/seed*/spec.yaml")):
        raise UserError(f"{out_dir}: no summary.json and no run inside (expected <method>/seed<k>/ run directories)")
    summary = load_summary(out_dir)
    if not any("vs_baseline" in r for r in summary["rows"]):
        raise UserError(f"{out_dir}: no difference to baseline (the experiment needs a baseline and another method)")
    if not any("components" in d for r in summary["rows"] for d in r.get("vs_baseline", {}).values()):
        if path.is_dir() and any(path.glob("*/seed*/spec.yaml")):
            from ..runner.grid import rebuild_summary  # a summary.json written before the components: from the runs

            summary = rebuild_summary(path)
        else:
            raise UserError(f"{out_dir}: its differences carry no variance components (written before they "
                            "existed); give the output directory, whose runs' predictions they are measured on")
    rows = power_rows(summary, effect, alpha, power_)
    for t in _tables(rows, effect, alpha, power_):
        console.print(t)
    console.print(CAPTION, highlight=False)
    if json_out is not None:
        fileio.write_text(json_out, json.dumps({"effect": effect, "alpha": alpha, "power": power_, "rows": rows},
                                               ensure_ascii=False, indent=2) + "\n")
        err_console.print(f"wrote {json_out}", highlight=False)
