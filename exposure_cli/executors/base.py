"""The executor interface: a list of runs in, each run's result out, one progress view of the grid.

A `RunTask` is plain data (the resolved spec as a dict, the method, the seed, the run directory),
so it can cross a process or machine boundary; `execute` is what a worker does with one. Runs
report progress through a callback; executors whose runs live in other processes give them a
`StatusFile` reporter (a small JSON file in the run directory) and the driver polls those files,
which works the same for a local process pool and for Ray workers on other nodes sharing --out.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..registry import Registry
from ..runner.rundir import STATUS
from ..runtime import make_progress


@dataclass
class RunTask:
    index: int  # position in the grid
    label: str  # the method's label, as in tables
    method: dict  # {"name": ..., "params": {...}}
    seed: int
    dir: str  # the run directory
    spec: dict  # the resolved spec (Spec.to_dict())
    device: str = "cpu"
    threads: int = 0  # torch threads in the worker; 0 = torch's default
    cwd: str = field(default_factory=os.getcwd)  # where the spec's relative data paths point from
    cost: float = 1.0  # relative cost (the method's step cost): parallel executors start the costliest first
    init_from: str | None = None  # a warm start: the run directory whose best.pt this run starts from
    keep: str | None = None  # where the finished run's small outputs go (runner.grid.finish_run), or None


def costliest_first(tasks: list[RunTask]) -> list[RunTask]:
    """Longest-processing-time-first order (stable), so that a grid does not end on one long run."""
    return sorted(tasks, key=lambda t: -t.cost)


def execute(task: RunTask, report=None) -> dict:
    """Run one task in this process: the worker side of every executor."""
    import torch

    from ..gpu import require_gpu
    from ..runtime import resolve_device, set_threads
    from ..spec import MethodSpec, spec_from_dict
    from ..train import run_one

    if os.getcwd() != task.cwd:
        os.chdir(task.cwd)
    threads = torch.get_num_threads()  # the serial executor runs in the caller's process: give them back
    set_threads(task.threads)
    try:
        spec = spec_from_dict(json.loads(json.dumps(task.spec)))
        method = MethodSpec(task.method["name"], task.method["params"])
        kwargs = {"report": report} if report is not None else {}
        device = resolve_device(task.device)  # here, on the machine that trains (`auto` on a Ray worker)
        if spec.train.needs_gpu:
            from ..data import read_pairs

            require_gpu(spec, device, task.device, len(read_pairs(spec.data.train)[: spec.data.train_limit]))
        init_from = Path(task.init_from) if task.init_from else None
        result = run_one(spec, method, task.seed, Path(task.dir), device, init_from=init_from, **kwargs)
        if task.keep and "failed" not in result:
            from ..runner.grid import finish_run

            if report is not None:
                report(info="diagnosing and keeping its outputs")
            finish_run(Path(task.dir), Path(task.keep), device)
        return result
    finally:
        torch.set_num_threads(threads)


class StatusFile:
    """A progress reporter for runs in another process: the latest fields, in run_dir/status.json,
    rewritten at most every `interval` seconds (and always when `info` changes)."""

    def __init__(self, run_dir: str | Path, interval: float = 0.5):
        self.path = Path(run_dir) / STATUS
        self.interval = interval
        self.fields: dict = {"pid": os.getpid()}  # which process runs it (tests kill it by this)
        self.last = 0.0

    def __call__(self, **fields) -> None:
        info_changed = "info" in fields and fields["info"] != self.fields.get("info")
        self.fields.update(fields)
        now = time.monotonic()
        if info_changed or now - self.last >= self.interval:
            self.last = now
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{STATUS}.{os.getpid()}")
            tmp.write_text(json.dumps(self.fields), encoding="utf-8")
            os.replace(tmp, self.path)  # progress only: no fsync

    @staticmethod
    def read(run_dir: str | Path) -> dict:
        try:
            return json.loads((Path(run_dir) / STATUS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}


class GridDisplay:
    """One rich progress view of a grid: a bar for the grid and one per run."""

    def __init__(self, tasks: list[RunTask], console=None, on_finished=None):
        self.tasks = {t.index: t for t in tasks}  # by grid index (a grid may run only some of its tasks)
        self.on_finished = on_finished  # called with (task, result) as each run ends
        self.progress = make_progress(console)
        self.grid = self.progress.add_task("grid", total=len(tasks), info="")
        self.bars: dict[int, int] = {}
        self.done = 0

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def reporter(self, index: int):
        """A callback for `execute` that updates run `index`'s bar directly (runs in this process)."""
        return lambda **fields: self.update(index, **fields)

    def update(self, index: int, **fields) -> None:
        if index not in self.bars:
            t = self.tasks[index]
            self.bars[index] = self.progress.add_task(f"{t.label} seed {t.seed}", total=None, info="")
        self.progress.update(self.bars[index], **{k: fields[k] for k in ("completed", "total", "info") if k in fields})

    def poll(self, index: int) -> None:
        """Show what run `index`'s status file says (runs in other processes)."""
        fields = StatusFile.read(self.tasks[index].dir)
        if fields:
            self.update(index, **fields)

    def finished(self, index: int, result: dict) -> None:
        self.poll(index)
        if index in self.bars:
            bar = next(t for t in self.progress.tasks if t.id == self.bars[index])
            if bar.total is not None:
                self.progress.update(bar.id, completed=bar.total)
            if "failed" in result:
                self.progress.update(self.bars[index], info=f"[red]failed: {result['failed'].get('reason', '')}")
        self.done += 1
        self.progress.update(self.grid, completed=self.done, info=f"{self.done}/{len(self.tasks)} runs")
        if not self.progress.console.is_terminal:  # a log file (nohup, CI): the bars draw only at the end there
            from ..report.summary import outcome_line

            t = self.tasks[index]
            self.progress.console.print(f"{t.label} seed {t.seed}: {outcome_line(result)} "
                                        f"[{self.done}/{len(self.tasks)} runs]", highlight=False)
        if self.on_finished is not None:
            self.on_finished(self.tasks[index], result)


class Executor:
    """Runs a grid's tasks and returns their results in task order."""

    name: ClassVar[str] = ""

    def run(self, tasks: list[RunTask], display: GridDisplay) -> list[dict]:
        raise NotImplementedError


EXECUTORS: Registry[type[Executor]] = Registry("executor", Executor, family="executors")
