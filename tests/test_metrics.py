"""Study-mode metrics against the packages the study used, standard scorers, bootstrap, CLI."""

from __future__ import annotations

import json
import math
import random
from importlib.metadata import version

import numpy as np
import pytest
from typer.testing import CliRunner

from bootstrap import paired_bootstrap
from exposure_cli import metrics
from exposure_cli.cli import app

KEYS = metrics.STUDY_KEYS


def truth(preds, refs):
    """Independent truth: the study's own loop (baseline.py's `evaluate`) over rouge 1.0.0 and nltk,
    one pair at a time, written here from the scripts rather than imported from the package."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge import Rouge

    rouge, smooth = Rouge(), SmoothingFunction().method1
    rows = []
    for pred, ref in zip(preds, refs):
        title, pred_title = " ".join(ref).lower(), " ".join(pred).lower()
        if not pred_title.strip():
            rows.append((0.0, 0.0, 0.0, 0.0))
            continue
        b = sentence_bleu(references=[title.split(" ")], hypothesis=pred_title.split(" "), smoothing_function=smooth)
        try:
            s = rouge.get_scores(hyps=pred_title, refs=title)[0]
        except ValueError:  # the package raises (the study would have stopped): no reference value
            rows.append((math.nan, math.nan, math.nan, b))
            continue
        rows.append((s["rouge-1"]["f"], s["rouge-2"]["f"], s["rouge-l"]["f"], b))
    table = np.array(rows, dtype=np.float64)
    return {key: table[:, k] for k, key in enumerate(KEYS)}


def titles_of(path):
    return [line.split("\t")[0] for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


EXTRAS = ["。", "，", "！", "？", "（", "）", "：", "“", "”", ".", "..", " ", "  ", "\u3000", "1", "2016",
          "3.5", "LSTM", "Deep Learning", "ΣΑΣ", "İ", "x.y", "\t"]


def perturb(title: str, rng: random.Random, pool: list[str]) -> str:
    chars = list(title)
    kind = rng.randrange(10)
    if kind == 0:
        rng.shuffle(chars)
    elif kind == 1:
        chars = chars[: rng.randrange(len(chars) + 1)]
    elif kind == 2:
        chars = [c * rng.randint(1, 3) for c in chars]
    elif kind == 3:
        for _ in range(rng.randint(1, 3)):
            chars.insert(rng.randrange(len(chars) + 1), rng.choice(EXTRAS))
    elif kind == 4:
        return rng.choice(pool)  # against another title
    elif kind == 5:
        chars = [c for c in chars if rng.random() < 0.7]
    elif kind == 6:
        for _ in range(rng.randint(1, 3)):
            if chars:
                chars[rng.randrange(len(chars))] = rng.choice(pool)[:1] or "x"
    elif kind == 7:
        return "".join(rng.choice(EXTRAS) for _ in range(rng.randint(1, 4)))  # only punctuation/space
    # kinds 8, 9: unchanged (exact matches happen too)
    return "".join(chars)


@pytest.fixture(scope="module")
def pairs(shared_data):
    raw = shared_data / "raw" / "clge"
    titles = titles_of(raw / "csl" / "test.tsv") + titles_of(raw / "lcsts" / "val.tsv")
    rng = random.Random(20240501)
    preds, refs = [], []
    for t in titles:
        preds.append(perturb(t, rng, titles))
        refs.append(t)
    # Titles against each other, and perturbed references too.
    for t in titles[:500]:
        preds.append(rng.choice(titles))
        refs.append(perturb(t, rng, titles) or t)
    edge = ["", " ", "\t", "   ", ".", "..", ". .", "a.b", "ΣΑΣ", "İstanbul", "3.14", "AI AI AI"]
    for p in edge:
        for r in ["深度学习", "a.b", "AI", "3.14 π", "..x"]:
            preds.append(p)
            refs.append(r)
    assert len(preds) >= 2000
    return preds, refs


def test_rouge_is_1_0_0():
    # 1.0.1 counts n-grams as sets: a different metric, and the study's numbers came from 1.0.0.
    assert version("rouge") == "1.0.0"


def test_equal_to_rouge_and_nltk_per_example(pairs):
    preds, refs = pairs
    ours = metrics.study_per_example(preds, refs)
    ref_scores = truth(preds, refs)
    # rouge 1.0.0 raises on exactly the texts that are "." alone (the study never met one); there
    # ours scores 0 by its own convention, which no reference can confirm: checked apart
    raised = np.isnan(ref_scores["rouge_l"])
    only_dot = np.array([" ".join(p).lower() == "." or " ".join(r).lower() == "." for p, r in zip(preds, refs)])
    assert raised.sum() >= 5 and (raised == only_dot).all()
    for k in KEYS:
        assert ours[k].shape == ref_scores[k].shape == (len(preds),)
        if k != "bleu":
            assert (ours[k][raised] == 0).all()
            ours[k][raised] = ref_scores[k][raised] = 0.0
        diff = np.abs(ours[k] - ref_scores[k])
        worst = int(diff.argmax())
        assert diff[worst] < 1e-6, (k, preds[worst], refs[worst], ours[k][worst], ref_scores[k][worst])
        assert ((0 <= ours[k]) & (ours[k] <= 1)).all()


def test_empty_prediction_is_zero():
    ours = metrics.study_per_example(["", "  ", "深度"], ["深度学习", "深度学习", "深度学习"])
    for k in KEYS:
        assert ours[k][0] == 0.0 and ours[k][1] == 0.0 and ours[k][2] > 0


def test_hand_computed_example():
    # pred "abcd", ref "abd": tokens a b c d / a b d.
    # Rouge-1: overlap 3, P = 3/4, R = 3/3, F = 2 * (0.75 * 1) / (1.75 + 1e-8).
    # Rouge-2: pred bigrams ab bc cd, ref ab bd: overlap 1 (ab), P = 1/3, R = 1/2, F = 2 * (1/6) / (5/6 + 1e-8).
    # Rouge-L: LCS "abd" (3 distinct tokens), P = 3/4 (4 distinct in pred), R = 3/3: same F as Rouge-1.
    # BLEU: p1 = 3/4, p2 = 1/3, p3 = 0/2 -> 0.1/2, p4 = 0/1 -> 0.1/1 (method1); hyp longer than ref,
    # so BP = 1; BLEU = (3/4 * 1/3 * 0.05 * 0.1) ** (1/4) = 0.00125 ** 0.25.
    ours = metrics.study_per_example(["ABCD"], ["abd"])
    f1 = 2 * (0.75 * 1.0) / (1.75 + 1e-8)
    assert ours["rouge_1"][0] == pytest.approx(f1, abs=1e-12)
    assert ours["rouge_2"][0] == pytest.approx(2 * (1 / 6) / (5 / 6 + 1e-8), abs=1e-12)
    assert ours["rouge_l"][0] == pytest.approx(f1, abs=1e-12)
    assert ours["bleu"][0] == pytest.approx(0.00125**0.25, abs=1e-12)


def test_study_scores_are_means_times_100():
    preds, refs = ["ABCD", ""], ["abd", "x"]
    per = metrics.study_per_example(preds, refs)
    agg = metrics.study_scores(preds, refs)
    assert agg["n"] == 2
    for k in KEYS:
        assert agg[k] == pytest.approx(per[k].mean() * 100)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        metrics.study_per_example(["a"], ["a", "b"])


def test_rouge_score_over_characters_by_hand():
    from rouge_score import rouge_scorer

    pred, ref = "基于深度学习的文本摘要", "基于深度学习的摘要生成"
    default = rouge_scorer.RougeScorer(["rougeL"]).score(ref, pred)["rougeL"].fmeasure
    assert default == 0.0  # the default tokenizer drops non-ASCII characters: why ours splits characters
    # By hand: the LCS of the two character strings is 基于深度学习的 + 摘要 = 9 characters;
    # both have 11, so P = R = F = 9/11.
    assert metrics.standard_scores([pred], [ref])["rouge_score_l"] == pytest.approx(100 * 9 / 11, abs=1e-9)


def test_sacrebleu_zh_equals_bleu_of_pre_split_characters():
    """sacrebleu's zh tokenizer splits CJK characters and keeps Latin words: the same corpus BLEU as
    the untokenized metric on texts split by hand that way."""
    import re

    import sacrebleu

    preds = ["基于深度学习的文本摘要", "一种新的模型", "LSTM 网络"]
    refs = ["基于深度学习的摘要生成", "一种新的分类模型", "LSTM 神经网络"]

    def split(t):
        return " ".join(re.findall(r"[\u4e00-\u9fff]|[A-Za-z0-9]+", t))

    by_hand = sacrebleu.corpus_bleu([split(p) for p in preds], [[split(r) for r in refs]], tokenize="none").score
    assert metrics.standard_scores(preds, refs)["sacrebleu"] == pytest.approx(by_hand, abs=1e-9)


def test_bootstrap_interval_has_the_width_of_the_mean_s_sampling_distribution():
    """A paired difference that is +1 or −1 with equal chance on n examples: the mean's standard
    error is 1/√n, so the 95% percentile interval is about ±1.96/√n (×100) around the observed mean."""
    rng = np.random.default_rng(1)
    n = 2000
    a = np.zeros(n)
    b = rng.choice([-0.01, 0.01], size=n)  # scores in [0, 1]: ±1 point
    out = paired_bootstrap(a, b, n_resamples=2000, seed=3)
    half = 1.96 / np.sqrt(n)
    assert out["diff"] == pytest.approx(b.mean() * 100)
    assert out["hi"] - out["lo"] == pytest.approx(2 * half, rel=0.1)
    assert out["lo"] < out["diff"] < out["hi"]
    same = paired_bootstrap(a, a, n_resamples=200)
    assert (same["lo"], same["hi"], same["significant"]) == (0.0, 0.0, False)


def test_bootstrap_detects_clear_improvement_deterministically():
    rng = np.random.default_rng(2)
    a = rng.random(300) * 0.5
    b = a + 0.1 + rng.normal(0, 0.02, 300)
    out = paired_bootstrap(a, b, n_resamples=500, seed=7)
    true = (b.mean() - a.mean()) * 100
    assert out["significant"] and out["lo"] <= true <= out["hi"] and out["diff"] == pytest.approx(true)
    assert out == paired_bootstrap(a, b, n_resamples=500, seed=7)


runner = CliRunner()


def test_cli_json_keys_and_values(tmp_path):
    (tmp_path / "p.txt").write_text("ABCD\n深度学习\n", encoding="utf-8")
    (tmp_path / "r.txt").write_text("abd\n深度学习方法\n", encoding="utf-8")
    res = runner.invoke(app, ["score", "--pred", str(tmp_path / "p.txt"), "--ref", str(tmp_path / "r.txt"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) == {"rouge_l", "rouge_1", "rouge_2", "bleu", "sacrebleu", "rouge_score_l", "n",
                        "word_rouge_l", "word_rouge_1", "word_rouge_2"}
    assert out["n"] == 2
    expected = metrics.study_scores(["ABCD", "深度学习"], ["abd", "深度学习方法"])
    assert out["rouge_l"] == pytest.approx(expected["rouge_l"])


def test_cli_predictions_tsv_and_table(tmp_path):
    tsv = tmp_path / "predictions.beam1.tsv"
    tsv.write_text("source\treference\tprediction\n正文一\t深度学习方法\t深度学习\n正文二\tabd\tABCD\n", encoding="utf-8")
    res = runner.invoke(app, ["score", "--pred", str(tsv), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    expected = metrics.study_scores(["深度学习", "ABCD"], ["深度学习方法", "abd"])
    assert out["bleu"] == pytest.approx(expected["bleu"]) and out["n"] == 2
    # --ref from a plain file, and the table view.
    (tmp_path / "r.txt").write_text("深度学习方法\nabd\n", encoding="utf-8")
    res = runner.invoke(app, ["score", "--pred", str(tsv), "--ref", str(tmp_path / "r.txt")])
    assert res.exit_code == 0, res.output
    assert "Rouge-L" in res.stdout and f"{expected['rouge_l']:.2f}" in res.stdout


def test_cli_mismatched_line_counts(tmp_path):
    (tmp_path / "p.txt").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "r.txt").write_text("a\nb\n", encoding="utf-8")
    res = runner.invoke(app, ["score", "--pred", str(tmp_path / "p.txt"), "--ref", str(tmp_path / "r.txt")])
    assert res.exit_code == 2
    message = res.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "p.txt" in message and "r.txt" in message and "3" in message and "2" in message


def test_cli_bench_json():
    res = runner.invoke(app, ["bench", "score", "--n", "50", "--repeat", "1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) == {"ours_s", "reference_s", "ratio", "n"} and out["n"] == 50
