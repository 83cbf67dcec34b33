"""Word-level Rouge over jieba words: equal to rouge-score run on text segmented here, present in
`exposure score` and in the summary beside (never instead of) the study's character-level scores."""

import json
import logging
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from exposure_cli import metrics
from exposure_cli.report import summary as report
from exposure_cli.report import tables
from exposure_cli.cli import app

ROOT = Path(__file__).resolve().parents[1]


def truth(preds, refs):
    """Independent: segment with jieba here, hand rouge-score pre-split text and a whitespace tokenizer."""
    import jieba
    from rouge_score import rouge_scorer

    jieba.setLogLevel(logging.WARNING)

    class Whitespace:
        @staticmethod
        def tokenize(text):
            return text.split()

    def seg(t):
        return " ".join(w for w in jieba.cut(t.lower()) if not w.isspace())

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=Whitespace())
    scores = [scorer.score(seg(r), seg(p)) for p, r in zip(preds, refs)]
    return {f"word_rouge_{k}": 100 * float(np.mean([s[f"rouge{k.upper()}"].fmeasure for s in scores]))
            for k in ("1", "2", "l")}


@pytest.fixture(scope="module")
def pairs(prepared_data):
    titles = [line.split("\t")[0] for line in (prepared_data / "csl" / "test.tsv").read_text(encoding="utf-8")
              .splitlines()[:150]]
    rng = random.Random(0)
    preds = []
    for i, t in enumerate(titles):
        kind = i % 5
        if kind == 0:
            preds.append(t)  # exact
        elif kind == 1:
            preds.append(t[: rng.randrange(len(t) + 1)])  # truncated, sometimes empty
        elif kind == 2:
            preds.append(titles[(i + 7) % len(titles)])  # another title
        elif kind == 3:
            preds.append(t[::-1])  # same characters, other words
        else:
            preds.append(t.upper() + " 的 研究  ")  # case, spaces
    return preds, titles


def test_word_rouge_equals_rouge_score_on_jieba_words(pairs):
    preds, refs = pairs
    ours = metrics.word_scores(preds, refs)
    assert set(ours) == set(report.WORD_METRICS)
    expected = truth(preds, refs)
    for key in report.WORD_METRICS:
        assert ours[key] == pytest.approx(expected[key], abs=1e-9), key
    # words, not characters: a reversed title keeps every character but hardly any word
    assert ours["word_rouge_1"] < metrics.study_scores(preds, refs)["rouge_1"]


def test_word_rouge_edge_cases():
    out = metrics.word_scores(["", "深度学习", "Deep Learning"], ["深度学习方法", "深度学习", "deep learning"])
    # empty → 0; identical → 1; case-folded identical → 1 (mean 2/3)
    assert out["word_rouge_1"] == pytest.approx(200 / 3) and out["word_rouge_l"] == pytest.approx(200 / 3)
    assert metrics.word_tokens("深度 学习 ABC") == ["深度", "学习", "abc"]


def test_cli_score_shows_word_columns_and_jieba_stays_quiet(tmp_path):
    tsv = tmp_path / "predictions.beam1.tsv"
    tsv.write_text("source\treference\tprediction\n正文\t基于深度学习的方法\t深度学习方法\n正文\tabd\tABCD\n",
                   encoding="utf-8")
    # A fresh interpreter: jieba's first use would print its banner there, if it were not silenced.
    r = subprocess.run([sys.executable, "-m", "exposure_cli", "score", "--pred", str(tsv), "--json"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    out = json.loads(r.stdout)
    expected = truth(["深度学习方法", "ABCD"], ["基于深度学习的方法", "abd"])
    for key in report.WORD_METRICS:
        assert out[key] == pytest.approx(expected[key])
    assert out["rouge_l"] == pytest.approx(metrics.study_scores(["深度学习方法", "ABCD"], ["基于深度学习的方法", "abd"])["rouge_l"])
    table = CliRunner().invoke(app, ["score", "--pred", str(tsv)], terminal_width=200)
    assert table.exit_code == 0 and "jieba words" in table.stdout and f"{out['word_rouge_1']:.2f}" in table.stdout


def _run(method, seed, value, words=True):
    cell = {m: value for m in report.METRICS}
    if words:
        cell.update({m: value / 2 for m in report.WORD_METRICS})
    return {"method": method, "seed": seed, "test": {"1": cell}}


def test_summary_rows_average_word_scores_beside_the_headline():
    s = report.summarize("x", [_run("baseline", 0, 40.0), _run("baseline", 1, 42.0), _run("gp", 0, 50.0, words=False)],
                         ["baseline", "gp"], [1])
    base, gp = s["rows"]
    assert (base["word_rouge_l"], base["word_rouge_l_std"]) == (20.5, round(0.5 * 2 ** 0.5, 4))
    assert base["rouge_l"] == 41.0 and "word_rouge_l" not in gp  # an older run: no word columns, no error
    md = tables.markdown(tables.summary_matrix(s))
    assert "Word-level Rouge (jieba):" in md and "| method | beam | Rouge-L (words) | Rouge-1 (words) | Rouge-2 (words) |" in md
    assert "| baseline | 1 | 20.50 ± 0.71 | 20.50 ± 0.71 | 20.50 ± 0.71 |" in md
    assert "| baseline | 1 | 41.00 ± 1.41 | 41.00 ± 1.41 | 41.00 ± 1.41 | 41.00 ± 1.41 | 2 |" in md
    header = tables.csv_text(tables.summary_matrix(s)).splitlines()[0].split(",")
    assert header[:4] == ["method", "beam", "rouge_l", "rouge_l_std"] and "word_rouge_l" in header
    # without word scores anywhere, the table is as before
    plain = report.summarize("x", [_run("baseline", 0, 40.0, words=False)], ["baseline"], [1])
    assert "words" not in tables.markdown(tables.summary_matrix(plain))
