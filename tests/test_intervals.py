"""Per-cell 95% intervals in summary.json: stats.interval of each cell's seeds × examples scores,
exact for constant scores, reproducible, and validated when a summary is read."""

import json

import numpy as np
import pytest

from exposure_cli import stats
from exposure_cli.report import summary as report
from exposure_cli.errors import UserError
from exposure_cli.metrics import study_per_example
from exposure_cli.decode.predictions import read_columns

METRICS = report.METRICS


def test_cell_intervals_are_stats_intervals_of_the_seeds_by_examples_scores(fake_runs):
    """The round trip: the predictions files → per-example scores, one row per seed → stats.interval
    (whose coverage tests/test_stats.py checks by simulation) is what summary.json holds."""
    summary = json.loads((fake_runs / "summary.json").read_text(encoding="utf-8"))
    assert "seconds" not in json.dumps(summary)  # deterministic: no wall-clock anywhere
    row = next(r for r in summary["rows"] if r["method"] == "gradient_penalty" and r["beam"] == 2)
    per_seed = {m: [] for m in METRICS}
    for seed in (0, 1):
        cols = read_columns(fake_runs / "gradient_penalty" / f"seed{seed}" / "predictions.beam2.tsv")
        for m, v in study_per_example(cols["prediction"], cols["reference"]).items():
            per_seed[m].append(v * 100)
    for m in METRICS:
        x = np.stack(per_seed[m])
        lo, hi = row[f"{m}_ci"]
        assert lo < row[m] < hi and row[m] == pytest.approx(x.mean(), abs=1e-4)
        want = stats.interval(x)
        assert (lo, hi) == pytest.approx((want["lo"], want["hi"]), abs=1e-4)
    assert "ci_example_only" not in row


def test_cell_intervals_are_exact_for_constant_scores_and_reproducible():
    s = report.summarize("x", [{"method": "b", "seed": 0, "test": {"1": {m: 40.0 for m in METRICS}}}], ["b"], [1])
    per = {("b", 1, 0): {m: np.full(50, 0.4) for m in METRICS}}
    report.add_cell_intervals(s, per)
    assert s["rows"][0]["rouge_l_ci"] == [40.0, 40.0] and s["rows"][0]["ci_example_only"]  # one seed
    rng = np.random.default_rng(0)
    per = {("b", 1, 0): {m: rng.random(80) for m in METRICS}}
    a = report.add_cell_intervals(json.loads(json.dumps(s)), per)
    assert a == report.add_cell_intervals(json.loads(json.dumps(s)), per)
    fresh = report.summarize("x", [{"method": "b", "seed": 0, "test": {"1": {m: 40.0 for m in METRICS}}}], ["b"], [1])
    one = report.add_cell_intervals(fresh, {("b", 1, 0): {m: np.full(1, 0.4) for m in METRICS}})
    assert "rouge_l_ci" not in one["rows"][0]  # a single test example has no spread to build one from


def test_a_malformed_interval_is_a_one_line_error_naming_file_and_key(fake_runs, tmp_path):
    bad = json.loads((fake_runs / "summary.json").read_text(encoding="utf-8"))
    bad["rows"][3]["bleu_ci"] = [1.0]
    (tmp_path / "bad.json").write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(UserError) as e:
        report.load_summary(tmp_path / "bad.json")
    assert str(e.value) == f"{tmp_path / 'bad.json'}: rows[3].bleu_ci: expected [lo, hi], two numbers"
