"""End to end on a fixture the test writes: spec → runs → summary; rerun skips; a crash resumes."""

import json
import random

import pytest
import yaml
from typer.testing import CliRunner

from exposure_cli import train as train_mod
from exposure_cli.cli import app
from exposure_cli.data import read_pairs
from exposure_cli.metrics import study_scores
from exposure_cli.report.summary import compare, load_summary
from exposure_cli.runner.grid import run_path
from grids import write_split




@pytest.fixture()
def spec_file(tmp_path):
    rng = random.Random(0)
    for split, n in [("train", 96), ("dev", 8), ("test", 12)]:
        write_split(tmp_path / f"{split}.tsv", n, rng)
    spec = {
        "name": "fixture",
        "data": {s: str(tmp_path / f"{s}.tsv") for s in ("train", "dev", "test")},
        "model": {"layers": 1, "hidden": 32, "heads": 2, "max_len": 48, "max_target_len": 8, "dropout": 0.0},
        "train": {"epochs": 2, "batch_size": 16, "lr": 3e-3, "seeds": [0, 1], "dev_size": 8, "bf16": True},
        "methods": ["baseline"],
        "decode": {"beams": [1, 2], "max_len": 8},
    }
    p = tmp_path / "fixture.yaml"
    p.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return p


def test_run_writes_every_artifact_and_a_consistent_table(tmp_path, spec_file):
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["run", str(spec_file), "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    test_pairs = read_pairs(tmp_path / "test.tsv")
    per_seed = []
    for seed in (0, 1):
        d = out / "baseline" / f"seed{seed}"
        for name in ("spec.yaml", "vocab.txt", "best.pt", "train.jsonl", "metrics.json"):
            assert (d / name).is_file(), name
        assert not (d / "last.pt").exists()
        m = json.loads((d / "metrics.json").read_text())
        for k in (1, 2):
            rows = (d / f"predictions.beam{k}.tsv").read_text(encoding="utf-8").splitlines()
            assert rows[0] == "source\treference\tprediction" and len(rows) == 1 + len(test_pairs)
            preds = [row.split("\t")[2] for row in rows[1:]]
            assert [row.split("\t")[1] for row in rows[1:]] == [p.target for p in test_pairs]
            again = study_scores(preds, [p.target for p in test_pairs])
            assert again["bleu"] == pytest.approx(m["test"][str(k)]["bleu"])
        per_seed.append(m)
    summary = load_summary(out)
    assert [(r["method"], r["beam"], r["n_seeds"]) for r in summary["rows"]] == [("baseline", 1, 2), ("baseline", 2, 2)]
    for row in summary["rows"]:
        mean = sum(m["test"][str(row["beam"])]["rouge_l"] for m in per_seed) / 2
        assert row["rouge_l"] == pytest.approx(mean, abs=1e-3)
    # beams 1 and 2, in the scores table and again in the word-level Rouge one
    assert (out / "table.md").read_text().count("| baseline |") == 4
    assert (out / "table.csv").read_text().splitlines()[0].startswith("method,beam,rouge_l,rouge_l_std")

    # A finished run is skipped on a rerun: nothing is retrained or rewritten.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")}
    r = CliRunner().invoke(app, ["run", str(spec_file), "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")}

    # compare: identical tables pass; a drifted cell fails with exit code 1.
    assert compare(summary, summary, 0.5) == []
    ref = json.loads(json.dumps(summary))
    ref["rows"][0]["bleu"] += 1.0
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    r = CliRunner().invoke(app, ["compare", str(out), str(tmp_path / "ref.json"), "--tol", "0.5"])
    assert r.exit_code == 1 and "baseline beam 1 BLEU" in r.output


def test_a_crash_during_evaluation_resumes_without_retraining(tmp_path, spec_file, monkeypatch):
    out = tmp_path / "out"
    real = train_mod.evaluate_run

    def crash(*a, **k):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(train_mod, "evaluate_run", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        CliRunner().invoke(app, ["run", str(spec_file), "--out", str(out), "--set", "train.seeds=[0]"],
                           catch_exceptions=False)
    d = out / "baseline" / "seed0"
    assert (d / "last.pt").is_file() and (d / "best.pt").is_file() and not (d / "metrics.json").exists()
    epochs_logged = [json.loads(line)["epoch"] for line in (d / "train.jsonl").read_text().splitlines()
                     if "dev" in json.loads(line)]
    assert epochs_logged == [1, 2]

    monkeypatch.setattr(train_mod, "evaluate_run", real)
    r = CliRunner().invoke(app, ["run", str(spec_file), "--out", str(out), "--set", "train.seeds=[0]"])
    assert r.exit_code == 0, r.output
    epochs_logged = [json.loads(line)["epoch"] for line in (d / "train.jsonl").read_text().splitlines()
                     if "dev" in json.loads(line)]
    assert epochs_logged == [1, 2]  # no epoch was trained twice
    assert json.loads((d / "metrics.json").read_text())["epochs"] == 2


def test_a_diverging_run_in_a_grid_fails_alone_and_retry_failed_reruns_only_it(tmp_path, spec_file):
    """A penalty weight of 1e300 makes gradient_penalty's first loss infinite: baseline still finishes
    both seeds, the table shows the failed row, the command exits 1 naming each failed run; a rerun
    leaves the failed runs as they are, and --retry-failed starts over those alone (the finished
    runs' files are not touched)."""
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    spec["methods"] = ["baseline", {"gradient_penalty": {"epsilon": 1e300}}]
    spec["train"]["epochs"] = 1
    spec_file.write_text(yaml.safe_dump(spec), encoding="utf-8")
    out = tmp_path / "out"
    args = ["run", str(spec_file), "--out", str(out), "--device", "cpu"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1, r.output
    gp = "gradient_penalty(epsilon=1e+300)"
    gp_dir = run_path(out, gp, 0).parent
    err = " ".join(r.stderr.split())  # rich wraps the lines at the terminal's width
    for seed in (0, 1):
        assert f"failed: {gp} seed {seed}: non-finite loss at step 1 (epoch 1), loss inf" in err
        assert (out / "baseline" / f"seed{seed}" / "metrics.json").exists()
        assert json.loads((gp_dir / f"seed{seed}" / "failed.json").read_text())["what"] == "loss"
    assert "rerun with --retry-failed" in err
    table = (out / "table.md").read_text(encoding="utf-8").splitlines()
    for beam in (1, 2):
        assert f"| {gp} | {beam} | failed | failed | failed | failed | 0 |" in table
        assert sum(line.startswith(f"| baseline | {beam} | ") and line.endswith(" | 2 |") for line in table) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert [(f["method"], f["seed"]) for f in summary["failed"]] == [(gp, 0), (gp, 1)]

    def stamps(d):
        return {p: p.stat().st_mtime_ns for p in d.rglob("*") if p.is_file()}

    before_base, before_gp = stamps(out / "baseline"), stamps(gp_dir)
    r = CliRunner().invoke(app, args)  # without --retry-failed: nothing is retrained
    assert r.exit_code == 1 and stamps(gp_dir) == before_gp and stamps(out / "baseline") == before_base
    r = CliRunner().invoke(app, args + ["--retry-failed"])
    assert r.exit_code == 1 and f"failed: {gp} seed 0" in " ".join(r.stderr.split())
    after_gp = stamps(gp_dir)
    assert stamps(out / "baseline") == before_base
    assert set(after_gp) == set(before_gp) and all(after_gp[p] > before_gp[p] for p in before_gp)  # all rewritten
