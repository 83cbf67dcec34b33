"""The `ray` executor: each (method, seed) run of the grid is one Ray task.

Ray schedules the tasks by their resources (`--cpus-per-run`, `--gpus-per-run`) on a local instance
or a cluster (`--address`), and retries a task whose worker process died (`max_retries`): the new
attempt resumes from the run's own checkpoint in its directory, so the result is the one an
uninterrupted run gives. A run that fails for its own reason (bad data, divergence) is not retried:
it raises or returns a failure record, as with the local executors.

Run directories live under --out, which every node must see (NFS or similar): the driver writes a
marker file there and a task on the cluster must find it before anything starts.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from pathlib import Path

from .. import stop
from ..errors import UserError

try:
    import ray
except ImportError:
    raise UserError("--executor ray needs Ray, an optional extra: pip install 'exposure[ray]' "
                    "(or make install EXTRAS=ray)") from None

from .base import Executor, GridDisplay, RunTask, StatusFile, costliest_first, execute

MARKER = ".exposure-ray-marker-"


def _see_marker(path: str) -> bool:
    return Path(path).is_file()


def _run_task(task: RunTask, marker: str) -> dict:
    if not _see_marker(marker):
        raise UserError(_storage_message(Path(task.dir).parents[1]))
    if threading.current_thread() is threading.main_thread():
        # ray.cancel interrupts the task as Ctrl-C would: the run saves last.pt after its current step
        previous = signal.getsignal(signal.SIGINT)
        stop.install((signal.SIGINT,), patient=True)
        try:
            return execute(task, StatusFile(task.dir))
        finally:
            signal.signal(signal.SIGINT, previous)
    return execute(task, StatusFile(task.dir))


def _storage_message(out: Path) -> str:
    return (f"{out}: a Ray worker cannot see the output directory the driver wrote to; on a cluster --out "
            "must be a filesystem every node mounts at the same path (NFS or similar)")


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_run: int = 1, gpus_per_run: float = 0.0,
                 max_retries: int = 3):
        self.address, self.cpus, self.gpus, self.max_retries = address, cpus_per_run, gpus_per_run, max_retries

    def _init(self) -> bool:
        """Connect to the cluster (or start a local instance); True when this process started it."""
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reporting home from a lab machine
        if ray.is_initialized():
            return False
        kw = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        try:
            if self.address:
                ray.init(address=self.address, **kw)
                return False
            ray.init(**kw)
            return True
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"--address {self.address or '(local)'}: cannot start or reach Ray ({e})") from None

    def run(self, tasks: list[RunTask], display: GridDisplay) -> list[dict]:
        if not tasks:
            return []
        started = self._init()
        main = threading.current_thread() is threading.main_thread()
        previous = {s: signal.getsignal(s) for s in stop.SIGNALS} if main else {}
        if main:
            stop.install()  # ray.init put its own SIGTERM handler (which aborts) in place of ours
        out = Path(tasks[0].dir).parents[1]
        marker = out / f"{MARKER}{uuid.uuid4().hex}"
        marker.write_text(str(os.getpid()), encoding="utf-8")
        try:
            return self._run(tasks, display, str(marker.resolve()))
        finally:
            marker.unlink(missing_ok=True)
            if started:
                ray.shutdown()
            for s, handler in previous.items():
                if handler is not None:  # None: a handler set outside Python (Ray's), gone with it
                    signal.signal(s, handler)

    def _remote(self, fn, retries: int):
        return ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=retries, retry_exceptions=False)(fn)

    def _run(self, tasks: list[RunTask], display: GridDisplay, marker: str) -> list[dict]:
        if not ray.get(self._remote(_see_marker, 0).remote(marker)):
            raise UserError(_storage_message(Path(marker).parent))
        run = self._remote(_run_task, self.max_retries)
        refs = {run.remote(t, marker): t for t in costliest_first(tasks)}
        results: dict[int, dict] = {}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                for ref in done:
                    t = refs[ref]
                    results[t.index] = _get(ref)
                    display.finished(t.index, results[t.index])
                for ref in pending:
                    display.poll(refs[ref].index)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: each task saves last.pt after its current step
            _cancel(pending)
            raise
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return [results[t.index] for t in tasks]


def _cancel(refs: list, grace: float = stop.GRACE) -> None:
    """Interrupt the tasks (a KeyboardInterrupt in each, which saves last.pt and stops), wait up to
    `grace` seconds for them, then kill what is left."""
    for ref in refs:
        ray.cancel(ref, force=False)
    deadline = time.monotonic() + grace
    left = list(refs)
    while left and time.monotonic() < deadline:
        _, left = ray.wait(left, num_returns=len(left), timeout=0.5)
    for ref in left:
        ray.cancel(ref, force=True)


def _get(ref) -> dict:
    """The task's result, with a run's own error (bad data) re-raised as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = e.cause if hasattr(e, "cause") else None
        if isinstance(cause, UserError):
            raise UserError(str(cause)) from None
        raise

