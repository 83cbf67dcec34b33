"""The predictions file a run writes for each beam, and reading texts for scoring.

`predictions.beam{k}.tsv`: a header `source<TAB>reference<TAB>prediction`, then one example a line.
Tabs and line breaks inside a text become spaces, so every row has exactly three fields.
`hypotheses.beam{k}.jsonl` beside it: per example, the decoder's answer as token ids with its score
(Σ log(p + 1e-12)) and whether it ended in [SEP], for diagnostics that need the decoder's own view.
"""

from __future__ import annotations

from pathlib import Path

from .. import fileio
from ..errors import UserError

HEADER = ["source", "reference", "prediction"]


def _one_line(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


def predictions_text(sources: list[str], refs: list[str], preds: list[str]) -> str:
    rows = ["\t".join(HEADER)] + ["\t".join(_one_line(x) for x in row) for row in zip(sources, refs, preds)]
    return "\n".join(rows) + "\n"


def write_predictions(path: Path, sources: list[str], refs: list[str], preds: list[str]) -> None:
    fileio.write_text(path, predictions_text(sources, refs, preds))


def write_hypotheses(path: Path, hyps) -> None:
    """One JSON object a line: {"tokens": [...], "score": ..., "finished": ...} of each best hypothesis."""
    import json

    lines = [json.dumps({"tokens": h.tokens, "score": h.score, "finished": h.finished}) for h in hyps]
    fileio.write_text(path, "".join(line + "\n" for line in lines))


def read_lines(path: Path) -> list[str]:
    text = fileio.read_text(path)
    # Split on "\n" only: str.splitlines would also break on characters like U+2028 inside a text.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_columns(path: Path) -> dict[str, list[str]] | None:
    """The columns of a predictions TSV, or None when `path` is not one (no header)."""
    lines = read_lines(path)
    if not lines or lines[0].split("\t") != HEADER:
        return None
    cols: dict[str, list[str]] = {h: [] for h in HEADER}
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 3:
            raise UserError(f"{path}:{number}: expected 3 tab-separated fields, found {len(fields)}")
        for h, f in zip(HEADER, fields):
            cols[h].append(f)
    return cols


def read_texts(path: Path, column: str) -> tuple[list[str], bool]:
    """The texts of `path` and whether it was a predictions TSV: either one text per line, or a
    run's predictions TSV, from which `column`."""
    cols = read_columns(path)
    if cols is not None:
        return cols[column], True
    if Path(path).suffix == ".tsv":
        raise UserError(f"{path}: a .tsv must start with the header {chr(9).join(HEADER)!r}")
    return read_lines(path), False
