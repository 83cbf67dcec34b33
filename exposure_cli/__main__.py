"""`python -m exposure_cli` and the `exposure` script.

A signal during start-up (importing torch and the commands takes a second or more) exits at once
with 128 + its number and the usual message: nothing has been written yet. Before, Ctrl-C there
could land inside numpy's import and end in an ImportError traceback (exit 1). `main()` then
installs the handling that lets a run save its place (stop.py)."""

from . import stop


def run() -> None:
    stop.install(outside=stop.leave)
    from .cli import main

    main()


if __name__ == "__main__":
    run()
