"""`exposure diagnose`: measure the exposure bias of every finished run of an experiment."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import UserError
from .app import DEVICE_HELP, app, console, err_console


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"{option} {text!r}: expected comma-separated integers, e.g. 1,2,3") from None


@app.command()
def diagnose(
    out_dir: Path = typer.Argument(..., help="An experiment's output directory (OUT/<method>/seed<N>/ runs)."),
    split: str = typer.Option("test", help="test (the outputs the run decoded, read from its files), or dev / "
                              "train (decoded now at --beams with the run's decode options, which takes longer)."),
    beams: str = typer.Option("1,2,3", help="Beam sizes to diagnose; on test each needs predictions.beam{k}.tsv "
                              "and hypotheses.beam{k}.jsonl (beam 1 is always read: the beam curse compares to it)."),
    errors: str = typer.Option("0,1,2,3", help="Numbers of injected errors k for the robustness measure."),
    seed: int = typer.Option(0, help="Seed of the injected positions and the random tokens."),
    window: str = typer.Option("next", help="Robustness after k errors is measured on the gold tokens after the "
                               "k-th error: up to the next injected position (next: one pass serves every k), or "
                               "to the end of the target (end: a pass per k, slower)."),
    limit: Optional[int] = typer.Option(None, help="Only the first N examples of the split."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Sequences per teacher-forced pass."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    threads: int = typer.Option(0, min=0, help="torch CPU threads; 0 = torch's default. On a busy shared machine "
                                "1 is steadier."),
    as_json: bool = typer.Option(False, "--json", help="Print OUT/diagnostics.json instead of the tables."),
    recorded: bool = typer.Option(False, "--recorded", help="Measure nothing: put side by side what each run's "
                                  "diagnostics.json recorded (kept runs without checkpoints, e.g. results/study-cpu; "
                                  "the measuring options are the records', which must agree)."),
):
    """Measure the bias itself, per run, and put the methods side by side.

    For every finished run under OUT_DIR: teacher-forced NLL and accuracy; accuracy and NLL after k
    injected errors (the model's own best wrong token, and a uniformly random one) against the clean
    prefix on the same tokens, and its slope over k (the sensitivity); search errors vs model errors
    per beam (does the reference score higher than the output); and the beam curse (beam-k outputs
    scoring higher than greedy's but with a lower Rouge-L). Writes diagnostics.json into each run
    and diagnostics.json, diagnostics.md and PNG plots into OUT_DIR. docs/diagnostics.md defines
    every number.
    """
    from .. import diagnose as dg
    from ..runtime import resolve_device, set_threads

    opts = dg.Options(split=split, beams=_int_list(beams, "--beams"), errors=_int_list(errors, "--errors"),
                      seed=seed, window=window, limit=limit, batch_size=batch_size)
    dg.check_options(opts)
    runs = dg.finished_runs(out_dir)
    if recorded:
        return _aggregate_recorded(out_dir, runs, as_json)
    dev = resolve_device(device)
    set_threads(threads)
    say = err_console if as_json else console
    results = []
    for run_dir in runs:
        t0 = time.perf_counter()
        res = dg.diagnose_run(dg.load_run_data(run_dir, opts, dev), opts)
        rec = res.record
        eval_s = f"; the run's test decoding took {rec['eval_seconds']:.1f} s" if rec.get("eval_seconds") is not None \
            else ""
        say.print(f"{res.method} seed {res.seed}: {rec['n_examples']} examples in {time.perf_counter() - t0:.1f} s "
                  f"(diagnostics {rec['seconds']:.1f} s{eval_s})", highlight=False)
        diff = rec["checks"]["decoder_score_max_abs_diff"]
        if diff is not None and diff > 1e-2:
            err_console.print(f"[yellow]warning:[/] {run_dir}: rescored outputs differ from the decoder's scores by "
                              f"up to {diff:.3g}", highlight=False)
        results.append(res)
    _report(out_dir, results, opts, as_json)


def _report(out_dir: Path, results: list, opts, as_json: bool) -> None:
    """The methods side by side: OUT_DIR/diagnostics.{json,md} and plots, printed as tables or JSON."""
    from .. import diagnose as dg

    agg = dg.aggregate(results, opts)
    mxs = dg.write_report(out_dir, agg, opts)
    if as_json:
        typer.echo(json.dumps(agg, ensure_ascii=False))
        return
    for mx in mxs:
        for table in _tables(mx):
            console.print(table)
    console.print(f"{out_dir / 'diagnostics.md'}: the tables with every note and interval, and the plots",
                  highlight=False)


def _aggregate_recorded(out_dir: Path, runs: list[Path], as_json: bool) -> None:
    from .. import diagnose as dg
    from ..runner.rundir import DIAGNOSTICS, kept

    missing = [str(r) for r in runs if not kept(r, DIAGNOSTICS).exists()]
    if missing:
        raise UserError(f"{missing[0]}: no {DIAGNOSTICS} ({len(missing)} run(s) without one); --recorded reads "
                        "what `exposure diagnose` or `exposure run --keep` measured")
    results = [dg.recorded_result(r) for r in runs]
    options = {json.dumps(r.record["options"], sort_keys=True) for r in results}
    if len(options) != 1:
        raise UserError(f"{out_dir}: the runs were diagnosed with different options ({len(options)} sets)")
    _report(out_dir, results, dg.options_from_record(results[0].record["options"]), as_json)


def _tables(mx) -> list[Table]:
    """One rich table per column group, as the markdown writer lays them out."""
    from ..report.tables import fmt

    out = []
    for group, cols, rows in mx.sections():
        t = Table(title=group, caption=mx.notes.get(group, "").removeprefix(f"**{group}**: "))
        for c in cols:
            t.add_column(c.header, justify="left" if c.kind == "text" else "right")
        for r in rows:
            t.add_row(*(fmt(c, r.get(c.key)) for c in cols))
        out.append(t)
    return out
