"""One run diagnosed: every registered measure's statistics, written to the run's diagnostics.json.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import fileio
from ..errors import UserError
from ..runner import rundir
from ..spec import method_label
from .base import Options, Ratio, diagnostics
from .runs import RunData
from .scoring import Context


@dataclass
class RunResult:
    method: str
    seed: int
    dir: Path
    ratios: dict[str, dict[str, Ratio]]  # diagnostic → statistic → per-example ratio
    values: dict[str, dict[str, float]]  # diagnostic → statistic → run-level value (derived ones too)
    record: dict = field(default_factory=dict)  # the run's diagnostics.json
    spec_methods: list[str] = field(default_factory=list)  # the spec's method labels, in its order


def _clean(x) -> float | None:
    """A JSON-safe number: NaN (a statistic with no example to average) becomes null."""
    x = float(x)
    return None if math.isnan(x) else round(x, 6)


def diagnose_run(run: RunData, opts: Options) -> RunResult:
    """Every registered diagnostic of one run; writes the run's diagnostics.json."""
    t0 = time.perf_counter()
    ctx = Context(run, opts)
    ratios, values = {}, {}
    for d in diagnostics(opts):
        ratios[d.name] = d.stats(ctx)
        v = {k: r.value for k, r in ratios[d.name].items()}
        values[d.name] = {**v, **d.derive(v)}
    seconds = time.perf_counter() - t0
    record = {"method": run.method, "seed": run.seed, "split": opts.split, "n_examples": ctx.n,
              "options": _options_record(opts),
              "values": {d: {k: _clean(x) for k, x in v.items()} for d, v in values.items()},
              "checks": {"decoder_score_max_abs_diff": _clean(ctx.score_check()),
                         "references_truncated": ctx.truncated},
              "seconds": round(seconds, 2), "eval_seconds": run.eval_seconds,
              "per_example": {d: {k: _per_example(r) for k, r in rs.items()} for d, rs in ratios.items()}}
    write_run_record(run.dir / rundir.DIAGNOSTICS, record)
    return RunResult(run.method, run.seed, run.dir, ratios, values, record,
                     [method_label(m) for m in run.spec.methods])


def recorded_result(run_dir: Path) -> RunResult:
    """A kept run's diagnostics as `diagnose_run` returned them, from its diagnostics.json alone (no
    checkpoint), with its spec's method order."""
    from ..decode.generate import load_run_spec

    methods = [method_label(m) for m in load_run_spec(run_dir)[0].methods] if (run_dir / rundir.SPEC).exists() else []
    return read_run_record(rundir.kept(run_dir, rundir.DIAGNOSTICS), methods)


def write_run_record(path: Path, record: dict) -> None:
    """JSON, indented except the per-example arrays (one line each: a tenth of the size)."""
    head = json.dumps({**record, "per_example": None}, ensure_ascii=False, indent=2)
    arrays = ",\n".join(f'    "{d}": ' + json.dumps(v, separators=(",", ":")) for d, v in record["per_example"].items())
    text = head.replace('"per_example": null', '"per_example": {\n' + arrays + "\n  }")
    fileio.write_text(path, text + "\n")


def _per_example(r: Ratio) -> dict:
    out = {"num": [round(float(x), 6) for x in r.num]}
    if not np.all(r.den == 1):
        out["den"] = [round(float(x), 6) for x in r.den]
    return out


def _options_record(opts: Options) -> dict:
    d = asdict(opts)
    d["beams"], d["errors"] = list(opts.beams), list(opts.errors)
    return d


def options_from_record(d: dict) -> Options:
    """The Options a run's diagnostics.json (or the comparison's) was measured with; keys that
    older versions wrote and this one no longer has (n_resamples) are left out."""
    o = {k: v for k, v in d.items() if k in Options.__dataclass_fields__}
    return Options(**{**o, "beams": tuple(o.get("beams", ())), "errors": tuple(o.get("errors", ()))})


def read_run_record(path: Path, spec_methods: list[str] | None = None) -> RunResult:
    """A run diagnosed earlier, back from the diagnostics.json `diagnose_run` wrote (its per-example
    ratios at the 6 digits kept), so that `aggregate` compares kept runs without their checkpoints."""
    rec = fileio.read_json(path, "diagnostics file")
    if not isinstance(rec, dict) or not {"method", "seed", "options", "values", "per_example"} <= rec.keys():
        raise UserError(f"{path}: expected a run's diagnostics.json (method, seed, options, values, per_example)")
    names = [d.name for d in diagnostics(options_from_record(rec["options"]))]
    missing = [n for n in names if n not in rec["per_example"] or n not in rec["values"]]
    if missing:
        raise UserError(f"{path}: per_example.{missing[0]}: missing (measured by an older `exposure diagnose`?)")
    try:
        ratios = {d: {k: Ratio(np.asarray(r["num"], dtype=np.float64),
                               np.asarray(r["den"], dtype=np.float64) if "den" in r else np.ones(len(r["num"])))
                      for k, r in rec["per_example"][d].items()} for d in names}
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: per_example: expected {{statistic: {{num: [...], den: [...]}}}}") from None
    values = {d: {k: math.nan if x is None else float(x) for k, x in rec["values"][d].items()} for d in names}
    return RunResult(str(rec["method"]), int(rec["seed"]), path.parent, ratios, values, rec, spec_methods or [])
