"""`exposure campaign`: a spec's grid in blocks of seeds until its differences are known to ±X."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from .app import DEVICE_HELP, app, console
from .experiment import _executor_options


@app.command()
def campaign(
    spec: str = typer.Argument(..., help="Experiment spec (YAML), as `exposure run` takes it; its first seed starts "
                               "the first block."),
    keep: Path = typer.Option(..., "--keep", help="Where each finished run's small outputs and diagnostics go, e.g. "
                              "results/study-cpu; the campaign resumes from here (also on another machine)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output directory of the runs (checkpoints); "
                                      "default runs/<spec name>."),
    half_width: float = typer.Option(0.5, "--half-width", min=0.0, help="Stop once every difference to baseline "
                                     "has a 95% half-width at most this (×100 points)."),
    metric: str = typer.Option("rouge_l", "--metric", help="rouge_1, rouge_2, rouge_l or bleu."),
    block: int = typer.Option(5, "--block", min=2, help="Seeds added at a time (the first block estimates the "
                              "variance components, so at least 2)."),
    budget_hours: float = typer.Option(40.0, "--budget-hours", min=0.0, help="No block starts once the kept runs "
                                       "have used this many CPU hours (wall seconds × torch threads)."),
    commit: bool = typer.Option(False, "--commit", help="git-commit each kept run and the campaign's state as they "
                                "are written (KEEP must be inside a git work tree)."),
    set_: list[str] = typer.Option([], "--set", help="Override a spec key (repeatable)."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    threads: int = typer.Option(0, min=0, help="torch CPU threads per run (as `exposure run`)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Runs at a time (the pool executor)."),
    status_only: bool = typer.Option(False, "--status", help="Print where the campaign stands (from KEEP alone: "
                                     "blocks done, CPU hours, the widths, the block under way) and run nothing."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Start over the runs that failed (diverged); "
                                      "without it a failed run stops the campaign (exit 1)."),
):
    """Run a spec in blocks of seeds until every difference to baseline is known to ±HALF_WIDTH.

    After each complete block, the campaign looks at the 95% half-widths of every method's
    difference to baseline (--metric, every beam) and nothing else: it stops when all are at most
    --half-width (reached), when some difference's floor — its half-width with unlimited seeds on this
    test set — is at least --half-width (unreachable), or when --budget-hours are spent (budget);
    otherwise it runs the next block. KEEP/campaign.json records each decision. Stop it at any time:
    rerun the same command (here, or elsewhere with KEEP) and it goes on from the kept runs."""
    from ..report.summary import METRICS
    from ..runner.campaign import Goal, describe, run_campaign
    from ..runtime import resolve_device
    from ..spec import load_spec

    if metric not in METRICS:
        raise UserError(f"--metric {metric}: expected one of {', '.join(METRICS)}")
    s = load_spec(spec, set_)
    goal = Goal(half_width, metric, block, budget_hours)
    if status_only:
        from ..runner.campaign import progress

        console.print(progress(s, goal, keep), highlight=False)
        return
    name, per_run_threads, options = _executor_options("auto", jobs, threads, None, None, 0.0)
    status = run_campaign(s, Path(out or f"runs/{s.name}"), keep, goal, resolve_device(device), console, name,
                          per_run_threads, commit, say=lambda text: console.print(text, highlight=False),
                          retry_failed=retry_failed, **options)
    if status.get("verdict") == "failed":
        console.print(describe(status, goal), highlight=False)
        raise typer.Exit(1)
