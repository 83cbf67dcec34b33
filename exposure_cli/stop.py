"""Stopping on a signal: Ctrl-C (SIGINT), or SIGTERM, which schedulers (SLURM, Kubernetes, Ray's
autoscaler) send to preempt a job a grace period before they kill it.

Both are handled alike. Inside `steps()` (training: its steps and the selection between epochs) a
signal only marks itself pending: the step under way finishes, the loop saves `last.pt` at that point
and calls `check()`, which raises `Interrupted`; a second Ctrl-C does not wait. Long work with nothing
to lose inside it (decoding the dev set) is `interruptible()`: a signal stops it at once, and the save
that follows is deferred again, so a repeated signal (Ray re-sends its cancel every few seconds)
waits for it. Elsewhere the signal raises at once: every file is written atomically, so nothing is
half-written either way; a signal landing inside a module's import (where raising can leave a library
half-initialised) leaves the process at once instead. The command exits 128 + the signal's number (130 for Ctrl-C, 143 for
SIGTERM, the shells' convention) saying how to resume.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODES = tuple(128 + s for s in SIGNALS)  # 130, 143
# Seconds a stopped driver (pool or Ray) gives its runs to save last.pt before killing them
# (schedulers give 30 s or more before their own kill).
GRACE = 60.0


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal; a KeyboardInterrupt, so whatever handles Ctrl-C handles it."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_state = {"deferring": 0, "pending": None, "last": signal.SIGINT, "outside": None, "patient": False, "now": False}


def _handler(signum, frame) -> None:
    _state["last"] = signum
    if _state["deferring"] and (_state["pending"] is None or signum == signal.SIGTERM or _state["patient"]):
        if _state["now"]:  # in interruptible(): stop now; what follows (the save) is deferred again
            _state["now"] = False
            raise Interrupted(signum)
        _state["pending"] = _state["pending"] or signum  # a repeated SIGTERM (a pool's own clean-up) waits too
        return
    if _state["outside"] is None and not _state["patient"] and _in_import(frame):
        # Raised inside a module's import, the interrupt can leave a library half-initialised (numpy
        # then fails with an ImportError or a RecursionError instead of stopping). Nothing is written
        # during an import, so the command's own process leaves at once instead.
        leave(signum)
    if _state["outside"] is not None:
        _state["outside"](signum)
    raise Interrupted(signum)


def _in_import(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def install(signals=SIGNALS, outside=None, patient: bool = False) -> None:
    """Handle `signals` as described above (main thread only). `outside(signum)`, when given, runs
    for a signal outside `steps()` instead of raising (pool workers exit there at once); `patient`:
    a repeated SIGINT waits too (in a Ray task it is Ray's cancel, not a user insisting). Nothing is
    pending after it: a signal left from a stop already under way (a Ray worker's previous task)
    does not stop the next task."""
    _state["outside"], _state["patient"], _state["pending"] = outside, patient, None
    for s in signals:
        signal.signal(s, _handler)


@contextmanager
def steps():
    """A region where a signal waits for the next `check()`."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1


@contextmanager
def interruptible(on_stop):
    """Inside or outside `steps()`: work a signal may stop at once (nothing in it is lost); then
    `on_stop()` saves what came before, with a repeated signal waiting for it."""
    was = _state["now"]
    _state["deferring"] += 1
    _state["now"] = True
    try:
        check()  # a signal that came before
        yield
    except Interrupted:
        on_stop()
        _state["pending"] = None  # the stop under way answers a repeated signal too
        raise
    finally:
        _state["now"] = was
        _state["deferring"] -= 1


def pending() -> bool:
    return _state["pending"] is not None


def check() -> None:
    """Raise `Interrupted` if a signal came while in `steps()`."""
    signum = _state["pending"]
    if signum is not None:
        _state["pending"], _state["now"] = None, False
        raise Interrupted(signum)


def exit_code(e: BaseException | None = None) -> int:
    """128 + the signal's number: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + int(getattr(e, "signum", None) or _state["last"])


def message(code: int) -> str:
    what = "terminated (SIGTERM)" if code == 128 + signal.SIGTERM else "interrupted"
    return (f"{what}: every file written so far is complete and each run in training saved last.pt; "
            "rerun the same command to resume")


def leave(signum: int) -> None:
    """Say the stop's line, then `exit_now`: for a process that has written nothing a stop could lose
    (the command's start-up, an import under way)."""
    sys.stderr.write(message(128 + signum) + "\n")
    exit_now(signum)


def exit_now(signum: int) -> None:
    """Leave at once with 128 + signum, without the interpreter's teardown (pool workers)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + signum)
