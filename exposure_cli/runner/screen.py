"""An ablation screen: does one difference between the proxy and the study change the methods' effects?

A reference experiment (the testbed) and one experiment per toggle, each the same spec with one
setting changed (`make screen-cpu`). For every method, beam and metric: its difference to baseline
in the reference, the same in the toggled experiment, and the **interaction** — how much the toggle
changes the method's effect — with its own 95% interval. The interaction pairs everything by seed
and test example: for seed s and example i,

    x[s, i] = (method − baseline)_toggle[s, i] − (method − baseline)_reference[s, i]

over the seeds both experiments ran, and stats.interval treats x as any seeds × examples array
(seed effect, shared example effect, noise). Seed s of the two experiments starts from the same
initialisation and data order only where the toggle does not change the model's shape; the
interval holds either way (pairing only removes variance when it is there).
"""

from __future__ import annotations

from pathlib import Path

from .. import stats
from ..errors import UserError
from ..report import summary as report
from ..report.leaderboard import BASELINE, Grid, load_grid
from ..report.summary import HEADERS, _seed_matrix
from ..report.tables import Col, Matrix

METRICS = ("rouge_l", "bleu")


def interaction(ref: Grid, tog: Grid, method: str, beam: int, metric: str) -> dict | None:
    """The toggle's change of `method`'s difference to baseline, over the seeds all four cells share."""
    seeds = sorted(set(report.paired_seeds(ref.per_example, method, BASELINE, beam))
                   & set(report.paired_seeds(tog.per_example, method, BASELINE, beam)))
    if not seeds:
        return None
    x_ref, x_tog = (_seed_matrix(g.per_example, method, beam, metric, seeds)
                    - _seed_matrix(g.per_example, BASELINE, beam, metric, seeds) for g in (ref, tog))
    if x_ref.shape != x_tog.shape:
        raise UserError(f"{tog.dir}: its test set has {x_tog.shape[1]} examples, the reference's {x_ref.shape[1]}")
    d = stats.difference(x_tog, x_ref)
    return {"diff": d["diff"], "lo": d["lo"], "hi": d["hi"], "significant": d["significant"],
            "example_only": d["example_only"], "seeds": seeds}


def screen(reference: Path, toggles: dict[str, Path]) -> dict:
    ref = load_grid(reference)
    rows = []
    for name, path in toggles.items():
        tog = load_grid(path)
        for method in [m for m in tog.labels if m != BASELINE and m in ref.labels]:
            for beam in tog.spec.decode.beams:
                row = {"toggle": name, "method": method, "beam": beam}
                for metric in METRICS:
                    row[f"ref_{metric}"] = report.paired_difference(ref.per_example, method, BASELINE, beam, metric)
                    row[f"tog_{metric}"] = report.paired_difference(tog.per_example, method, BASELINE, beam, metric)
                    row[f"int_{metric}"] = interaction(ref, tog, method, beam, metric)
                rows.append(row)
    if not rows:
        raise UserError("no method besides baseline in both the reference and a toggled experiment")
    return {"reference": str(reference), "toggles": {k: str(v) for k, v in toggles.items()}, "rows": rows}


def matrix(result: dict) -> Matrix:
    cols = [Col("toggle", "toggle"), Col("method", "method"), Col("beam", "beam", "int")]
    for metric in METRICS:
        h = HEADERS[metric]
        cols += [Col(f"ref_{metric}", f"Δ {h}, testbed", "delta", h), Col(f"tog_{metric}", f"Δ {h}, toggled", "delta", h),
                 Col(f"int_{metric}", "change by the toggle", "delta", h)]
    note = ("Δ: method minus baseline at the same beam, paired by seed, 95% interval (seeds × test examples); "
            "testbed: the reference experiment with all its seeds; change by the toggle: Δ toggled − Δ testbed "
            "over the seeds both ran, paired by seed and example, with its own interval; * excludes 0.")
    return Matrix("Ablation screen: which difference from the study changes the methods' effects", cols,
                  result["rows"], {HEADERS[m]: f"**{HEADERS[m]}**: {note}" for m in METRICS})
