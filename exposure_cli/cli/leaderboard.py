"""`exposure leaderboard`: every method of a grid beside baseline (exposure_cli/leaderboard.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, console, err_console


@app.command()
def leaderboard(
    source: Path = typer.Argument(..., metavar="SOURCE", help="An output directory of `exposure run`, or a "
                                  "directory of kept runs (`exposure keep`): the runs' metrics, predictions, "
                                  "training logs and (where `exposure diagnose` measured them) diagnostics.json."),
    output_dir: Path = typer.Option(Path("results"), "--output-dir", help="Where to write the three files."),
    name: str = typer.Option("leaderboard", "--name", help="Their name: <name>.md, <name>.json, <name>.png."),
    wall_seconds: Optional[float] = typer.Option(None, "--wall-seconds", min=0, help="The grid's wall time, "
                                                 "to state beside it; default SOURCE/wall.json, which `exposure "
                                                 "run` keeps over all its invocations on the grid."),
):
    """Set every method beside baseline: per beam ΔRouge-L and ΔBLEU with their paired 95% intervals,
    the ranks the intervals allow, training cost per step (warm starts included) and diagnostics.

    Rows are ordered by the ΔRouge-L estimate at the first beam; a rank is claimed only where the
    interval of two methods' paired difference excludes 0 (docs/methods.md, "Leaderboard")."""
    from ..errors import UserError
    from ..report import leaderboard as lb
    from ..runner import rundir

    if not name or "/" in name or name.startswith("."):
        raise UserError(f"--name {name!r}: expected a file name without a directory, e.g. leaderboard")
    board = lb.build(lb.load_grid(source), wall_seconds if wall_seconds is not None else
                     (rundir.read_wall(source) or {}).get("seconds"))
    for path in lb.write(board, output_dir, name):
        console.print(f"wrote {path}", highlight=False)
    if any(e["diagnostics"] == lb.NOT_MEASURED for e in board["methods"]):
        err_console.print("note: some methods have no diagnostics.json (run `exposure diagnose` on the runs "
                          "before `exposure keep`): their diagnostics say 'not measured'", highlight=False)
