"""The `exposure` command line: one sub-command per user task, each a thin layer over a module."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from .errors import UserError

app = typer.Typer(
    help="Exposure-bias experiments for UniLM seq2seq models: prepare data, train with a method, "
    "decode with beam search, score, and tabulate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Fetch the upstream files and build the train/dev/test splits.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print speed ratios against a peer implementation.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")

console = Console()
err_console = Console(stderr=True)


def main() -> None:
    """Console-script entry point: a UserError becomes one line on stderr and exit code 2."""
    try:
        app()
    except UserError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
