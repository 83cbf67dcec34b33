"""`exposure generate` (decode new sources with a finished run) and `exposure demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from .app import DEVICE_HELP, app, console, err_console


def _check_strategy(strategy: str) -> None:
    from ..decode.beam import STRATEGIES

    STRATEGIES.get(strategy, "--strategy")


@app.command()
def generate(
    run_dir: Path = typer.Argument(..., help="A run directory holding spec.yaml, vocab.txt and best.pt."),
    beam: Optional[int] = typer.Option(None, "--beam", "-k", min=1, help="Beam size; default the largest of the spec's decode.beams."),
    n_best: int = typer.Option(1, "--n-best", "-n", min=1,
                               help="Hypotheses per source. With N > 1 each output line holds up to N predictions, "
                               "best first, separated by tabs (fewer when the search found fewer)."),
    input_: str = typer.Option("-", "--input", "-i", help="Sources, one per line; - reads standard input."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write predictions here (default standard output)."),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="study or standard; default the spec's decode.strategy."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
):
    """Decode sources with a run's selected weights (best.pt): one output line per input line."""
    import sys

    from .. import fileio
    from ..decode.generate import generate_lines, load_run
    from ..runtime import resolve_device

    if strategy is not None:
        _check_strategy(strategy)
    dev = resolve_device(device)
    model, tok, spec = load_run(run_dir, dev)
    k = beam or max(spec.decode.beams)
    if (strategy or spec.decode.strategy) == "standard" and n_best > k:
        raise UserError(f"--n-best {n_best}: at most the beam ({k}) with the standard strategy")
    text = sys.stdin.read() if input_ == "-" else fileio.read_text(input_, "input file")
    sources = text.splitlines()
    lines = generate_lines(model, tok, spec, sources, k, n_best, dev, strategy)
    out = "".join(line + "\n" for line in lines)
    if output is None:
        sys.stdout.write(out)
    else:
        fileio.write_text(output, out)
        err_console.print(f"{len(lines)} predictions (beam {k}) → {output}", highlight=False)


@app.command()
def demo(
    strategy: str = typer.Option("study", "--strategy", help="study (the article's search) or standard."),
):
    """Walk through the article's example of beam search going wrong: beam 1 outputs the target (a, b),
    beam 2 the wrong (c, d), step by step."""
    from ..decode.demo import render

    _check_strategy(strategy)
    render(console, strategy=strategy)
