"""Tables: mean/std over seeds, bootstrap intervals against baseline, regression comparison."""

import numpy as np

from exposure_cli import report


def _run(method, seed, value):
    return {"method": method, "seed": seed, "test": {"1": {m: value for m in report.METRICS}}}


def test_summary_means_and_sample_std_over_seeds():
    s = report.summarize("x", [_run("baseline", 0, 40.0), _run("baseline", 1, 42.0), _run("gp", 0, 50.0)],
                         ["baseline", "gp"], [1])
    base, gp = s["rows"]
    assert (base["rouge_l"], base["rouge_l_std"], base["n_seeds"]) == (41.0, round(2 ** 0.5, 4), 2)
    assert (gp["rouge_l"], gp["rouge_l_std"], gp["n_seeds"]) == (50.0, 0.0, 1)


def test_bootstrap_marks_a_clear_improvement_and_not_noise():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, 400)
    per_example = {}
    for seed in (0, 1):
        per_example[("baseline", 1, seed)] = {m: base for m in report.METRICS}
        per_example[("better", 1, seed)] = {m: base + 0.05 for m in report.METRICS}
        per_example[("same", 1, seed)] = {m: rng.permutation(base) for m in report.METRICS}
    runs = [_run(m, s, 1.0) for m in ("baseline", "better", "same") for s in (0, 1)]
    s = report.add_bootstrap(report.summarize("x", runs, ["baseline", "better", "same"], [1]), per_example)
    rows = {r["method"]: r for r in s["rows"]}
    assert "vs_baseline" not in rows["baseline"]
    better = rows["better"]["vs_baseline"]["bleu"]
    assert better["diff"] == 5.0 and better["lo"] == better["hi"] == 5.0 and better["significant"]
    same = rows["same"]["vs_baseline"]["rouge_l"]
    assert abs(same["diff"]) < 1e-9 and same["lo"] < 0 < same["hi"] and not same["significant"]
    md = report.markdown(s)
    assert "| better | 1 | +5.00 [+5.00, +5.00]*" in md
    assert "rouge_l_diff" in report.csv_text(s).splitlines()[0]


def test_compare_lists_drifted_and_missing_cells():
    cur = report.summarize("x", [_run("baseline", 0, 40.0)], ["baseline"], [1])
    ref = report.summarize("x", [_run("baseline", 0, 40.4), _run("gp", 0, 1.0)], ["baseline", "gp"], [1])
    assert report.compare(cur, ref, 0.5) == ["gp beam 1: missing from the run"]
    problems = report.compare(cur, ref, 0.3)
    assert "baseline beam 1 Rouge-L: 40.00 vs reference 40.40 (-0.40, tolerance 0.3)" in problems
