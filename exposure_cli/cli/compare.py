"""`exposure compare`: the regression check of a table against a committed one."""

from __future__ import annotations

from typing import Optional

import typer

from .app import app, console


@app.command()
def compare(
    run_dir: str = typer.Argument(..., help="A run output directory (with summary.json), a summary.json, or a "
                                  "directory of kept runs (`exposure keep`)."),
    reference: str = typer.Argument(..., help="The reference summary.json, e.g. results/smoke.json."),
    tol: float = typer.Option(0.5, min=0, help="Largest allowed difference of a cell's mean, in ×100 points."),
    delta_tol: Optional[float] = typer.Option(None, min=0, help="Largest allowed difference of a method's "
                                              "difference to baseline and of its interval's ends, ×100; default "
                                              "--tol. A flipped significance mark always fails."),
):
    """Check a run's table against a committed reference: exit 1 and list every cell that drifted."""
    from ..report import summary as report
    from .report import load_summary

    problems = report.compare(load_summary(run_dir), report.load_summary(reference), tol, delta_tol)
    if problems:
        for p in problems:
            console.print(f"[red]✗[/] {p}", highlight=False)
        raise typer.Exit(1)
    d = tol if delta_tol is None else delta_tol
    console.print(f"[green]✓[/] every cell within {tol} and every difference to baseline within {d} of {reference}",
                  highlight=False)
