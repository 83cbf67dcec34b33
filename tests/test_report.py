"""Tables: mean/std over seeds, intervals of the differences to baseline, one matrix for every writer,
and the regression comparison of cells and differences."""

import csv
import io
import json
import statistics

import numpy as np
import pytest

from exposure_cli.report import summary as report
from exposure_cli.report import tables


def _run(method, seed, value):
    return {"method": method, "seed": seed, "test": {"1": {m: value for m in report.METRICS}}}


def test_summary_means_and_sample_std_over_seeds():
    s = report.summarize("x", [_run("baseline", 0, 40.0), _run("baseline", 1, 42.0), _run("gp", 0, 50.0)],
                         ["baseline", "gp"], [1])
    base, gp = s["rows"]
    assert (base["rouge_l"], base["rouge_l_std"], base["n_seeds"]) == (41.0, round(2 ** 0.5, 4), 2)
    assert (gp["rouge_l"], gp["rouge_l_std"], gp["n_seeds"]) == (50.0, 0.0, 1)


def _with_deltas():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, 400)
    per_example = {}
    for seed in (0, 1):
        per_example[("baseline", 1, seed)] = {m: base for m in report.METRICS}
        per_example[("better", 1, seed)] = {m: base + 0.05 for m in report.METRICS}
        per_example[("same", 1, seed)] = {m: rng.permutation(base) for m in report.METRICS}
    runs = [_run(m, s, v) for m, v in (("baseline", 40.0), ("better", 45.0), ("same", 40.0)) for s in (0, 1)]
    return report.add_differences(report.summarize("x", runs, ["baseline", "better", "same"], [1]), per_example)


def test_differences_mark_a_clear_improvement_and_not_noise():
    s = _with_deltas()
    rows = {r["method"]: r for r in s["rows"]}
    assert "vs_baseline" not in rows["baseline"]
    better = rows["better"]["vs_baseline"]["bleu"]
    assert better["diff"] == 5.0 and better["lo"] == better["hi"] == 5.0 and better["significant"]
    same = rows["same"]["vs_baseline"]["rouge_l"]
    assert abs(same["diff"]) < 1e-9 and same["lo"] < 0 < same["hi"] and not same["significant"]


def test_differences_pair_seed_s_with_seed_s_and_one_seed_earns_no_mark():
    """Each seed of the baseline carries its own large offset, which the method at that seed shares:
    paired seed by seed the +5 difference is exact, whatever order the runs were collected in."""
    rng = np.random.default_rng(1)
    base = {s: rng.uniform(0.2, 0.6, 300) + 0.1 * s for s in (0, 1, 2)}
    per_example = {("better", 1, s): {m: base[s] + 0.05 for m in report.METRICS} for s in (2, 0, 1)}
    per_example.update({("baseline", 1, s): {m: base[s] for m in report.METRICS} for s in (0, 1, 2)})
    runs = [_run(m, s, 40.0) for m in ("baseline", "better") for s in (0, 1, 2)]
    s = report.add_differences(report.summarize("x", runs, ["baseline", "better"], [1]), per_example)
    d = s["rows"][1]["vs_baseline"]["rouge_l"]
    assert (d["diff"], d["lo"], d["hi"], d["significant"], d["example_only"]) == (5.0, 5.0, 5.0, True, False)
    one = {k: v for k, v in per_example.items() if k[2] == 0}
    s = report.add_differences(report.summarize("x", runs[:1] + runs[3:4], ["baseline", "better"], [1]), one)
    d = s["rows"][1]["vs_baseline"]["rouge_l"]
    assert d["example_only"] and not d["significant"] and d["mde"] is None
    assert tables.fmt(tables.Col("d", "d", "delta"), d).endswith("]†")


def test_every_writer_renders_the_same_matrix():
    s = _with_deltas()
    mx = tables.summary_matrix(s)
    md = tables.markdown(mx)
    assert "| better | 1 | 45.00 ± 0.00 | 45.00 ± 0.00 | 45.00 ± 0.00 | 45.00 ± 0.00 | 2 |" in md
    assert "| better | 1 | +5.00 [+5.00, +5.00]* | +5.00 [+5.00, +5.00]* |" in md
    assert md.count("| baseline | 1 |") == 1  # baseline has no difference row
    rows = list(csv.DictReader(io.StringIO(tables.csv_text(mx))))
    assert [r["method"] for r in rows] == ["baseline", "better", "same"]
    assert float(rows[1]["bleu"]) == 45.0 and float(rows[1]["bleu_diff"]) == 5.0 and rows[1]["bleu_significant"] == "True"
    assert rows[0]["rouge_l_diff"] == ""
    tex = tables.latex(mx)
    body = [line for line in tex.splitlines() if line.endswith(r"\\") and not line.startswith("method")]
    assert len(body) == 3 + 2  # three score rows, two difference rows
    assert tex.count(r"\toprule") == 2 and r"45.00 $\pm$ 0.00" in tex and r"$\Delta$ Rouge-L" in tex
    # the rich view shows the same numbers
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(tables.rich_table(mx))
    text = console.export_text()
    assert "45.00 ± 0.00" in text and "+5.00*" in text


def test_a_method_that_failed_on_every_seed_shows_failed_cells():
    s = report.summarize("x", [_run("baseline", 0, 40.0)], ["baseline", "gp"], [1],
                         failed=[{"method": "gp", "seed": 0, "reason": "non-finite loss"}])
    gp = s["rows"][1]
    assert gp["rouge_l"] is None and gp["failed"] == 1 and gp["n_seeds"] == 0
    md = tables.markdown(tables.summary_matrix(s))
    assert "| gp | 1 | failed | failed | failed | failed | 0 |" in md


def test_compare_lists_drifted_and_missing_cells():
    cur = report.summarize("x", [_run("baseline", 0, 40.0)], ["baseline"], [1])
    ref = report.summarize("x", [_run("baseline", 0, 40.4), _run("gp", 0, 1.0)], ["baseline", "gp"], [1])
    assert report.compare(cur, ref, 0.5) == ["gp beam 1: missing from the run"]
    problems = report.compare(cur, ref, 0.3)
    assert "baseline beam 1 Rouge-L: 40.00 vs reference 40.40 (-0.40, tolerance 0.3)" in problems


def test_compare_checks_differences_intervals_and_marks_with_their_own_tolerance():
    ref = _with_deltas()
    cur = json.loads(json.dumps(ref))
    d = cur["rows"][2]["vs_baseline"]["rouge_l"]
    d["hi"] += 0.2  # the interval moved; every cell is unchanged
    assert report.compare(cur, ref, 0.0, 0.1) == ["same beam 1 Δ Rouge-L hi: "
                                                  f"{d['hi']:+.2f} vs reference {d['hi'] - 0.2:+.2f} (+0.20, tolerance 0.1)"]
    assert report.compare(cur, ref, 0.0, 0.25) == []
    cur["rows"][2]["vs_baseline"]["rouge_l"]["significant"] = True
    assert report.compare(cur, ref, 0.0, 0.25) == ["same beam 1 Δ Rouge-L: significance mark set, reference unset"]
    del cur["rows"][1]["vs_baseline"]
    assert "better beam 1: difference to baseline missing from the run" in report.compare(cur, ref, 0.0, 1.0)


def test_sample_std_is_statistics_stdev():
    vals = [44.49, 45.61, 43.2]
    s = report.summarize("x", [_run("baseline", i, v) for i, v in enumerate(vals)], ["baseline"], [1])
    assert s["rows"][0]["bleu_std"] == round(statistics.stdev(vals), 4)
    assert s["rows"][0]["bleu"] == pytest.approx(sum(vals) / 3, abs=1e-4)
