"""The CI regression check: the smoke spec, run for real, against the committed reference table.

A seeded run with the same torch and the same thread count is deterministic, and the run pins its
thread count (`--threads 1`) so that a machine with another number of cores computes the same sums
in the same order (results/smoke.json was made with every core of a 2-core host; one thread
matches it within 0.01); so the tolerances are tight: 0.01 on every cell and on every difference to baseline and its interval ends
(the table rounds to 4 decimals; two runs here give identical files), and a flipped significance
mark fails.
"""

from pathlib import Path

from typer.testing import CliRunner

from exposure_cli.cli import app
from exposure_cli.data import prepare
from exposure_cli.report.summary import compare, load_summary

ROOT = Path(__file__).resolve().parents[1]
TOL, DELTA_TOL = 0.01, 0.01


def test_smoke_spec_reproduces_results_smoke_json(tmp_path, shared_data):
    prepare(shared_data / "raw", tmp_path / "data")
    out = tmp_path / "runs" / "smoke"
    args = ["run", str(ROOT / "experiments/smoke.yaml"), "--out", str(out), "--device", "cpu", "--threads", "1"]
    for split in ("train", "dev", "test"):
        args += ["--set", f"data.{split}={tmp_path / 'data' / 'csl' / f'{split}.tsv'}"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    reference = load_summary(ROOT / "results/smoke.json")
    assert compare(load_summary(out), reference, tol=TOL, delta_tol=DELTA_TOL) == []
    r = CliRunner().invoke(app, ["compare", str(out), str(ROOT / "results/smoke.json"), "--tol", str(TOL),
                                 "--delta-tol", str(DELTA_TOL)])
    assert r.exit_code == 0, r.output
