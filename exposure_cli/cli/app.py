"""The Typer application every command group attaches to, and the error boundary: a `UserError`
anywhere below becomes one line on stderr and exit code 2, Ctrl-C exit code 130 and SIGTERM 143
(`stop.py`: a run in training saves last.pt first), no traceback."""

from __future__ import annotations

import errno
import os
import sys

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from .. import stop
from ..errors import UserError

# Click's exception classes, wherever this Typer takes click from (recent Typers vendor it).
_UsageError = typer.BadParameter.__mro__[1]
_ClickException = _UsageError.__mro__[1]

console = Console()
err_console = Console(stderr=True)
# Command modules import nothing heavy (torch) at module level: `exposure --help` stays instant and
# a Ctrl-C during start-up lands in `main`'s handler.
DEVICE_HELP = "cpu, cuda, cuda:N, or auto (CUDA when available)."


def error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


class _Group(TyperGroup):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Click's usage errors (a missing argument, a value out of range) as one line too."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as a request for it
                console.print(e.ctx.get_help(), highlight=False)
                sys.exit(0)
            where = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
            error(e.format_message().replace("\n", " ") + where)
            sys.exit(2)
        except typer.Abort as e:
            sys.exit(_say_stopped(e.__cause__))
        except _ClickException as e:
            error(e.format_message().replace("\n", " "))
            sys.exit(e.exit_code)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            error(str(e))
            ctx.exit(2)
        except KeyboardInterrupt as e:
            ctx.exit(_say_stopped(e))
        except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as e:
            error(f"{e.filename or ''}: {e.strerror}".lstrip(": "))
            ctx.exit(2)
        except OSError as e:  # a full disk met outside the atomic writes (a log line); those say it themselves
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            from ..fileio import disk_full

            error(str(disk_full(e.filename)) if e.filename else "no space left on a filesystem this command writes "
                  "to; nothing was half-written: free some space and rerun the same command to resume")
            ctx.exit(2)


app = typer.Typer(
    cls=_Group,
    help="Exposure-bias experiments for UniLM seq2seq models: prepare data, train with a method, "
    "decode with beam search, score, tabulate, and measure the bias.\n\n"
    "A typical session: `exposure data fetch`, `exposure data prepare`, then `exposure run csl.yaml` "
    "(a bare name is looked up in ./experiments and among the packaged specs; `exposure ls` lists "
    "them with every method and its parameters). Each command's --help says more.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        console.print(f"exposure {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Exposure-bias experiments for UniLM seq2seq models."""


def _say_stopped(e: BaseException | None) -> int:
    """The one line a stop by signal prints (what was saved, how to resume); its exit code."""
    code = stop.exit_code(e)
    err_console.print(stop.message(code), highlight=False)
    return code


def main() -> None:
    """Console-script entry point."""
    stop.install()  # SIGTERM (a scheduler's preemption) is handled as Ctrl-C is
    try:
        app()
    except KeyboardInterrupt as e:  # before a command started (click's own handling prints "Aborted!")
        code = _say_stopped(e)
    except SystemExit as e:
        if e.code not in stop.EXIT_CODES:
            raise
        code = e.code
    else:
        return
    # A Ctrl-C that lands while an extension runs Python code (torch's import does) is flagged by
    # CPython 3.11 as unhandled even though it was handled here, and the interpreter then kills
    # itself with SIGINT on the way out instead of exiting 130. Every file is complete already
    # (atomic writes, locks released by the kernel), so leave without the interpreter's teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
