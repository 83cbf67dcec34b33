"""The `exposure` command line: one module per command group, each a thin layer over the package."""

from . import (bench, compare, data, decode, diagnose, experiment, export, gpu_check, leaderboard, ls,  # noqa: F401
               power, report, score)  # (commands register)
from .app import app, main  # noqa: F401
