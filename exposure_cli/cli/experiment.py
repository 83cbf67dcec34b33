"""`exposure run`, `exposure ls` and `exposure compare`: a spec's grid, what can go in a spec, and the
regression check of a table against a committed one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

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
):
    """Run every method × seed of a spec, then write summary.json, table.md and table.csv.

    Each run lives in OUT/<method>/seed<N>/. A finished run (metrics.json present) is skipped on a
    rerun; an interrupted one (Ctrl-C, a crash, a kill) resumes from its last checkpoint and ends as
    an uninterrupted one would have. A run whose loss or gradient stops being finite is marked failed
    (failed.json) and the others go on; the command then exits 1 naming it. Only one `exposure run`
    may use an output directory at a time.
    """
    from .. import report
    from ..executors import EXECUTORS
    from ..runner import run_spec
    from ..runtime import resolve_device
    from ..spec import load_spec

    s = load_spec(spec, set_)
    name, per_run_threads, options = _executor_options(executor, jobs, threads, address, cpus_per_run, gpus_per_run)
    EXECUTORS.get(name, "--executor")  # a clear error (and Ray's install hint) before any work
    out_dir = Path(out or f"runs/{s.name}")
    dev = resolve_device(device)
    if s.train.needs_gpu:
        from ..data import read_pairs
        from ..gpu import require_gpu

        n = len(read_pairs(s.data.train)[: s.data.train_limit])
        require_gpu(s, dev, device, n)
    console.print(f"[bold]{s.name}[/]: {len(s.methods)} method(s) × {len(s.train.seeds)} seed(s) on {dev} → {out_dir}"
                  f" ({name} executor{f', {jobs} jobs' if name == 'pool' else ''})", highlight=False)
    summary = run_spec(s, out_dir, dev, console, name, per_run_threads, retry_failed, **options)
    console.print(report.rich_table(report.summary_matrix(summary)))
    if summary.get("failed"):
        for f in summary["failed"]:
            err_console.print(f"[red]failed:[/] {f['method']} seed {f['seed']}: {f['reason']}", highlight=False)
        err_console.print("rerun with --retry-failed to start the failed runs over", highlight=False)
        raise typer.Exit(1)


@app.command("ls")
def ls(
    what: Optional[str] = typer.Argument(None, help="Only this part: specs, methods, strategies, executors, "
                                         "tokenizers or inits."),
):
    """List what a spec can use: the packaged specs, every method with each parameter's default and
    meaning, the decode strategies, executors, tokenizers and model initialisations."""
    from ..spec import packaged_specs

    parts = {"specs": _ls_specs, "methods": _ls_methods, "strategies": _ls_family("decode strategies"),
             "executors": _ls_family("executors"), "tokenizers": _ls_family("tokenizers"),
             "inits": _ls_family("inits")}
    if what is not None and what not in parts:
        raise UserError(f"{what}: expected one of {', '.join(parts)}")
    for key, show in parts.items():
        if what in (None, key):
            show() if key != "specs" else show(packaged_specs())


def _ls_specs(specs: dict) -> None:
    t = Table(title="specs (exposure run NAME; ./experiments first, then the packaged ones)")
    t.add_column("name")
    t.add_column("what")
    for name, path in specs.items():
        t.add_row(name, _first_comment(path))
    console.print(t)


def _first_comment(path: Path) -> str:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").rstrip())
    return " ".join(lines).split(". ")[0][:160]


def _ls_methods() -> None:
    from ..methods import METHODS
    from ..typed import describe

    t = Table(title="methods (methods: [name, {name: {param: value}}])")
    for col in ("method", "parameter", "default", "meaning"):
        t.add_column(col, overflow="fold")
    for name in METHODS.names():
        cls = METHODS.get(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        params = describe(cls)
        if not params:
            t.add_row(name, "", "", doc)
        for i, f in enumerate(params):
            meaning = f.help + (f" ({' | '.join(f.choices)})" if f.choices else "")
            t.add_row(name if i == 0 else "", f.name, str(f.default), meaning)
    console.print(t)


def _ls_family(title: str):
    def show() -> None:
        from ..build import INITS
        from ..decode import STRATEGIES
        from ..executors import EXECUTORS
        from ..tokenizers import TOKENIZERS

        registry = {"decode strategies": STRATEGIES, "executors": EXECUTORS, "tokenizers": TOKENIZERS,
                    "inits": INITS}[title]
        console.print(f"[bold]{title}:[/] {', '.join(registry.names())}", highlight=False)

    return show


@app.command()
def compare(
    run_dir: str = typer.Argument(..., help="A run output directory (with summary.json), a summary.json, or a "
                                  "directory of kept runs (`exposure keep`)."),
    reference: str = typer.Argument(..., help="The reference summary.json, e.g. results/smoke.json."),
    tol: float = typer.Option(0.5, min=0, help="Largest allowed difference of a cell's mean, in ×100 points."),
    delta_tol: Optional[float] = typer.Option(None, min=0, help="Largest allowed difference of a method's "
                                              "difference to baseline and of its interval's ends, ×100; default "
                                              "--tol. A flipped significance mark always fails."),
):
    """Check a run's table against a committed reference: exit 1 and list every cell that drifted."""
    from .. import report
    from .report import load_summary

    problems = report.compare(load_summary(run_dir), report.load_summary(reference), tol, delta_tol)
    if problems:
        for p in problems:
            console.print(f"[red]✗[/] {p}", highlight=False)
        raise typer.Exit(1)
    d = tol if delta_tol is None else delta_tol
    console.print(f"[green]✓[/] every cell within {tol} and every difference to baseline within {d} of {reference}",
                  highlight=False)
