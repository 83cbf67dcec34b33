"""`exposure plot`: readable PNGs of the right size whose bars are the summary's intervals, the
dev-BLEU curves from train.jsonl, and one-line notes for what a JSON alone cannot give."""

import json

import numpy as np
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from exposure_cli.report import plots
from exposure_cli.report import summary as report
from exposure_cli.cli import app

runner = CliRunner()
METRICS = report.METRICS


def _check_png(path, width, height):
    img = imread(path)
    assert img.shape[:2] == (height, width), path
    rgb = img[..., :3].reshape(-1, 3)
    ink = (rgb < 0.95).any(axis=1).mean()
    assert 0.01 < ink < 0.6, f"{path}: {ink:.3f} of the pixels are not white"
    q = (rgb * 255).astype(np.uint32)
    assert len(np.unique(q[:, 0] << 16 | q[:, 1] << 8 | q[:, 2])) > 20  # lines, text, several colours


def test_plot_writes_readable_pngs_from_a_run_directory(fake_runs, tmp_path):
    out = tmp_path / "plots"
    r = runner.invoke(app, ["plot", str(fake_runs), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert r.stderr == ""  # the spec name "csl-fake" says which article table; every run has its log
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"beam_{m}.png" for m in METRICS] + ["deltas_vs_article.png", "dev_bleu.png"])
    for m in METRICS:
        _check_png(out / f"beam_{m}.png", 1200, 600)
    _check_png(out / "dev_bleu.png", 1200, 600)
    _check_png(out / "deltas_vs_article.png", 1440, int(120 * (3 + 0.45 * 9)))


def test_beam_plot_bars_are_the_summary_intervals(fake_runs):
    summary = report.load_summary(fake_runs)
    fig = plots.beam_figure(summary, "rouge_l", with_ci=True)
    ax = fig.axes[0]
    rows = [r for r in summary["rows"] if r["method"] == "baseline"]
    bars = ax.containers[0]  # the first method's errorbar
    assert bars.get_label() == "baseline"
    segments = bars.lines[2][0].get_segments()
    assert [tuple(s[:, 1]) for s in segments] == [pytest.approx(tuple(r["rouge_l_ci"])) for r in rows]
    assert list(bars.lines[0].get_ydata()) == [r["rouge_l"] for r in rows]


def test_dev_bleu_curves_come_from_train_jsonl(fake_runs):
    curves, missing = plots.dev_bleu_curves(report.load_summary(fake_runs), fake_runs)
    assert missing == [] and len(curves) == 8
    # the fixture's run i logs 10 + 5e - e² + i after epoch e; step lines are not epochs
    assert curves["baseline seed 0"] == [(1, 14.0), (2, 16.0), (3, 16.0)]
    assert curves["gradient_penalty seed 1"] == [(1, 19.0), (2, 21.0), (3, 21.0)]


def test_plot_from_a_json_or_an_older_summary_says_what_it_left_out(fake_runs, tmp_path):
    old = json.loads((fake_runs / "summary.json").read_text(encoding="utf-8"))
    for row in old["rows"]:
        for m in METRICS:
            row.pop(f"{m}_ci", None)
    old["name"] = "smoke"
    (tmp_path / "old.json").write_text(json.dumps(old), encoding="utf-8")
    r = runner.invoke(app, ["plot", str(tmp_path / "old.json"), "--out", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    notes = r.stderr.strip().splitlines()
    assert len(notes) == 3 and all(n.startswith("note: ") for n in notes)
    assert "without bars" in notes[0] and "--paper" in notes[1] and "dev-BLEU curves skipped" in notes[2]
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == sorted(
        [f"beam_{m}.png" for m in METRICS] + ["deltas_vs_article.png"])
    _check_png(tmp_path / "p" / "beam_rouge_l.png", 1200, 600)
    r = runner.invoke(app, ["plot", str(tmp_path / "old.json"), "--out", str(tmp_path / "p"), "--paper", "x"])
    assert r.exit_code == 2 and r.stderr.strip() == "error: --paper x: expected one of csl, lcsts"
