"""`exposure score`: the study's metrics (and standard ones) for any predictions file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import UserError
from .app import app, console


@app.command(
    help="Score predictions against references.\n\n"
    "Study mode (Rouge-L, Rouge-1, Rouge-2, BLEU) reproduces the study's scripts exactly: each text "
    "is split into characters joined by spaces and lower-cased (unless --no-lowercase), then scored as `rouge==1.0.0` and "
    "nltk's sentence_bleu (method1 smoothing) score it, averaged over examples; an empty prediction "
    "scores 0. The standard scorers beside it, for comparison with other work, are sacrebleu's corpus "
    "BLEU (tokenize=zh) and rouge-score's Rouge-L F over characters. Word-level Rouge-1/2/L "
    "(rouge-score F over jieba words of the lower-cased texts, as Chinese summarisation papers "
    "report) come last, as an extra; the study's character-level scores stay the headline.\n\n"
    "--pred and --ref are text files with one text per line, or a run's predictions.beam{k}.tsv "
    "(prediction column for --pred, reference column for --ref). Given such a TSV, --ref may be "
    "left out to use its own reference column. All scores are x100."
)
def score(
    pred: Path = typer.Option(..., "--pred", help="Predictions: one per line, or a predictions TSV."),
    ref: Optional[Path] = typer.Option(None, "--ref", help="References: one per line, or a predictions TSV."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    lowercase: bool = typer.Option(True, "--lowercase/--no-lowercase",
                                   help="Lower-case texts before the study's scores (the authors' scripts did from "
                                   "September 2020 on; --no-lowercase scores as of the article, March 2020)."),
) -> None:
    from .. import metrics
    from ..decode.predictions import read_texts
    from ..report.summary import WORD_METRICS

    preds, pred_is_tsv = read_texts(pred, "prediction")
    if ref is None:
        if not pred_is_tsv:
            raise UserError(f"--ref is required: {pred} is not a predictions TSV with a reference column")
        ref_path, refs = pred, read_texts(pred, "reference")[0]
    else:
        ref_path, refs = ref, read_texts(ref, "reference")[0]
    if len(preds) != len(refs):
        raise UserError(f"{pred} has {len(preds)} predictions but {ref_path} has {len(refs)} references")
    if not preds:
        raise UserError(f"{pred}: nothing to score")

    result = metrics.study_scores(preds, refs, lowercase=lowercase)
    result.update(metrics.standard_scores(preds, refs))
    result.update(metrics.word_scores(preds, refs))
    keys = ["rouge_l", "rouge_1", "rouge_2", "bleu", "sacrebleu", "rouge_score_l", *WORD_METRICS, "n"]
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
        ("word_rouge_l", "Rouge-L", "rouge-score, jieba words"),
        ("word_rouge_1", "Rouge-1", "rouge-score, jieba words"),
        ("word_rouge_2", "Rouge-2", "rouge-score, jieba words"),
    ]:
        table.add_row(label, f"{result[key]:.2f}", scorer)
    console.print(table)
