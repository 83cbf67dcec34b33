"""A spec → its grid of runs (method × seed), each in its own directory, then the summary table.

The grid is handed to an executor (`executors/`); the runner owns what is shared: the output
directory's lock (one runner per directory), the list of runs, and the summary written from their
results. Finished runs (metrics.json) are skipped by the run itself, so a rerun resumes the grid.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml

from . import fileio, report
from .errors import UserError
from .executors import EXECUTORS, GridDisplay, RunTask
from .metrics import study_per_example
from .predictions import read_columns, write_predictions
from .spec import Spec, method_label, spec_from_dict

LOCK = ".exposure.lock"


def run_dir_name(label: str) -> str:
    """A directory name for a method label: `random_replace(ratio=0.2)` → `random_replace-ratio=0.2`."""
    return re.sub(r"[^\w.=-]+", "-", label).strip("-")


def grid(spec: Spec) -> list[tuple]:
    return [(m, method_label(m), seed) for m in spec.methods for seed in spec.train.seeds]


def run_path(out_dir: Path, label: str, seed: int) -> Path:
    return out_dir / run_dir_name(label) / f"seed{seed}"


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


def make_tasks(spec: Spec, out_dir: Path, device: torch.device, threads: int) -> list[RunTask]:
    from .methods import get_method

    d = spec.to_dict()
    return [RunTask(i, label, {"name": m.name, "params": dict(m.params)}, seed, str(run_path(out_dir, label, seed)),
                    d, str(device), threads, cost=get_method(m.name, m.params).step_cost)
            for i, (m, label, seed) in enumerate(grid(spec))]


def clear_failed(tasks: list[RunTask]) -> list[str]:
    """Remove the failed runs' directories so that they start over; returns their labels."""
    cleared = []
    for t in tasks:
        if (Path(t.dir) / "failed.json").exists():
            shutil.rmtree(t.dir)
            cleared.append(f"{t.label} seed {t.seed}")
    return cleared


def run_spec(spec: Spec, out_dir: Path, device: torch.device, console=None, executor: str = "serial",
             threads: int = 0, retry_failed: bool = False, **executor_options) -> dict:
    """Run the grid with the named executor and write the summary; returns it."""
    with locked(out_dir):
        fileio.remove_temporaries(out_dir)  # what a killed runner left half-written; we hold the lock
        tasks = make_tasks(spec, out_dir, device, threads)
        if retry_failed:
            clear_failed(tasks)
        runner = EXECUTORS.get(executor, "--executor")(**executor_options)
        with GridDisplay(tasks, console) as display:
            results = runner.run(tasks, display)
        summary = summarize_grid(spec, out_dir, results)
        report.write_summary(out_dir, summary)
    return summary


def summarize_grid(spec: Spec, out_dir: Path, results: list[dict]) -> dict:
    finished = [r for r in results if "failed" not in r]
    failed = [{"method": r["method"], "seed": r["seed"], **r["failed"]} for r in results if "failed" in r]
    summary = report.summarize(spec.name, finished, [method_label(m) for m in spec.methods], spec.decode.beams,
                               failed)
    per_example = per_example_scores(out_dir, spec, finished)
    report.add_cell_intervals(summary, per_example)
    report.add_bootstrap(summary, per_example)
    summary["runs"] = [report.run_record(r) for r in results]
    if failed:
        summary["failed"] = failed
    return summary


def per_example_scores(out_dir: Path, spec: Spec, finished: list[dict]) -> dict:
    """(method, beam, seed) → per-example study scores, recomputed from the predictions files."""
    scores = {}
    for r in finished:
        for beam in spec.decode.beams:
            cols = read_columns(run_path(out_dir, r["method"], r["seed"]) / f"predictions.beam{beam}.tsv")
            if cols is None:
                raise UserError(f"{run_path(out_dir, r['method'], r['seed'])}: predictions.beam{beam}.tsv has no header")
            scores[(r["method"], beam, r["seed"])] = study_per_example(cols["prediction"], cols["reference"],
                                                                       spec.score.lowercase)
    return scores


def timings(out_dir: Path, spec: Spec) -> list[dict]:
    """Each finished run's wall-clock seconds (kept out of summary.json, which is deterministic)."""
    out = []
    for _, label, seed in grid(spec):
        path = run_path(out_dir, label, seed) / "metrics.json"
        if path.exists():
            m = fileio.read_json(path)
            out.append({"method": label, "seed": seed,
                        **{k: m.get(k) for k in ("train_seconds", "dev_seconds", "eval_seconds")}})
    return out


# ----------------------------------------------------------- tables without the checkpoints

# What a finished run leaves that the tables, plots and `exposure power` need: its metrics, its
# resolved spec, its training log (dev BLEU curves) and each beam's predictions.
KEPT = ("metrics.json", "spec.yaml", "train.jsonl")


def keep_small_outputs(out_dir: Path, dest: Path) -> list[Path]:
    """Copy each finished run's small outputs from out_dir to dest in the same layout
    (<method>/seed<k>/), the predictions with their source column emptied (the sources are the test
    split's, line for line; the references and predictions are what the scores come from). From
    dest, `rebuild_summary` makes the experiment's summary again without any checkpoint."""
    runs = sorted(p.parent for p in out_dir.glob("*/seed*/metrics.json"))
    if not runs:
        raise UserError(f"{out_dir}: no finished run (expected <method>/seed<k>/metrics.json inside)")
    written = []
    for run in runs:
        target = dest / run.relative_to(out_dir)
        for name in KEPT:
            if (run / name).exists():
                fileio.write_text(target / name, fileio.read_text(run / name))
                written.append(target / name)
        for path in sorted(run.glob("predictions.beam*.tsv")):
            cols = read_columns(path)
            if cols is None:
                raise UserError(f"{path}: no predictions header")
            write_predictions(target / path.name, [""] * len(cols["reference"]), cols["reference"], cols["prediction"])
            written.append(target / path.name)
    return written


def rebuild_summary(out_dir: Path) -> dict:
    """The summary of an output directory from its runs' metrics.json, spec.yaml and predictions
    alone (a directory written by `keep_small_outputs`, or a run directory whose summary.json is
    gone): the same function `run_spec` summarises with, so the intervals are today's code's."""
    specs = sorted(out_dir.glob("*/seed*/spec.yaml"))
    if not specs:
        raise UserError(f"{out_dir}: no summary.json and no run inside (expected <method>/seed<k>/spec.yaml)")
    raw = yaml.safe_load(fileio.read_text(specs[0]))
    raw.pop("run", None)  # this run's method and seed; the rest is the experiment's
    try:
        spec = spec_from_dict(raw)
    except UserError as e:
        raise UserError(f"{specs[0]}: {e}") from None
    results = []
    for _, label, seed in grid(spec):
        run = run_path(out_dir, label, seed)
        if (run / "metrics.json").exists():
            results.append(fileio.read_json(run / "metrics.json"))
        elif (run / "failed.json").exists():
            results.append({"method": label, "seed": seed, "failed": fileio.read_json(run / "failed.json")})
    if not results:
        raise UserError(f"{out_dir}: no finished run of {spec.name!r} inside")
    return summarize_grid(spec, out_dir, results)

