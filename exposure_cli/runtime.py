"""Where and how computation runs: the device, torch's threads, the progress display."""

from __future__ import annotations

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .errors import UserError

def check_device_option(device: str | None) -> torch.device | None:
    """The device an option names (None for `auto`), checked for its form only: what the machine has
    is `resolve_device`'s question, asked where the run trains (a Ray worker, not the driver)."""
    if device in (None, "auto"):
        return None
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"--device {device!r}: expected cpu, cuda, cuda:N or auto") from None
    if d.type not in ("cpu", "cuda"):
        raise UserError(f"--device {device!r}: expected cpu, cuda, cuda:N or auto")
    return d


def resolve_device(device: str | None) -> torch.device:
    """`auto` is CUDA when available, else CPU; an unusable device is a user error, not a crash later."""
    d = check_device_option(device)
    if d is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if d.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine (use cpu or auto)")
    if d.type == "cuda" and d.index is not None and d.index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return d


def set_threads(threads: int | None) -> None:
    """torch's CPU threads; 0 or None keeps torch's default (every core)."""
    if threads:
        torch.set_num_threads(threads)


def make_progress(console=None, transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, transient=transient,
    )
