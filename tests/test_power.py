"""`exposure keep` (a run's small outputs, from which the tables rebuild without checkpoints) and
`exposure power` (seeds needed per difference, from the measured variance components)."""

import gzip
import json
import shutil

import pytest
from typer.testing import CliRunner

from exposure_cli import stats
from exposure_cli.cli import app
from exposure_cli.decode.predictions import read_columns


def test_kept_runs_rebuild_the_same_summary_without_checkpoints(fake_runs, tmp_path):
    dest = tmp_path / "kept"
    r = CliRunner().invoke(app, ["keep", str(fake_runs), str(dest)])
    assert r.exit_code == 0, r.output
    kept = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert "gradient_penalty/seed1/predictions.beam3.tsv.xz" in kept and "baseline/seed0/spec.yaml" in kept
    assert not any(name.endswith((".pt", "summary.json")) for name in kept)
    original = read_columns(fake_runs / "baseline" / "seed0" / "predictions.beam2.tsv")
    small = read_columns(dest / "baseline" / "seed0" / "predictions.beam2.tsv.xz")
    assert small["prediction"] == original["prediction"] and small["reference"] == original["reference"]
    assert set(small["source"]) == {""}
    r = CliRunner().invoke(app, ["table", str(dest), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == json.loads((fake_runs / "summary.json").read_text(encoding="utf-8"))
    # a directory kept uncompressed or gzipped (by older versions) is recompressed in place: the same table
    older = tmp_path / "older"
    shutil.copytree(fake_runs, older, ignore=shutil.ignore_patterns("*.pt", "summary.json", "hypotheses*"))
    for path in older.glob("*/seed0/predictions.beam*.tsv"):
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    r = CliRunner().invoke(app, ["keep", str(older), str(older)])
    assert r.exit_code == 0, r.output
    assert sorted(p.relative_to(older).as_posix() for p in older.rglob("*.xz")) == [k for k in kept if k.endswith(".xz")]
    assert not list(older.rglob("predictions.beam*.tsv")) and not list(older.rglob("*.gz"))
    r = CliRunner().invoke(app, ["table", str(older), "--format", "json"])
    assert json.loads(r.output) == json.loads((fake_runs / "summary.json").read_text(encoding="utf-8"))


def test_power_gives_the_seeds_each_difference_needs_and_the_floor(fake_runs, tmp_path):
    summary = json.loads((fake_runs / "summary.json").read_text(encoding="utf-8"))
    d = next(r for r in summary["rows"] if r["method"] == "gradient_penalty" and r["beam"] == 1)
    c = d["vs_baseline"]["rouge_l"]["components"]
    comp = stats.Components(c["seeds"], c["examples"], c["seed"], c["example"], c["noise"], None, None, None)
    fl = stats.floor(comp)
    for effect, unreachable in ((fl * 0.9, True), (fl * 3, False)):
        out = tmp_path / f"power{effect:.3f}.json"
        r = CliRunner().invoke(app, ["power", str(fake_runs), "--effect", str(effect), "--json", str(out)])
        assert r.exit_code == 0, r.output
        rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
        row = next(x for x in rows if x["metric"] == "Rouge-L" and x["beam"] == 1 and x["method"] == "gradient_penalty")
        assert row["floor"] == pytest.approx(fl)
        if unreachable:
            assert row["seeds_needed"] is None and row["note"] == "unreachable on this test set"
        else:
            assert row["seeds_needed"] == stats.seeds_needed(comp, effect) and row["note"] == ""
        assert len(rows) == 4 * 3 * 3  # metrics × beams × non-baseline methods
    assert "unreachable on this test set" in CliRunner().invoke(app, ["power", str(fake_runs), "--effect", "0"]).output


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_power_on_a_missing_or_empty_directory_is_one_line(tmp_path, case):
    path = tmp_path / "nothing"
    if case == "empty":
        path.mkdir()
    r = CliRunner().invoke(app, ["power", str(path)])
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and str(path) in r.output and "Traceback" not in r.output
