"""The `exposure` command line: one module per command group, each a thin layer over the package."""

from . import bench, data, decode, experiment, export, score  # noqa: F401  (commands register on import)
from .app import app, main  # noqa: F401
