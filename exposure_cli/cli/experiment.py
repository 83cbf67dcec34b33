"""`exposure run`: a spec's grid of runs, then its summary and tables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from .app import DEVICE_HELP, app, console, err_console


def _executor_options(executor: str, jobs: int, threads: int, address: Optional[str], cpus_per_run: Optional[int],
                      gpus_per_run: float) -> tuple[str, int, dict]:
    """(executor name, torch threads per run, the executor's options) from `run`'s flags."""
    if executor == "auto":
        executor = "pool" if jobs > 1 else "serial"
    if executor == "ray":
        cpus = cpus_per_run or threads or 1
        return "ray", threads or cpus, {"address": address, "cpus_per_run": cpus, "gpus_per_run": gpus_per_run}
    if address or cpus_per_run or gpus_per_run:
        raise UserError("--address, --cpus-per-run and --gpus-per-run: only with --executor ray")
    if executor == "pool":
        # Split the cores between the jobs unless told: two busy processes with torch's default
        # threads each slow each other several-fold.
        per = threads or max(1, (os.cpu_count() or 1) // jobs)
        return "pool", per, {"jobs": jobs}
    if jobs > 1:
        raise UserError(f"--jobs {jobs}: the {executor} executor runs one run at a time")
    return executor, threads, {}


@app.command()
def run(
    spec: str = typer.Argument(..., help="Experiment spec (YAML): a path, or a name looked up in ./experiments "
                               "and among the packaged specs, e.g. csl.yaml or paper/csl.yaml (`exposure ls`)."),
    out: str = typer.Option(None, "--out", "-o", help="Output directory; default runs/<spec name>. With "
                            "--executor ray on a cluster it must be a filesystem every node sees (NFS or similar)."),
    set_: list[str] = typer.Option([], "--set", help="Override a spec key, e.g. --set train.epochs=2 (repeatable)."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    threads: int = typer.Option(0, min=0, help="torch CPU threads per run; 0 = every core with one job, the cores "
                                "split between jobs with --jobs. On a machine shared with other busy processes, "
                                "1 is often several times faster."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Runs at a time, each in its own process (the pool "
                             "executor). Two 1-thread jobs train about 1.25x faster than one 2-thread job here."),
    executor: str = typer.Option("auto", help="serial (one run after another in this process), pool (--jobs "
                                 "processes), ray (one Ray task per run), or auto: pool with --jobs > 1, else serial."),
    address: Optional[str] = typer.Option(None, help="Ray only: the cluster to join (auto, or ray://HOST:PORT); "
                                          "default a local Ray instance for this machine."),
    cpus_per_run: Optional[int] = typer.Option(None, min=1, help="Ray only: CPUs a run reserves (also its torch "
                                               "threads); default --threads or 1."),
    gpus_per_run: float = typer.Option(0.0, min=0, help="Ray only: GPUs a run reserves, e.g. 1."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Start over the runs that failed (diverged) "
                                      "in an earlier invocation; without it they stay failed."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also write each run's training curves as "
                                     "TensorBoard event files in <run>/tensorboard/ (train.tensorboard: true; "
                                     "needs the tensorboard extra)."),
    keep: Optional[Path] = typer.Option(None, "--keep", help="As each run finishes, measure its diagnostics (while "
                                        "its checkpoint exists) and copy its small outputs to KEEP/<method>/seed<k>/ "
                                        "(`exposure keep`); runs already kept there are not run again, and the "
                                        "summary is KEEP's."),
    reuse: list[Path] = typer.Option([], "--reuse", metavar="DIR", help="Another experiment's output directory (with its "
                                     "checkpoints, so that a warm start can start from them) or kept directory "
                                     "(with --keep): each of its finished runs with the same data, model, training, "
                                     "decoding, method and seed as one of this grid's is copied instead of trained "
                                     "again (a run early stopping never stopped also stands for a later patience "
                                     "or none; repeatable; the first directory that has the run gives it)."),
    commit: bool = typer.Option(False, "--commit", help="With --keep: git-commit each run to the work tree KEEP "
                                "lies in as it is kept, and the runs --reuse copied there, so that a grid of many "
                                "hours stopped anywhere loses at most the runs under way."),
):
    """Run every method × seed of a spec, then write summary.json, table.md and table.csv.

    Each run lives in OUT/<method>/seed<N>/. A finished run (metrics.json present) is skipped on a
    rerun; an interrupted one (Ctrl-C, a crash, a kill) resumes from its last checkpoint and ends as
    an uninterrupted one would have. A run whose loss or gradient stops being finite is marked failed
    (failed.json) and the others go on; the command then exits 1 naming it. Only one `exposure run`
    may use an output directory at a time.
    """
    from ..executors import EXECUTORS
    from ..report import tables
    from ..runner.grid import run_spec
    from ..runtime import check_device_option, resolve_device
    from ..spec import load_spec

    s = load_spec(spec, set_)
    if tensorboard or s.train.tensorboard:
        from ..tensorboard import require

        require("--tensorboard" if tensorboard else f"{spec}: train.tensorboard")
        s.train.tensorboard = True
    name, per_run_threads, options = _executor_options(executor, jobs, threads, address, cpus_per_run, gpus_per_run)
    EXECUTORS.get(name, "--executor")  # a clear error (and Ray's install hint) before any work
    out_dir = Path(out or f"runs/{s.name}")
    if name == "ray":  # the workers have the GPUs, not necessarily the driver: each resolves --device itself
        check_device_option(device)
        dev = device
    else:
        dev = resolve_device(device)
    if s.train.needs_gpu and name != "ray":
        from ..data import read_pairs
        from ..gpu import require_gpu

        n = len(read_pairs(s.data.train)[: s.data.train_limit])
        require_gpu(s, dev, device, n)
    console.print(f"[bold]{s.name}[/]: {len(s.methods)} method(s) × {len(s.train.seeds)} seed(s) on {dev}{' (each Ray worker resolves it)' if name == 'ray' else ''} → {out_dir}"
                  f" ({name} executor{f', {jobs} jobs' if name == 'pool' else ''})", highlight=False)
    on_finished = None
    if commit:
        from ..runner.commit import Committer

        if keep is None:
            raise UserError("--commit: only with --keep (it commits the kept runs)")
        # the KEEP in each message: the screen's four grids share one spec name
        committer = Committer(keep, lambda text: err_console.print(text, highlight=False), prefix=f"{s.name} → {keep}")
        on_finished = committer.run_finished
    for src in reuse:
        if not src.is_dir():
            raise UserError(f"--reuse {src}: not a directory (expected an output or kept directory of another "
                            "experiment, <method>/seed<k>/ inside)")
    summary = run_spec(s, out_dir, dev, console, name, per_run_threads, retry_failed, keep=keep,
                       reuse=tuple(reuse), on_finished=on_finished, **options)
    if commit:
        committer.commit(keep, f"{committer.prefix}: the kept runs (those --reuse copied, a rerun's)")
    console.print(tables.rich_table(tables.summary_matrix(summary)))
    if summary.get("failed"):
        for f in summary["failed"]:
            err_console.print(f"[red]failed:[/] {f['method']} seed {f['seed']}: {f['reason']}", highlight=False)
        err_console.print("rerun with --retry-failed to start the failed runs over", highlight=False)
        raise typer.Exit(1)
