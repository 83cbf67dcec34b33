"""`exposure leaderboard` on kept runs built by hand: every per-example score is known by
construction (a prediction equal to its reference scores Rouge-L 1, one sharing no character 0),
so the differences, the separations and the ranks are checked against stats on the constructed
matrices, the cost against hand arithmetic, and the diagnostics against diagnose.aggregate of the
committed CSL runs' own records."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from exposure_cli import diagnose as dg
from exposure_cli import fileio, stats
from exposure_cli.report import leaderboard as lb
from exposure_cli.report import summary as report
from exposure_cli.runner import rundir
from exposure_cli.cli import app
from exposure_cli.metrics import study_scores
from exposure_cli.decode.predictions import write_predictions
from exposure_cli.runner.rundir import run_path
from exposure_cli.spec import MethodSpec, spec_from_dict
from exposure_cli.train import write_run_spec
from test_markdown import check_tables

ROOT = Path(__file__).resolve().parents[1]
N, SEEDS, BEAMS = 40, (0, 1, 2), (1, 2)
REFS = [f"标题{chr(ord('a') + i % 26)}{i:02d}研究" for i in range(N)]
WRONG = "甲乙丙"  # shares no character with any reference: Rouge-L 0
# Which examples each method gets right, per seed (beam 2 as beam 1: the pattern is what matters):
# random draws, so that no two seeds are alike and a difference paired with the wrong seed shows.
_rng = np.random.default_rng(7)
_BASE = _rng.random((len(SEEDS), N)) < 0.5
CORRECT = {
    "baseline": _BASE,  # about half
    "random_replace": _BASE | (_rng.random((len(SEEDS), N)) < 0.5),  # about 3/4: clearly above baseline
    "gradient_penalty": np.concatenate([np.roll(_BASE[:, :8], 1, axis=1), _BASE[:, 8:]], axis=1),  # ±0
    "mrt": _rng.random((len(SEEDS), N)) < 2 / 3,
}
# Training seconds per seed (pooled: Σ seconds / Σ steps), steps per run, and the warm start's.
SECONDS = {"baseline": (90.0, 100.0, 110.0), "random_replace": (150.0, 150.0, 150.0),
           "gradient_penalty": (200.0, 210.0, 190.0), "mrt": (190.0, 200.0, 210.0)}
STEPS = {"baseline": 50, "random_replace": 60, "gradient_penalty": 50, "mrt": 50}  # as train.jsonl logs them


def truth(method: str) -> np.ndarray:
    """Seeds × examples Rouge-L ×100, by construction."""
    return np.where(CORRECT[method], 100.0, 0.0)


def write_runs(root: Path, diagnosed=("baseline", "random_replace")) -> Path:
    """Kept runs (as `exposure keep` leaves them) of the four methods × 3 seeds × beams 1-2; the
    `diagnosed` methods get the committed CSL runs' diagnostics.json of the same seed."""
    spec = spec_from_dict({"name": "board-fixture", "data": {s: "unused" for s in ("train", "dev", "test")},
                           "methods": list(CORRECT), "train": {"seeds": list(SEEDS), "epochs": 1},
                           "decode": {"beams": list(BEAMS)}})
    for method in CORRECT:
        for k, seed in enumerate(SEEDS):
            d = run_path(root, method, seed)
            preds = [r if CORRECT[method][k, i] else WRONG for i, r in enumerate(REFS)]
            for beam in BEAMS:
                write_predictions(d / f"predictions.beam{beam}.tsv", [""] * N, REFS, preds)
            write_run_spec(spec, MethodSpec(method), seed, d)
            log = [{"step": s, "epoch": 1, "loss": 1.0} for s in range(10, STEPS[method] + 1, 10)]
            log.append({"epoch": 1, "dev": {"bleu": 10.0}, "best": True})
            fileio.write_text(d / "train.jsonl", "".join(json.dumps(x) + "\n" for x in log))
            metrics = {"method": method, "method_name": method, "params": {}, "seed": seed, "best_epoch": 1,
                       "dev_bleu": 10.0, "epochs": 1, "train_seconds": SECONDS[method][k], "dev_seconds": 1.0,
                       "eval_seconds": 2.0, "test": {str(b): study_scores(preds, REFS) for b in BEAMS}}
            if method == "mrt":
                metrics["warm_start"] = {"from": str(run_path(root, "baseline", seed)),
                                         "train_seconds": SECONDS["baseline"][k], "dev_seconds": 1.0, "epochs": 1}
            fileio.write_json(d / "metrics.json", metrics)
            if method in diagnosed:
                src = rundir.kept(ROOT / "results" / "csl-cpu" / method / f"seed{seed}", "diagnostics.json")
                fileio.write_text(d / "diagnostics.json", fileio.read_text(src))
    return root


@pytest.fixture(scope="module")
def kept(tmp_path_factory) -> Path:
    return write_runs(tmp_path_factory.mktemp("board") / "kept")


@pytest.fixture(scope="module")
def board(kept) -> dict:
    return lb.build(lb.load_grid(kept), wall_seconds=1234.0)


def _entry(board, method):
    return next(e for e in board["methods"] if e["method"] == method)


def test_the_constructed_scores_are_what_the_runs_score_to(kept):
    grid = lb.load_grid(kept)
    for method in CORRECT:
        for s in SEEDS:
            got = grid.per_example[(method, 1, s)]["rouge_l"] * 100
            assert np.allclose(got, truth(method)[s], atol=1e-5), method


def test_differences_are_reports_and_equal_stats_on_the_constructed_scores(kept, board):
    summary = report.summarize_grid(*_spec_results(kept))
    for method in ("random_replace", "gradient_penalty", "mrt"):
        want = stats.difference(truth(method), truth("baseline"))
        row = next(r for r in summary["rows"] if r["method"] == method and r["beam"] == 1)
        got = _entry(board, method)["vs_baseline"]["rouge_l"]["1"]
        assert {k: got[k] for k in ("diff", "lo", "hi", "significant")} == \
            {k: row["vs_baseline"]["rouge_l"][k] for k in ("diff", "lo", "hi", "significant")}
        assert (got["diff"], got["lo"], got["hi"]) == (pytest.approx(want["diff"], abs=1e-4),
                                                       pytest.approx(want["lo"], abs=1e-4),
                                                       pytest.approx(want["hi"], abs=1e-4))
    # a pair without baseline: the same function, the same paired interval
    pair = next(p for p in board["pairs"] if {p["a"], p["b"]} == {"random_replace", "gradient_penalty"}
                and p["metric"] == "rouge_l" and p["beam"] == 2)
    sign = 1 if pair["a"] == "random_replace" else -1
    want = stats.difference(truth("random_replace"), truth("gradient_penalty"))
    assert sign * pair["diff"] == pytest.approx(want["diff"], abs=1e-4)
    assert sorted([sign * pair["lo"], sign * pair["hi"]]) == [pytest.approx(want["lo"], abs=1e-4),
                                                              pytest.approx(want["hi"], abs=1e-4)]


def _spec_results(kept):
    from exposure_cli.runner.grid import grid_results

    spec, results = grid_results(kept)
    return spec, kept, results


def test_separated_exactly_when_the_hand_built_interval_excludes_zero(kept, board):
    grid = lb.load_grid(kept)
    cases = {("random_replace", "baseline"): True, ("gradient_penalty", "baseline"): False,
             ("random_replace", "gradient_penalty"): True}
    for (a, b), separated in cases.items():
        hand = stats.difference(truth(a), truth(b))
        assert (hand["lo"] > 0 or hand["hi"] < 0) == separated  # the construction is what the case says
        assert lb.separation(grid.per_example, a, b, 1, "rouge_l")["separated"] is separated, (a, b)
        got = next(p for p in board["pairs"] if {p["a"], p["b"]} == {a, b} and p["beam"] == 1
                   and p["metric"] == "rouge_l")
        assert got["separated"] is separated and got["seeds"] == list(SEEDS)
    # one seed: never separated, however far apart (no seed spread to count)
    one = {k: v for k, v in grid.per_example.items() if k[2] == 0}
    assert lb.separation(one, "random_replace", "baseline", 1, "rouge_l")["separated"] is False
    # ranks, from the hand-built intervals of every pair: 1 + those separated above, N − those below
    ranks = {e["method"]: tuple(e["ranks"]["rouge_l"]["1"]) for e in board["methods"]}
    for m in CORRECT:
        above = sum(stats.difference(truth(o), truth(m))["lo"] > 0 for o in CORRECT if o != m)
        below = sum(stats.difference(truth(m), truth(o))["lo"] > 0 for o in CORRECT if o != m)
        assert ranks[m] == (1 + above, len(CORRECT) - below), m
    assert ranks["random_replace"][0] == 1 and ranks["baseline"][0] > 1  # the fixture has separations


def test_rank_ranges_count_separated_pairs_only():
    labels = ["a", "b", "c", "d"]
    pairs = [{"a": "a", "b": "b", "diff": 2.0, "separated": True},
             {"a": "c", "b": "a", "diff": -1.0, "separated": True},
             {"a": "b", "b": "c", "diff": 0.1, "separated": False},
             {"a": "d", "b": "a", "diff": -5.0, "separated": False}]
    # a is above b and c; nothing is separated above a; d is separated from nothing
    assert lb.rank_ranges(labels, pairs) == {"a": (1, 2), "b": (2, 4), "c": (2, 4), "d": (1, 4)}


def test_rows_follow_the_rouge_l_estimate_at_beam_1(board):
    order = [e["method"] for e in board["methods"]]
    est = {e["method"]: 0.0 if e["method"] == "baseline" else e["vs_baseline"]["rouge_l"]["1"]["diff"]
           for e in board["methods"]}
    assert order == sorted(est, key=lambda m: -est[m])
    assert order[0] == "random_replace"


def test_cost_per_step_is_pooled_over_seeds_and_includes_the_warm_start(board):
    base = sum(SECONDS["baseline"]) / (3 * 50)  # 300 s over 150 steps: 2.0 s a step
    assert base == 2.0
    mrt = _entry(board, "mrt")["cost"]
    assert mrt["step_cost"] == pytest.approx(600 / 150 / base)  # 2.0: its own steps only
    assert mrt["step_cost_with_warm_start"] == pytest.approx(3.0)  # (600 s own + 300 s warm start) / 150 steps / 2
    assert mrt["warm_start_seconds"] == pytest.approx(100.0) and mrt["steps"] == 50
    rr = _entry(board, "random_replace")["cost"]  # 450 s over 180 steps: 2.5 s a step
    assert rr["step_cost"] == rr["step_cost_with_warm_start"] == pytest.approx(1.25)
    assert _entry(board, "baseline")["cost"]["step_cost"] == 1.0
    assert board["run_seconds"] == pytest.approx(sum(map(sum, SECONDS.values())) + 12 * 3.0)
    assert board["wall_seconds"] == 1234.0 and board["seeds"] == list(SEEDS)


def test_the_figure_draws_each_methods_cost_and_sensitivity_from_the_board(board):
    """The PNG's lower panels: a bar per method at its step cost (mrt: 2.0 own + 1.0 hatched warm
    start, by the fixture's seconds; random_replace 1.25), and a point per diagnosed method at its
    Δ sensitivity (only random_replace is diagnosed beside baseline)."""
    fig = lb.figure(board)
    axes = {ax.get_title(): ax for ax in fig.get_axes()}
    cost = next(ax for t, ax in axes.items() if t.startswith("training cost"))
    labels = [t.get_text() for t in cost.get_yticklabels()]
    bars = {}
    for patch in cost.patches:
        bars.setdefault(labels[round(patch.get_y() + patch.get_height() / 2)], []).append(
            (patch.get_x(), patch.get_width(), bool(patch.get_hatch())))
    assert bars["mrt"] == [(0, pytest.approx(2.0), False), (pytest.approx(2.0), pytest.approx(1.0), True)]
    assert bars["random_replace"] == [(0, pytest.approx(1.25), False)] and bars["baseline"] == [(0, 1.0, False)]
    sens = next(ax for t, ax in axes.items() if t.startswith("sensitivity"))
    points = [(line.get_xdata()[0], line.get_ydata()[0]) for line in sens.lines if line.get_marker() == "o"]
    want = _entry(board, "random_replace")["diagnostics"]["d_sensitivity"]["diff"]
    names = [t.get_text() for t in sens.get_yticklabels()]
    assert [(pytest.approx(want), names.index("random_replace"))] == points


def test_a_warm_started_run_without_its_record_is_not_recorded(tmp_path):
    root = write_runs(tmp_path / "kept", diagnosed=())
    m = fileio.read_json(run_path(root, "mrt", 1) / "metrics.json")
    del m["warm_start"]
    fileio.write_json(run_path(root, "mrt", 1) / "metrics.json", m)
    cost = _entry(lb.build(lb.load_grid(root)), "mrt")["cost"]
    assert cost["step_cost"] == pytest.approx(2.0) and cost["step_cost_with_warm_start"] is None


def test_cost_reads_cpu_seconds_when_every_run_and_warm_start_recorded_them(tmp_path):
    """train_cpu_seconds (here a third of each run's wall seconds, random_replace's a sixth) replace
    the wall seconds only when every run has them: one run without them and the board stays on wall."""
    root = write_runs(tmp_path / "kept", diagnosed=())
    share = {"baseline": 1 / 3, "random_replace": 1 / 6, "gradient_penalty": 1 / 3, "mrt": 1 / 3}

    def set_cpu(method, seed, keep=True):
        path = run_path(root, method, seed) / "metrics.json"
        m = fileio.read_json(path)
        m.pop("train_cpu_seconds", None)
        if keep:
            m["train_cpu_seconds"] = m["train_seconds"] * share[method]
            if "warm_start" in m:
                m["warm_start"]["train_cpu_seconds"] = m["warm_start"]["train_seconds"] / 3
        fileio.write_json(path, m)

    for method in SECONDS:
        for seed in SEEDS:
            set_cpu(method, seed)
    board = lb.build(lb.load_grid(root))
    assert board["cost_clock"] == "cpu"
    assert _entry(board, "random_replace")["cost"]["step_cost"] == pytest.approx(1.25 / 2)  # (450/6)/180 over (300/3)/150
    assert _entry(board, "mrt")["cost"]["step_cost_with_warm_start"] == pytest.approx(3.0)  # all a third: unchanged
    assert "train_cpu_seconds" in lb.matrix(board).notes[lb.COST]
    set_cpu("mrt", 2, keep=False)
    board = lb.build(lb.load_grid(root))
    assert board["cost_clock"] == "wall" and _entry(board, "random_replace")["cost"]["step_cost"] == pytest.approx(1.25)


def test_diagnostics_are_diagnose_aggregate_and_missing_ones_say_not_measured(kept, board):
    records = sorted((ROOT / "results" / "csl-cpu").glob("*/seed*/diagnostics.json*"))
    results = [dg.read_run_record(p, list(CORRECT)) for p in records if p.parts[-3] in ("baseline", "random_replace")]
    agg = dg.aggregate(results, dg.options_from_record(results[0].record["options"]))
    rr = _entry(board, "random_replace")["diagnostics"]
    assert rr["sensitivity"] == agg["methods"]["random_replace"]["values"]["robustness"]["model_sensitivity"]
    assert rr["d_sensitivity"] == agg["methods"]["random_replace"]["vs_baseline"]["robustness"]["model_sensitivity"]
    assert rr["curse_b2"] == agg["methods"]["random_replace"]["values"]["beam_curse"]["b2_curse"]
    for method in ("gradient_penalty", "mrt"):
        assert _entry(board, method)["diagnostics"] == lb.NOT_MEASURED
    mx = lb.matrix(board)
    row = next(r for r in mx.rows if r["method"] == "mrt")
    assert row["sensitivity"] == row["search_b1"] == row["curse_b2"] == lb.NOT_MEASURED
    assert "not measured" in lb.markdown(mx)


def test_kept_records_rebuild_the_committed_diagnostics_aggregate():
    """The per-run records `exposure keep` kept give back results/csl-cpu-diagnostics.json (the
    comparison `exposure diagnose` wrote while the checkpoints existed), to the 6 digits kept."""
    paths = sorted((ROOT / "results" / "csl-cpu").glob("*/seed*/diagnostics.json*"))
    results = [dg.read_run_record(p, ["baseline", "random_replace", "gradient_penalty"]) for p in paths]
    agg = dg.aggregate(results, dg.options_from_record(results[0].record["options"]))
    ref = json.loads((ROOT / "results" / "csl-cpu-diagnostics.json").read_text(encoding="utf-8"))
    for m, v in ref["methods"].items():
        for part in ("values", "vs_baseline"):
            for d, cells in v[part].items():
                for stat, cell in cells.items():
                    got = agg["methods"][m][part][d][stat]
                    for k in ("mean", "diff", "lo", "hi"):
                        if cell.get(k) is not None:
                            assert got[k] == pytest.approx(cell[k], abs=2e-6), (m, d, stat, k)


def test_the_command_writes_parseable_tables_the_json_and_a_png(kept, tmp_path):
    r = CliRunner().invoke(app, ["leaderboard", str(kept), "--output-dir", str(tmp_path), "--name", "lb",
                                 "--wall-seconds", "60"])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "lb.md").read_text(encoding="utf-8")
    assert check_tables(md, "leaderboard") == 4  # Δ, ranks, cost, diagnostics
    assert "ΔRouge-L estimate at beam 1" in md and "not measured" in md and "0 (reference)" in md
    doc = json.loads((tmp_path / "lb.json").read_text(encoding="utf-8"))
    assert [e["method"] for e in doc["methods"]][0] == "random_replace" and doc["wall_seconds"] == 60.0
    assert (tmp_path / "lb.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # without --wall-seconds: the grid's own record, which `exposure run` keeps in the directory
    assert "not recorded" in _board_md(kept, tmp_path)
    fileio.write_json(kept / "wall.json", {"seconds": 5400.0, "invocations": 3})
    assert "Wall time of the grid: 1.50 h (5400 s) (every `exposure run` invocation" in _board_md(kept, tmp_path)


def _board_md(kept, tmp_path) -> str:
    r = CliRunner().invoke(app, ["leaderboard", str(kept), "--output-dir", str(tmp_path), "--name", "lb2"])
    assert r.exit_code == 0, r.output
    return (tmp_path / "lb2.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("case", ["missing", "file", "empty", "no-baseline"])
def test_a_bad_source_is_one_line_and_exit_2(tmp_path, case):
    path = tmp_path / "src"
    if case == "file":
        path = tmp_path / "summary.json"
        path.write_text("{}")
    elif case == "empty":
        path.mkdir()
    elif case == "no-baseline":
        write_runs(path, diagnosed=())
        for seed in SEEDS:
            (run_path(path, "baseline", seed) / "metrics.json").unlink()
    r = CliRunner().invoke(app, ["leaderboard", str(path), "--output-dir", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert r.output.count("\n") == 1 and str(path) in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()  # nothing written


def test_the_packaged_spec_runs_every_registered_method_at_its_defaults():
    from exposure_cli.methods import METHODS
    from exposure_cli.spec import load_spec, method_label

    spec = load_spec(ROOT / "experiments" / "leaderboard.yaml")
    assert {m.name for m in spec.methods} == set(METHODS.names()) and len(spec.methods) == 9
    # a label carries only non-default parameters: every value written out is the method's default
    assert [method_label(m) for m in spec.methods] == [m.name for m in spec.methods]
    assert spec.methods[0].name == "baseline" and spec.train.seeds == [0, 1, 2] and spec.decode.beams == [1, 2, 3]


def test_a_method_that_failed_on_every_seed_keeps_a_row_that_says_so(tmp_path):
    root = write_runs(tmp_path / "kept", diagnosed=())
    for seed in SEEDS:
        d = run_path(root, "gradient_penalty", seed)
        (d / "metrics.json").unlink()
        fileio.write_json(d / "failed.json", {"reason": "loss is nan"})
    board = lb.build(lb.load_grid(root))
    assert board["methods"][-1]["method"] == "gradient_penalty" and board["failed_runs"] == 3
    row = next(r for r in lb.matrix(board).rows if r["method"] == "gradient_penalty")
    assert row["d_rouge_l_b1"] == row["rank_rouge_l_b1"] == row["seeds"] == "failed"
    assert row["step_cost"] == lb.NOT_RECORDED and row["sensitivity"] == lb.NOT_MEASURED
    assert check_tables(lb.markdown(lb.matrix(board)), "failed") == 4


def test_the_make_pipeline_on_a_tiny_grid_counts_the_real_warm_start(tmp_path, one_thread):
    """run → diagnose → keep → leaderboard, as `make leaderboard` chains them, on a tiny real grid
    with MRT: the cost reads what a real run records (its train.jsonl steps, its warm_start)."""
    from grids import write_grid

    spec = write_grid(tmp_path, methods=("baseline", "mrt"), seeds=(0, 1), epochs=1, log_every=2, bf16=False)
    out, kept = tmp_path / "runs", tmp_path / "kept"
    for argv in (["run", spec, "--out", out, "--device", "cpu", "--threads", "1"],
                 ["diagnose", out, "--device", "cpu", "--threads", "1", "--beams", "1,2"], ["keep", out, kept],
                 ["leaderboard", kept, "--output-dir", tmp_path / "board", "--wall-seconds", "5"]):
        r = CliRunner().invoke(app, [str(a) for a in argv])
        assert r.exit_code == 0, (argv[0], r.output)
    doc = json.loads((tmp_path / "board" / "leaderboard.json").read_text(encoding="utf-8"))
    mrt, base = (next(e for e in doc["methods"] if e["method"] == m) for m in ("mrt", "baseline"))
    own = [fileio.read_json(run_path(kept, m, s) / "metrics.json") for m in ("mrt", "baseline") for s in (0, 1)]
    assert doc["cost_clock"] == "cpu"  # every run of this version records its CPU seconds
    key = "train_cpu_seconds"
    mrt_s, base_s = sum(o[key] for o in own[:2]), sum(o[key] for o in own[2:])
    warm = sum(o["warm_start"][key] for o in own[:2])
    assert warm == pytest.approx(base_s)  # each seed's warm start is that seed's baseline run
    assert mrt["cost"]["steps"] == base["cost"]["steps"] == 6  # 96 examples / 16, one epoch, logged every 2
    assert mrt["cost"]["step_cost_with_warm_start"] == pytest.approx((mrt_s + warm) / base_s)
    assert mrt["diagnostics"] != lb.NOT_MEASURED and "sensitivity" in mrt["diagnostics"]
    assert mrt["vs_baseline"]["rouge_l"]["2"] is not None


def test_the_leaderboard_runs_on_the_testbed_profile():
    """leaderboard.yaml repeats study-cpu.yaml's model and training (a spec has no includes): they
    must not drift apart."""
    from dataclasses import asdict

    from pathlib import Path

    from exposure_cli.spec import load_spec

    specs = Path(__file__).resolve().parents[1] / "experiments"
    board, testbed = load_spec(specs / "leaderboard.yaml"), load_spec(specs / "study-cpu.yaml")
    assert asdict(board.model) == asdict(testbed.model)
    assert {**asdict(board.train), "seeds": None} == {**asdict(testbed.train), "seeds": None}
    assert (board.data, board.decode, board.score) == (testbed.data, testbed.decode, testbed.score)
