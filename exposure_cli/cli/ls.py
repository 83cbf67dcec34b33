"""`exposure ls`: what a spec can use, read from the packaged specs and the plug-in families."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import UserError

from .app import app, console


@app.command("ls")
def ls(
    what: Optional[str] = typer.Argument(None, help="Only this part: specs, methods, or another family of "
                                         "plug-ins (diagnostics, executors, inits, strategies, tokenizers)."),
):
    """List what a spec can use: the packaged specs, every method with each parameter's default and
    meaning, and the names of every other family of plug-ins (decode strategies, executors,
    tokenizers, model initialisations, diagnostics)."""
    from ..registry import families
    from ..spec import packaged_specs

    parts = {"specs": _ls_specs, "methods": _ls_methods}
    parts.update({name: _ls_family(name, reg) for name, reg in families().items() if name not in parts})
    if what is not None and what not in parts:
        raise UserError(f"{what}: expected one of {', '.join(parts)}")
    for key, show in parts.items():
        if what in (None, key):
            show() if key != "specs" else show(packaged_specs())


def _ls_specs(specs: dict) -> None:
    t = Table(title="specs (exposure run NAME; ./experiments first, then the packaged ones)")
    t.add_column("name")
    t.add_column("what")
    for name, path in specs.items():
        t.add_row(name, _first_comment(path))
    console.print(t)


def _first_comment(path: Path) -> str:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").rstrip())
    return " ".join(lines).split(". ")[0][:160]


def _ls_methods() -> None:
    from ..methods import METHODS
    from ..typed import describe

    t = Table(title="methods (methods: [name, {name: {param: value}}])")
    for col in ("method", "parameter", "default", "meaning"):
        t.add_column(col, overflow="fold")
    for name in METHODS.names():
        cls = METHODS.get(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        params = describe(cls)
        if not params:
            t.add_row(name, "", "", doc)
        for i, f in enumerate(params):
            meaning = f.help + (f" ({' | '.join(f.choices)})" if f.choices else "")
            t.add_row(name if i == 0 else "", f.name, str(f.default), meaning)
    console.print(t)


def _ls_family(name: str, registry):
    def show() -> None:
        console.print(f"[bold]{name}:[/] {', '.join(registry.names())}", highlight=False)

    return show
