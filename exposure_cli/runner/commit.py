"""Commit kept runs to git as they finish (`exposure run --keep --commit`, `exposure campaign
--commit`): work longer than a sitting then loses at most the runs under way when it is stopped."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import UserError
from ..report.summary import outcome_line
from . import rundir
from .grid import is_kept


class Committer:
    """Commits each kept run (and the campaign's state) to the git work tree KEEP lies in, one run
    at a time, so that a campaign (or `exposure run --keep --commit`) stopped anywhere loses at most
    the runs under way. Messages start with `prefix`."""

    def __init__(self, keep: Path, say=print, prefix: str = "campaign"):
        self.say, self.prefix, self.keep = say, prefix, keep
        keep.mkdir(parents=True, exist_ok=True)
        top = self._git(["rev-parse", "--show-toplevel"], keep)
        if top.returncode != 0:
            raise UserError(f"--commit: {keep} is not inside a git work tree")
        self.root = Path(top.stdout.strip())

    @staticmethod
    def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)

    def commit(self, path: Path, message: str) -> None:
        """Commit `path` and KEEP's wall clock (the grid's wall time so far), whichever changed."""
        paths = [p for p in (Path(path), self.keep / rundir.WALL) if p.exists()]
        rel = [str(p.resolve().relative_to(self.root.resolve())) for p in paths]
        if not rel:
            return
        self._git(["add", "--", *rel], self.root)
        if self._git(["diff", "--cached", "--quiet", "--", *rel], self.root).returncode == 0:
            return  # nothing new
        done = self._git(["commit", "-q", "-m", message, "--", *rel], self.root)
        if done.returncode != 0:
            self.say(f"warning: git commit of {' '.join(rel)} failed ({done.stderr.strip()}); the files are on disk")

    def run_finished(self, task, result: dict) -> None:
        if "failed" not in result and task.keep and is_kept(Path(task.keep)):
            self.commit(Path(task.keep), f"{self.prefix}: {task.label} seed {task.seed} kept ({outcome_line(result)})")
