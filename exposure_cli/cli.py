"""The `exposure` command line: one sub-command per user task, each a thin layer over a module."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

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


def _exit_2_on_user_error(fn):
    """Give a command main()'s UserError contract (one line on stderr, exit 2) also when the app is
    invoked directly, as tests and `python -m` do."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from e

    return wrapper


PREDICTIONS_HEADER = ["source", "reference", "prediction"]


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    # Split on "\n" only: str.splitlines would also break on characters like U+2028 inside a text.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _read_texts(path: Path, column: str) -> tuple[list[str], bool]:
    """The texts of `path` and whether it was a predictions TSV: either one text per line, or a
    run's predictions TSV (header `source<TAB>reference<TAB>prediction`), from which `column`."""
    lines = _read_lines(path)
    if lines and lines[0].split("\t") == PREDICTIONS_HEADER:
        k = PREDICTIONS_HEADER.index(column)
        texts = []
        for number, line in enumerate(lines[1:], start=2):
            fields = line.split("\t")
            if len(fields) != 3:
                raise UserError(f"{path}:{number}: expected 3 tab-separated fields, found {len(fields)}")
            texts.append(fields[k])
        return texts, True
    if path.suffix == ".tsv":
        raise UserError(f"{path}: a .tsv must start with the header {chr(9).join(PREDICTIONS_HEADER)!r}")
    return lines, False


@app.command(
    help="Score predictions against references.\n\n"
    "Study mode (Rouge-L, Rouge-1, Rouge-2, BLEU) reproduces the study's scripts exactly: each text "
    "is split into characters joined by spaces and lower-cased, then scored as `rouge==1.0.0` and "
    "nltk's sentence_bleu (method1 smoothing) score it, averaged over examples; an empty prediction "
    "scores 0. The standard scorers beside it, for comparison with other work, are sacrebleu's corpus "
    "BLEU (tokenize=zh) and rouge-score's Rouge-L F over characters.\n\n"
    "--pred and --ref are text files with one text per line, or a run's predictions.beam{k}.tsv "
    "(prediction column for --pred, reference column for --ref). Given such a TSV, --ref may be "
    "left out to use its own reference column. All scores are x100."
)
@_exit_2_on_user_error
def score(
    pred: Path = typer.Option(..., "--pred", help="Predictions: one per line, or a predictions TSV."),
    ref: Optional[Path] = typer.Option(None, "--ref", help="References: one per line, or a predictions TSV."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    from . import metrics

    preds, pred_is_tsv = _read_texts(pred, "prediction")
    if ref is None:
        if not pred_is_tsv:
            raise UserError(f"--ref is required: {pred} is not a predictions TSV with a reference column")
        ref_path, refs = pred, _read_texts(pred, "reference")[0]
    else:
        ref_path, refs = ref, _read_texts(ref, "reference")[0]
    if len(preds) != len(refs):
        raise UserError(f"{pred} has {len(preds)} predictions but {ref_path} has {len(refs)} references")
    if not preds:
        raise UserError(f"{pred}: nothing to score")

    result = metrics.study_scores(preds, refs)
    result.update(metrics.standard_scores(preds, refs))
    keys = ["rouge_l", "rouge_1", "rouge_2", "bleu", "sacrebleu", "rouge_score_l", "n"]
    if as_json:
        typer.echo(json.dumps({k: result[k] for k in keys}))
        return
    table = Table(title=f"{pred} ({result['n']} examples)")
    table.add_column("metric")
    table.add_column("score", justify="right")
    table.add_column("scorer")
    for key, label, scorer in [
        ("rouge_l", "Rouge-L", "study"),
        ("rouge_1", "Rouge-1", "study"),
        ("rouge_2", "Rouge-2", "study"),
        ("bleu", "BLEU", "study"),
        ("sacrebleu", "BLEU", "sacrebleu, tokenize=zh"),
        ("rouge_score_l", "Rouge-L", "rouge-score, characters"),
    ]:
        table.add_row(label, f"{result[key]:.2f}", scorer)
    console.print(table)


@bench_app.command(
    "score",
    help="Time study-mode scoring against rouge==1.0.0 + nltk (what the study ran) on the same n "
    "deterministic pairs: titles against perturbed copies. Needs `pip install rouge==1.0.0 nltk`.",
)
@_exit_2_on_user_error
def bench_score(
    n: int = typer.Option(1000, "--n", min=1, help="Number of (prediction, reference) pairs."),
    titles: Optional[Path] = typer.Option(
        None, "--titles", help="Take references from the first column of this TSV instead of built-in synthetic titles."
    ),
    repeat: int = typer.Option(3, "--repeat", min=1, help="Best of this many timings per side."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    from .metrics_bench import bench_score as run

    title_list = None
    if titles is not None:
        title_list = [line.split("\t")[0] for line in _read_lines(titles) if line.split("\t")[0].strip()]
        if not title_list:
            raise UserError(f"{titles}: no titles in the first column")
    result = run(n=n, repeat=repeat, titles=title_list)
    if as_json:
        typer.echo(json.dumps({k: result[k] for k in ("ours_s", "reference_s", "ratio", "n")}))
        return
    table = Table(title=f"study-mode scoring, {n} pairs (best of {repeat})")
    table.add_column("implementation")
    table.add_column("seconds", justify="right")
    table.add_row("exposure (ours)", f"{result['ours_s']:.4f}")
    table.add_row("rouge 1.0.0 + nltk", f"{result['reference_s']:.4f}")
    console.print(table)
    console.print(f"ratio {result['ratio']:.1f}x; largest per-example difference {result['max_abs_diff']:.2g}")
