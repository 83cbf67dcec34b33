"""`exposure table` and `exposure plot`: an experiment's summary as a table (alone or beside the
article's), and as figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from .app import app, console, err_console

SOURCE_HELP = ("An output directory of `exposure run` (with summary.json), a summary.json file, or a directory of "
               "kept runs (`exposure keep`; summarised afresh from their predictions).")


def load_summary(source: str) -> dict:
    """The summary of an output directory, a summary.json, or a directory of kept runs without a
    summary.json (summarised from the runs' predictions: nothing but today's code decides its
    intervals)."""
    from ..report import summary as report

    path = Path(source)
    if path.is_dir() and not (path / "summary.json").exists() and any(path.glob("*/seed*/spec.yaml")):
        from ..runner.grid import rebuild_summary  # pulls in torch: only when there is no summary to read

        return rebuild_summary(path)
    return report.load_summary(path)
PAPER_HELP = "The article's table to set beside ours: csl or lcsts."


@app.command()
def table(
    source: str = typer.Argument(..., metavar="RUN_DIR_OR_JSON", help=SOURCE_HELP),
    paper: Optional[str] = typer.Option(None, "--paper", help=PAPER_HELP + " For every method × beam: our cell, "
                                        "the article's, both differences to baseline (ours with its 95% interval) "
                                        "and whether their signs agree."),
    format_: str = typer.Option("md", "--format", "-f", help="md, csv, json or latex (booktabs)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file (atomically) instead "
                                          "of printing."),
    runs: bool = typer.Option(False, "--runs", help="Also every run's own scores at each beam, its selected epoch "
                              "and (given the output directory) its wall-clock seconds; with json, the summary "
                              "gains a 'seconds' list."),
):
    """Print an experiment's table, alone or (--paper) beside the article's.

    Alone: scores (mean ± std over seeds) and differences to baseline, as in table.md; --format json
    is then the summary itself. With --paper: for each metric, a group of our cell, the article's,
    both differences to baseline and whether their signs agree."""
    from .. import fileio
    from ..report import tables
    from ..report.paper import check_paper

    if format_ not in tables.WRITERS:
        raise UserError(f"--format {format_}: expected one of {', '.join(tables.WRITERS)}")
    if paper is not None:
        check_paper(paper)
    summary = load_summary(source)
    seconds = _seconds(Path(source)) if runs and Path(source).is_dir() else None
    if paper is not None:
        text = tables.WRITERS[format_](tables.paper_matrix(summary, paper))
    elif format_ == "json":
        text = json.dumps({**summary, **({"seconds": seconds} if seconds else {})}, ensure_ascii=False, indent=2) + "\n"
    else:
        text = tables.WRITERS[format_](tables.summary_matrix(summary))
    if runs and format_ in ("md", "latex", "csv"):
        text += ("\n" if format_ != "csv" else "") + tables.WRITERS[format_](tables.runs_matrix(summary, seconds))
    if output is None:
        typer.echo(text, nl=False)
        return
    fileio.write_text(output, text)
    err_console.print(f"wrote {output}", highlight=False)


def _seconds(out_dir: Path) -> list[dict]:
    """Each finished run's wall-clock seconds, from its metrics.json (summary.json keeps none)."""
    from .. import fileio
    from ..report.summary import SECONDS
    from ..runner import rundir

    out = []
    for run in rundir.finished_runs(out_dir):
        m = fileio.read_json(run / rundir.METRICS)
        out.append({"method": m.get("method"), "seed": m.get("seed"),
                    **{k: m.get(k) for k in SECONDS}})
    return out


@app.command()
def plot(
    source: str = typer.Argument(..., metavar="RUN_DIR_OR_JSON", help=SOURCE_HELP + " The dev-BLEU curves need "
                                 "the directory (they read each run's train.jsonl)."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the PNG files."),
    paper: Optional[str] = typer.Option(None, "--paper", help=PAPER_HELP + " Default: from the experiment's name "
                                        "when it contains csl or lcsts."),
):
    """Write PNG figures of an experiment: scores by beam, differences beside the article's, dev BLEU.

    beam_<metric>.png: each metric against beam size, a line per method, with 95% interval bars;
    deltas_vs_article.png: each method's difference to baseline beside the article's; dev_bleu.png:
    every run's dev BLEU per epoch (needs the output directory)."""
    from ..report import plots
    from ..report.paper import check_paper, guess_paper

    summary = load_summary(source)
    paper_name = check_paper(paper) if paper is not None else guess_paper(summary["name"])
    run_root = Path(source) if Path(source).is_dir() else None
    written, notes = plots.write_plots(summary, out, paper_name, run_root)
    for note in notes:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)
    for path in written:
        console.print(f"wrote {path}", highlight=False)


@app.command()
def keep(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="An output directory of `exposure run`."),
    dest: Path = typer.Argument(..., metavar="DEST", help="Where to copy the small outputs, e.g. results/csl-cpu."),
):
    """Copy each finished run's small outputs to DEST, so that the tables rebuild without checkpoints.

    Per run (<method>/seed<k>/): metrics.json, spec.yaml, train.jsonl, and diagnostics.json (where
    `exposure diagnose` measured it) and predictions.beam<k>.tsv with the source column emptied (the
    sources are the test split's, line for line), those two xz-compressed. `exposure table DEST`, `plot`,
    `compare`, `power` and `diagnose --recorded` then summarise DEST afresh from them. About 100 KB a
    run (a CSL run of 498 test titles). DEST may be RUN_DIR itself, or a directory an older version
    kept (uncompressed, or gzipped): it is recompressed in place."""
    from ..runner.grid import keep_small_outputs

    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a directory (expected an output directory of `exposure run`)")
    written = keep_small_outputs(run_dir, dest)
    size = sum(p.stat().st_size for p in written)
    err_console.print(f"kept {len(written)} files ({size / 1e6:.1f} MB) in {dest}", highlight=False)
