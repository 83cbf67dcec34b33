"""Executors on this machine: `serial` runs the grid in this process, one run after another;
`pool` runs N at a time in worker processes (`exposure run --jobs N`).

Pool workers are spawned (not forked: torch's thread pools do not survive a fork), ignore Ctrl-C
(the driver stops them), and die with the driver even when it is killed with SIGKILL (Linux's
parent-death signal), so a killed grid leaves no orphan writing into its run directories.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import time

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
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: a killed driver can leave an orphan finishing its run
        pass
    if os.getppid() != parent:  # the driver died before prctl took effect
        os._exit(1)


def _work(task: RunTask) -> dict:
    return execute(task, StatusFile(task.dir))


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
        except BaseException:
            _kill(pool)
            raise
        pool.shutdown(wait=True)
        return [results[t.index] for t in tasks]


def _kill(pool: cf.ProcessPoolExecutor) -> None:
    """Stop every worker now (Ctrl-C, or another run's error): their files are written atomically."""
    for p in list(getattr(pool, "_processes", {}).values()):
        p.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    time.sleep(0.05)
