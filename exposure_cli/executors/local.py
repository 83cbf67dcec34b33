"""Executors on this machine: `serial` runs the grid in this process, one run after another;
`pool` runs N at a time in worker processes (`exposure run --jobs N`).

Pool workers are spawned (not forked: torch's thread pools do not survive a fork), ignore Ctrl-C
(the driver stops them), and die with the driver even when it is killed with SIGKILL (Linux's
parent-death signal), so a killed grid leaves no orphan writing into its run directories. A driver
stopped by Ctrl-C or SIGTERM sends its workers SIGTERM: each saves last.pt after its current step
and exits (`stop.py`); one still busy after `stop.GRACE` seconds is killed.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import time

from .. import stop
from .base import EXECUTORS, Executor, GridDisplay, RunTask, StatusFile, costliest_first, execute


@EXECUTORS.register()
class Serial(Executor):
    name = "serial"

    def run(self, tasks: list[RunTask], display: GridDisplay) -> list[dict]:
        results = []
        for t in tasks:
            result = execute(t, display.reporter(t.index))
            display.finished(t.index, result)
            results.append(result)
        return results


def _die_with_parent(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop.install((signal.SIGTERM,), outside=stop.exit_now)  # outside training: leave at once
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: a killed driver can leave an orphan finishing its run
        pass
    if os.getppid() != parent:  # the driver died before prctl took effect
        os._exit(1)


def _work(task: RunTask) -> dict:
    stop.install((signal.SIGTERM,))  # in a run: stop as `exposure run` does, last.pt saved
    try:
        return execute(task, StatusFile(task.dir))
    except stop.Interrupted as e:  # the driver is stopping
        stop.exit_now(e.signum)
    finally:
        stop.install((signal.SIGTERM,), outside=stop.exit_now)


@EXECUTORS.register()
class Pool(Executor):
    name = "pool"

    def __init__(self, jobs: int = 2):
        self.jobs = jobs

    def run(self, tasks: list[RunTask], display: GridDisplay) -> list[dict]:
        ctx = multiprocessing.get_context("spawn")
        results: dict[int, dict] = {}
        pool = cf.ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_die_with_parent,
                                      initargs=(os.getpid(),))
        try:
            futures = {pool.submit(_work, t): t for t in costliest_first(tasks)}
            pending = set(futures)
            while pending:
                done, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    t = futures[f]
                    results[t.index] = f.result()  # a worker's error stops the grid here
                    display.finished(t.index, results[t.index])
                for f in pending:
                    if f.running():
                        display.poll(futures[f].index)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the workers save where they are
            _kill(pool, grace=stop.GRACE)
            raise
        except BaseException:
            _kill(pool)
            raise
        pool.shutdown(wait=True)
        return [results[t.index] for t in tasks]


def _kill(pool: cf.ProcessPoolExecutor, grace: float = 0.0) -> None:
    """Stop every worker: with a grace period, SIGTERM first (each saves last.pt after its current
    step); then kill what is left (another run's error). Their files are written atomically."""
    procs = list(getattr(pool, "_processes", {}).values())
    if grace:
        for p in procs:
            p.terminate()
        deadline = time.monotonic() + grace
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        p.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    time.sleep(0.05)
