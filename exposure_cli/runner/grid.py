"""A spec → its grid of runs (method × seed), each in its own directory, then the summary table.

The grid is handed to an executor (`executors/`); the runner owns what is shared: the output
directory's lock (one runner per directory), the list of runs, and the summary written from their
results. Finished runs (metrics.json) are skipped by the run itself, so a rerun resumes the grid.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml

from .. import fileio
from ..decode.predictions import predictions_text, read_columns
from ..errors import UserError
from ..executors import EXECUTORS, GridDisplay, RunTask
from ..report import summary as report
from ..report import tables
from ..spec import Spec, method_label, spec_from_dict
from . import rundir
from .rundir import run_dir_name, run_path

LOCK = ".exposure.lock"


def grid(spec: Spec) -> list[tuple]:
    return [(m, method_label(m), seed) for m in spec.methods for seed in spec.train.seeds]


@contextmanager
def locked(out_dir: Path):
    """Hold an OS lock on OUT for this process's lifetime: a second runner on the same directory
    stops at once naming the holder; a lock left by a killed process is released by the kernel."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK
    f = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise UserError(f"{out_dir}: in use by {holder}; wait for it to finish or choose another --out") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv[:3])})\n")
        f.flush()
        yield
    finally:
        f.close()  # releases the lock


def check_run_dirs(labels: list[str]) -> None:
    """Each method's directory is one name under OUT, its own: a label (a registered method's name and
    parameters) that would give '.', '..' or another method's directory stops the grid before any work."""
    seen: dict[str, str] = {}
    for label in labels:
        name = run_dir_name(label)
        if name in ("", ".", ".."):
            raise UserError(f"methods: {label!r} gives no usable run directory name ({name!r})")
        if name in seen:
            raise UserError(f"methods: {seen[name]!r} and {label!r} would share the run directory {name!r}")
        seen[name] = label


def make_tasks(spec: Spec, out_dir: Path, device: torch.device | str, threads: int) -> list[RunTask]:
    """The grid's tasks; `device` may be an option still to resolve on the worker (`auto` with Ray)."""
    from ..methods import get_method

    check_run_dirs([method_label(m) for m in spec.methods])
    d = spec.to_dict()
    tasks = []
    for i, (m, label, seed) in enumerate(grid(spec)):
        method = get_method(m.name, m.params)
        start = str(run_path(out_dir, method.warm_start, seed)) if method.warm_start else None
        tasks.append(RunTask(i, label, {"name": m.name, "params": dict(m.params)}, seed,
                             str(run_path(out_dir, label, seed)), d, str(device), threads, cost=method.step_cost,
                             init_from=start))
    return tasks


def stages(tasks: list[RunTask]) -> list[list[RunTask]]:
    """The grid in the order its runs may go: runs that start from scratch, then the warm-started
    ones (which need the first stage's best.pt files). Each stage runs in parallel as the executor can."""
    first = [t for t in tasks if t.init_from is None]
    second = [t for t in tasks if t.init_from is not None]
    return [s for s in (first, second) if s]


def clear_failed(tasks: list[RunTask]) -> list[str]:
    """Remove the failed runs' directories so that they start over; returns their labels."""
    cleared = []
    for t in tasks:
        if (Path(t.dir) / rundir.FAILED).exists():
            shutil.rmtree(t.dir)
            cleared.append(f"{t.label} seed {t.seed}")
    return cleared


def run_spec(spec: Spec, out_dir: Path, device: torch.device | str, console=None, executor: str = "serial",
             threads: int = 0, retry_failed: bool = False, keep: Path | None = None, on_finished=None,
             reuse: tuple[Path, ...] = (), **executor_options) -> dict:
    """Run the grid with the named executor and write the summary; returns it.

    With `keep`, each run's small outputs go to keep/<method>/seed<k>/ as soon as it finishes, its
    diagnostics measured first (`finish_run`); runs already there are not run again (they may have
    run on another machine), and the summary is the kept directory's. `on_finished(task, result)`
    is called in this process as each run ends (the campaign commits there). Runs another experiment
    already made are copied from the `reuse` directories instead of trained again (`reuse_runs`)."""
    with locked(out_dir):
        fileio.remove_temporaries(out_dir)  # what a killed runner left half-written; we hold the lock
        tasks = make_tasks(spec, out_dir, device, threads)
        if keep is not None:
            for t in tasks:
                t.keep = str(Path(keep) / Path(t.dir).relative_to(out_dir))
        for t, line in reuse_runs(spec, tasks, reuse):
            if console is not None:
                console.print(f"reused {line}", highlight=False)
            if on_finished is not None and t.keep and is_kept(Path(t.keep)):  # copied straight into KEEP
                on_finished(t, fileio.read_json(Path(t.keep) / rundir.METRICS))
        if keep is not None:
            keep_finished(tasks, device, on_finished)
            kept = {t.index for t in tasks if is_kept(Path(t.keep))}
            starts = {t.init_from for t in tasks if t.index not in kept}  # warm starts need best.pt
            tasks = [t for t in tasks if t.index not in kept or (t.dir in starts and not (Path(t.dir) / rundir.BEST).exists())]
        if retry_failed:
            clear_failed(tasks)
        runner = EXECUTORS.get(executor, "--executor")(**executor_options)
        with wall_clock(Path(keep or out_dir)), GridDisplay(tasks, console, on_finished) as display:
            done = {t.index: r for stage in stages(tasks) for t, r in zip(stage, runner.run(stage, display))}
        results = [done[t.index] for t in tasks]
        if keep is not None and any(Path(keep).glob(f"*/seed*/{rundir.METRICS}")):
            summary = rebuild_summary(Path(keep))  # every kept run, this invocation's and earlier ones'
            failed = report.failures(results)
            if failed:
                summary["failed"] = failed
        else:
            summary = report.summarize_grid(spec, out_dir, results)
        report.write_summary(out_dir, summary)
        tables.write_tables(out_dir, summary)
    return summary


# ----------------------------------------------------------- the grid's wall time

WALL_TICK = 5.0  # seconds between the clock's ticks
WALL_WRITE = 30.0  # seconds between writes: a killed grid loses at most this much of its time


def wall_tick(gap: float, tick: float = WALL_TICK) -> float:
    """The wall time one tick adds: the gap since the last one, or one tick when the gap is much
    longer (the process was stopped — SIGSTOP, a suspended machine — and did no work meanwhile)."""
    return gap if gap <= 4 * tick else tick


@contextmanager
def wall_clock(directory: Path, tick: float = WALL_TICK, write_every: float = WALL_WRITE, clock=time.monotonic):
    """Add this invocation's wall time to DIRECTORY/wall.json (rundir.read_wall): a grid that takes
    several sessions, each ended by a kill, still knows what it took. A background thread ticks; the
    file is rewritten every `write_every` seconds and at the end."""
    path = Path(directory) / rundir.WALL
    state = rundir.read_wall(directory) or {"seconds": 0.0, "invocations": 0}
    state["invocations"] += 1
    stop, last = threading.Event(), [clock()]

    def advance() -> None:
        now = clock()
        state["seconds"] = round(state["seconds"] + wall_tick(now - last[0], tick), 3)
        last[0] = now

    def loop() -> None:
        written = clock()
        while not stop.wait(tick):
            advance()
            if clock() - written >= write_every:
                fileio.write_json(path, state)
                written = clock()

    thread = threading.Thread(target=loop, name="wall-clock", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join()
        advance()
        fileio.write_json(path, state)


# ----------------------------------------------------------- runs shared between experiments

def run_identity(raw: dict) -> dict:
    """What makes a run's spec.yaml this run, whichever experiment it ran in: all of it but the
    experiment's name, its method list and its seed list; the run's own method with every parameter
    (`random_replace` and `random_replace: {prob: 0.5}` are one run) and its seed."""
    from dataclasses import asdict

    from ..methods import get_method

    raw = {k: v for k, v in raw.items() if k not in ("name", "methods")}
    raw["train"] = {k: v for k, v in (raw.get("train") or {}).items() if k != "seeds"}
    (name, params), = raw["run"]["method"].items()
    raw["run"] = {**raw["run"], "method": {name: asdict(get_method(name, params or {}))}}
    return raw


def keep_finished(tasks: list[RunTask], device="cpu", on_finished=None) -> None:
    """Keep now each run finished in OUT but not yet kept (a copy --reuse made, a run killed between
    its metrics.json and its keeping), instead of when the executor's costliest-first queue reaches
    its task behind hours of training. A run whose outputs fail their checksums is left to the
    executor, which decodes it again. `on_finished` (the campaign's or `run --commit`'s commit) is
    called for each as for a run the executor finished."""
    from ..train import damaged_output

    for t in tasks:
        run = Path(t.dir)
        if is_kept(run) and not is_kept(Path(t.keep)) and not damaged_output(run):
            finish_run(run, Path(t.keep), device)
            if on_finished is not None:
                on_finished(t, fileio.read_json(run / rundir.METRICS))


def reuse_runs(spec: Spec, tasks: list[RunTask], sources: tuple[Path, ...]) -> list[tuple[RunTask, str]]:
    """Copy in, instead of training again, each run of the grid that another experiment already
    finished with the same data, model, training, decoding, method and seed (`same_run`): from a
    run directory with its best.pt (an output directory: the whole run, so that a warm start can
    start from it), else from a kept run into the task's keep directory.
    The copy's spec.yaml is this experiment's. Returns each task copied, with a line saying from where."""
    from ..spec import MethodSpec
    from ..train import run_spec_text

    lines = []
    for t in tasks:
        if not sources or is_kept(Path(t.dir)) or (t.keep and is_kept(Path(t.keep))):
            continue
        text = run_spec_text(spec, MethodSpec(t.method["name"], t.method["params"]), t.seed)
        want = run_identity(yaml.safe_load(text))
        for src in sources:
            cand = run_path(Path(src), t.label, t.seed)
            if not is_kept(cand) or not same_run(cand, want):
                continue
            if (cand / rundir.BEST).exists():
                _copy_run(cand, Path(t.dir), text)  # kept by keep_finished
            elif t.keep:
                keep_run(cand, Path(t.keep), spec_text=text)
            else:
                continue
            lines.append((t, f"{t.label} seed {t.seed} from {cand}"))
            break
    return lines


def same_run(run: Path, want: dict) -> bool:
    """Whether the finished run at `run` is the run whose identity is `want`: the same identity, or
    one that differs only in early stopping when stopping is moot. A run that its patience p never
    stopped trained every epoch and is the run that patience p' ≥ p, or none, would have made."""
    have = run_identity(yaml.safe_load(fileio.read_text(run / rundir.SPEC)))
    if have == want:
        return True
    p, q = have["train"].get("patience"), want["train"].get("patience")
    if p is None or (q is not None and q < p):
        return False
    trained_all = fileio.read_json(run / rundir.METRICS).get("epochs") == have["train"].get("epochs")
    return trained_all and {**have, "train": {**have["train"], "patience": q}} == want


def _copy_run(src: Path, dest: Path, spec_text: str) -> None:
    """A finished run directory copied whole but for its resumption state, metrics.json last."""
    skip = {rundir.LAST, rundir.PREVIOUS, rundir.STATUS, rundir.SPEC, rundir.METRICS}
    for path in sorted(p for p in src.iterdir() if p.is_file() and p.name not in skip and not p.name.startswith(".")):
        fileio.write_bytes(dest / path.name, path.read_bytes())
    fileio.write_text(dest / rundir.SPEC, spec_text)
    fileio.write_bytes(dest / rundir.METRICS, (src / rundir.METRICS).read_bytes())


# ----------------------------------------------------------- tables without the checkpoints

# What a finished run leaves that the tables, plots and `exposure power` need: its metrics, its
# resolved spec, its training log (dev BLEU curves) and each beam's predictions; and, when
# `exposure diagnose` has measured it while its checkpoint existed, its diagnostics.
KEPT = (rundir.METRICS, rundir.SPEC, rundir.LOG, rundir.DIAGNOSTICS)


def keep_small_outputs(out_dir: Path, dest: Path) -> list[Path]:
    """Copy each finished run's small outputs from out_dir to dest in the same layout
    (<method>/seed<k>/). From dest, `rebuild_summary` makes the experiment's summary again without
    any checkpoint."""
    runs = rundir.finished_runs(out_dir)
    if not runs:
        raise UserError(f"{out_dir}: no finished run (expected <method>/seed<k>/metrics.json inside)")
    return [p for run in runs for p in keep_run(run, dest / run.relative_to(out_dir))]


def keep_run(run: Path, target: Path, spec_text: str | None = None) -> list[Path]:
    """One finished run's small outputs copied to `target`: the predictions with their source column
    emptied (the sources are the test split's, line for line; the references and predictions are
    what the scores come from), those and the diagnostics xz-compressed (rundir.COMPRESSED), and
    metrics.json last, so that a kept run with metrics.json is whole. `run` may itself be a kept run;
    `spec_text` replaces its spec.yaml (a run reused by another experiment, `reuse_runs`)."""
    written = []
    pattern = rundir.predictions("*")
    for name in sorted({rundir.plain_name(p.name) for p in run.glob(pattern + "*")}):
        cols = read_columns(path := rundir.kept(run, name))
        if cols is None:
            raise UserError(f"{path}: no predictions header")
        written.append(_keep(target / name, predictions_text([""] * len(cols["reference"]), cols["reference"],
                                                             cols["prediction"])))
    for name in sorted(KEPT, key=lambda n: n == rundir.METRICS):
        if name == rundir.SPEC and spec_text is not None:
            written.append(_keep(target / name, spec_text))
        elif (path := rundir.kept(run, name)).exists():
            written.append(_keep(target / name, fileio.read_text(path)))
    return written


def _keep(path: Path, text: str) -> Path:
    if not rundir.compressed(path.name):
        return fileio.write_text(path, text)
    written = fileio.write_xz_text(path.with_name(path.name + rundir.XZ), text)
    for older in [path] + [path.with_name(path.name + s) for s in rundir.SUFFIXES if s != rundir.XZ]:
        older.unlink(missing_ok=True)  # a copy kept by an older version, uncompressed or gzipped
    return written


def is_kept(target: Path) -> bool:
    return (target / rundir.METRICS).exists()


def finish_run(run: Path, target: Path, device: torch.device | str = "cpu") -> None:
    """What a finished run leaves before its checkpoint may go: its diagnostics (`exposure diagnose`'s
    defaults at the spec's beams, measured now while best.pt exists), then its small outputs in `target`."""
    from .. import diagnose as dg
    from ..decode.generate import load_run_spec

    if not rundir.kept(run, rundir.DIAGNOSTICS).exists():
        spec, _ = load_run_spec(run)
        opts = dg.Options(beams=tuple(spec.decode.beams))
        dg.diagnose_run(dg.load_run_data(run, opts, torch.device(device)), opts)
    keep_run(run, target)


def rebuild_summary(out_dir: Path) -> dict:
    """The summary of an output directory from its runs' metrics.json, spec.yaml and predictions
    alone (a directory written by `keep_small_outputs`, or a run directory whose summary.json is
    gone): the same function `run_spec` summarises with, so the intervals are today's code's."""
    spec, results = grid_results(out_dir)
    return report.summarize_grid(spec, out_dir, results)


def grid_results(out_dir: Path) -> tuple[Spec, list[dict]]:
    """The experiment's spec (from the runs' spec.yaml) and, in the grid's order, each run's
    metrics.json or its failure, read from an output directory or a directory of kept runs. The
    seeds are every seed found (a campaign keeps its blocks of seeds side by side); the runs must
    share one experiment otherwise."""
    specs = sorted(out_dir.glob(f"*/seed*/{rundir.SPEC}"))
    if not specs:
        raise UserError(f"{out_dir}: no summary.json and no run inside (expected <method>/seed<k>/spec.yaml)")
    first, seeds = None, set()
    for path in specs:
        raw = yaml.safe_load(fileio.read_text(path))
        seeds.add((raw.pop("run", None) or {}).get("seed"))  # this run's method and seed; the rest is the experiment's
        raw.get("train", {}).pop("seeds", None)
        if first is None:
            first = raw
        elif raw != first:
            raise UserError(f"{path}: a different experiment from {specs[0]} (only the seeds may differ between "
                            "the runs of one directory)")
    first["train"]["seeds"] = sorted(s for s in seeds if isinstance(s, int))
    try:
        spec = spec_from_dict(first)
    except UserError as e:
        raise UserError(f"{specs[0]}: {e}") from None
    results = []
    for _, label, seed in grid(spec):
        run = run_path(out_dir, label, seed)
        if (run / rundir.METRICS).exists():
            results.append(fileio.read_json(run / rundir.METRICS))
        elif (run / rundir.FAILED).exists():
            results.append({"method": label, "seed": seed, "failed": fileio.read_json(run / rundir.FAILED)})
    if not results:
        raise UserError(f"{out_dir}: no finished run of {spec.name!r} inside")
    return spec, results
