"""The `exposure` command line: one module per command group, each a thin layer over the package."""

from . import (bench, campaign, compare, data, decode, diagnose, experiment, export, gpu_check,  # noqa: F401
               leaderboard, ls, power, report, score, screen)  # (commands register)
from .app import app, main  # noqa: F401
