"""The CI regression check: the smoke spec, run for real, against the committed reference table."""

from pathlib import Path

from typer.testing import CliRunner

from exposure_cli.cli import app
from exposure_cli.data import prepare
from exposure_cli.report import compare, load_summary

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_spec_reproduces_results_smoke_json(tmp_path, shared_data):
    prepare(shared_data / "raw", tmp_path / "data")
    out = tmp_path / "runs" / "smoke"
    args = ["run", str(ROOT / "experiments/smoke.yaml"), "--out", str(out), "--device", "cpu"]
    for split in ("train", "dev", "test"):
        args += ["--set", f"data.{split}={tmp_path / 'data' / 'csl' / f'{split}.tsv'}"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    reference = load_summary(ROOT / "results/smoke.json")
    assert compare(load_summary(out), reference, tol=0.5) == []
    r = CliRunner().invoke(app, ["compare", str(out), str(ROOT / "results/smoke.json"), "--tol", "0.5"])
    assert r.exit_code == 0, r.output
