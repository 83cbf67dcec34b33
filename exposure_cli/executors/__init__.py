"""Executors behind one small interface (`base.Executor`), registered by name: `serial` and `pool`
on this machine, `ray` on a Ray cluster (imported only when chosen)."""

from .base import EXECUTORS, Executor, GridDisplay, RunTask, StatusFile, execute  # noqa: F401
from . import local  # noqa: F401  (registration)

EXECUTORS.add("ray", "exposure_cli.executors.ray:RayExecutor")
