"""`exposure screen`: the ablation screen's table — how each toggle changes each method's effect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from .app import app, err_console


@app.command()
def screen(
    reference: Path = typer.Argument(..., help="The reference experiment (an output directory or kept runs), "
                                     "e.g. results/study-cpu."),
    toggles: list[str] = typer.Argument(..., metavar="NAME=DIR...", help="Each toggled experiment as name=directory, "
                                        "e.g. label-smoothing=results/screen-cpu/label-smoothing."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the markdown table here (and the "
                                          "JSON beside it, .json) instead of printing it."),
):
    """For every toggle, method and beam: the method's difference to baseline in the reference and in
    the toggled experiment, and the change the toggle makes to it, with 95% intervals (seeds ×
    test examples, paired by seed and example; docs/cpu-profile.md, "Ablation screen")."""
    from .. import fileio
    from ..report.tables import markdown
    from ..runner.screen import matrix
    from ..runner.screen import screen as run_screen

    pairs = {}
    for t in toggles:
        name, sep, path = t.partition("=")
        if not sep or not name or not path:
            raise UserError(f"{t!r}: expected NAME=DIR, e.g. label-smoothing=results/screen-cpu/label-smoothing")
        pairs[name] = Path(path)
    result = run_screen(reference, pairs)
    text = markdown(matrix(result))
    if output is None:
        typer.echo(text)
        return
    fileio.write_text(output, text)
    fileio.write_text(output.with_suffix(".json"), json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    err_console.print(f"wrote {output} and {output.with_suffix('.json')}", highlight=False)
