"""Per-cell 95% intervals in summary.json: around the mean, of the width sampling theory gives,
exact for constant scores, reproducible, and validated when a summary is read."""

import json

import numpy as np
import pytest

from exposure_cli import report
from exposure_cli.errors import UserError
from exposure_cli.metrics import study_per_example
from exposure_cli.predictions import read_columns

METRICS = report.METRICS


def test_cell_intervals_hold_the_mean_with_the_width_of_its_sampling_distribution(fake_runs):
    summary = json.loads((fake_runs / "summary.json").read_text(encoding="utf-8"))
    assert "seconds" not in json.dumps(summary)  # deterministic: no wall-clock anywhere
    row = next(r for r in summary["rows"] if r["method"] == "gradient_penalty" and r["beam"] == 2)
    pooled = {m: [] for m in METRICS}
    for seed in (0, 1):
        cols = read_columns(fake_runs / "gradient_penalty" / f"seed{seed}" / "predictions.beam2.tsv")
        for m, v in study_per_example(cols["prediction"], cols["reference"]).items():
            pooled[m].append(v)
    for m in METRICS:
        x = np.concatenate(pooled[m]) * 100
        lo, hi = row[f"{m}_ci"]
        assert lo < row[m] < hi and row[m] == pytest.approx(x.mean(), abs=1e-4)
        # a 95% interval of a mean: about ±1.96 standard errors
        assert hi - lo == pytest.approx(2 * 1.96 * x.std(ddof=1) / np.sqrt(x.size), rel=0.25)


def test_cell_intervals_are_exact_for_constant_scores_and_reproducible():
    s = report.summarize("x", [{"method": "b", "seed": 0, "test": {"1": {m: 40.0 for m in METRICS}}}], ["b"], [1])
    per = {("b", 1, 0): {m: np.full(50, 0.4) for m in METRICS}}
    report.add_cell_intervals(s, per)
    assert s["rows"][0]["rouge_l_ci"] == [40.0, 40.0]
    rng = np.random.default_rng(0)
    per = {("b", 1, 0): {m: rng.random(80) for m in METRICS}}
    a = report.add_cell_intervals(json.loads(json.dumps(s)), per)
    assert a == report.add_cell_intervals(json.loads(json.dumps(s)), per)


def test_a_malformed_interval_is_a_one_line_error_naming_file_and_key(fake_runs, tmp_path):
    bad = json.loads((fake_runs / "summary.json").read_text(encoding="utf-8"))
    bad["rows"][3]["bleu_ci"] = [1.0]
    (tmp_path / "bad.json").write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(UserError) as e:
        report.load_summary(tmp_path / "bad.json")
    assert str(e.value) == f"{tmp_path / 'bad.json'}: rows[3].bleu_ci: expected [lo, hi], two numbers"
