"""`exposure run --keep` (each run's small outputs and diagnostics kept as it finishes, kept runs never
run again) and `exposure campaign` (blocks of seeds until the differences' half-widths reach a goal,
resumable from the kept runs alone, committed run by run)."""

import json
import re
import shutil
import subprocess

import pytest
import torch
import yaml

from exposure_cli.runner import campaign as cp
from exposure_cli import fileio
from exposure_cli import diagnose as dg
from exposure_cli import train as train_mod
from exposure_cli.errors import UserError
from exposure_cli.decode.predictions import read_columns
from exposure_cli.runner.grid import rebuild_summary, run_spec
from exposure_cli.spec import load_spec
from grids import exposure, write_grid

CPU = torch.device("cpu")


@pytest.fixture()
def spec(tmp_path, one_thread):
    return load_spec(str(write_grid(tmp_path, methods=("baseline", "random_replace"), seeds=(0, 1), epochs=1,
                                    train=48, bf16=False)), [])


def _count_runs(monkeypatch) -> list[tuple[str, int]]:
    """Record every run that trains (prepare_run is where a run starts or resumes)."""
    calls, real = [], train_mod.prepare_run

    def counting(spec, method_spec, seed, *a, **k):
        calls.append((method_spec.name, seed))
        return real(spec, method_spec, seed, *a, **k)

    monkeypatch.setattr(train_mod, "prepare_run", counting)
    return calls


def test_kept_runs_carry_their_diagnostics_and_are_never_run_again(tmp_path, spec, monkeypatch):
    out, keep = tmp_path / "out", tmp_path / "kept"
    summary = run_spec(spec, out, CPU, keep=keep)
    for m in ("baseline", "random_replace"):
        for s in (0, 1):
            run = keep / m / f"seed{s}"
            assert {"metrics.json", "diagnostics.json.xz", "spec.yaml", "train.jsonl", "predictions.beam2.tsv.xz"} \
                == {p.name for p in run.iterdir()} - {"predictions.beam1.tsv.xz"}
            # compressed, the kept predictions are the live run's but for the (test split's) sources
            live_cols = read_columns(out / m / f"seed{s}" / "predictions.beam2.tsv")
            kept_cols = read_columns(run / "predictions.beam2.tsv.xz")
            assert kept_cols == {**live_cols, "source": [""] * len(live_cols["source"])}
            assert not any(p.suffix == ".pt" for p in run.iterdir())
            # the recorded diagnostics are what a fresh measurement of the live run gives
            live = dg.diagnose_run(dg.load_run_data(out / m / f"seed{s}", dg.Options(beams=(1, 2)), CPU),
                                   dg.Options(beams=(1, 2)))
            kept = dg.recorded_result(run)
            for d, stats in live.ratios.items():
                for k, r in stats.items():
                    assert kept.ratios[d][k].num == pytest.approx(r.num, abs=1e-6)
                    assert kept.ratios[d][k].den == pytest.approx(r.den, abs=1e-6)
    # another machine: only the kept runs; nothing trains again, and the summary is the same
    shutil.rmtree(out)
    calls = _count_runs(monkeypatch)
    again = run_spec(spec, tmp_path / "elsewhere", CPU, keep=keep)
    assert calls == []
    assert again["rows"] == summary["rows"]
    # one kept run lost: that one run alone trains
    shutil.rmtree(keep / "random_replace" / "seed1")
    run_spec(spec, tmp_path / "elsewhere", CPU, keep=keep)
    assert calls == [("random_replace", 1)]


def test_diagnose_recorded_aggregates_kept_runs_as_the_live_ones(tmp_path, spec):
    out, keep = tmp_path / "out", tmp_path / "kept"
    run_spec(spec, out, CPU, keep=keep)
    live = exposure("diagnose", out, "--beams", "1,2", "--json", "--device", "cpu")
    kept = exposure("diagnose", keep, "--recorded", "--json")
    assert live.returncode == 0 and kept.returncode == 0, live.stderr + kept.stderr
    a, b = json.loads(live.stdout), json.loads(kept.stdout)
    for m in a["methods"]:
        for d, stats in a["methods"][m]["values"].items():
            for k, cell in stats.items():
                assert b["methods"][m]["values"][d][k]["per_seed"] == pytest.approx(cell["per_seed"], abs=1e-5)
    (keep / "baseline" / "seed0" / "diagnostics.json.xz").unlink()
    r = exposure("diagnose", keep, "--recorded")
    assert r.returncode == 2 and "baseline/seed0: no diagnostics.json" in r.stderr and "Traceback" not in r.stderr


def test_a_kept_directory_mixes_seed_blocks_but_not_experiments(tmp_path, spec):
    keep = tmp_path / "kept"
    for seeds in ([0, 1], [2, 3]):
        spec.train.seeds = seeds
        run_spec(spec, tmp_path / "out", CPU, keep=keep)
    summary = rebuild_summary(keep)
    assert {r["n_seeds"] for r in summary["rows"]} == {4}
    other = keep / "baseline" / "seed3" / "spec.yaml"
    other.write_text(other.read_text(encoding="utf-8").replace("lr: 0.003", "lr: 0.004"), encoding="utf-8")
    with pytest.raises(UserError, match="seed3/spec.yaml: a different experiment"):
        rebuild_summary(keep)


def test_verdict_looks_at_widths_floors_and_hours_only():
    goal = cp.Goal(half_width=0.5, budget_hours=10)
    rows = [{"half_width": 0.4, "floor": 0.3}, {"half_width": 0.5, "floor": 0.3}]
    assert cp.verdict(rows, goal, 12.0) == "reached"
    assert cp.verdict([*rows, {"half_width": 0.9, "floor": 0.3}], goal, 3.0) is None
    assert cp.verdict([*rows, {"half_width": 0.9, "floor": 0.5}], goal, 3.0) == "unreachable"
    assert cp.verdict([*rows, {"half_width": 0.9}], goal, 10.0) == "budget"


def test_cpu_hours_are_wall_seconds_times_threads(tmp_path):
    for name, secs, threads, diag, seed in (("a", (3600, 360, 240), 2, 100.0, 0), ("b", (1800, 0, 0), None, None, 0),
                                            ("b", (720, 0, 0), None, None, 5)):
        run = tmp_path / name / f"seed{seed}"
        run.mkdir(parents=True)
        m = dict(zip(("train_seconds", "dev_seconds", "eval_seconds"), secs), seed=seed,
                 **({"threads": threads} if threads else {}))
        (run / "metrics.json").write_text(json.dumps(m))
        if diag:
            (run / "diagnostics.json").write_text(json.dumps({"seconds": diag}))
    assert cp.cpu_hours(cp.run_hours(tmp_path), seeds=[0, 1]) == pytest.approx(((3600 + 360 + 240 + 100) * 2 + 1800) / 3600)
    assert cp.cpu_hours(cp.run_hours(tmp_path)) == pytest.approx(((3600 + 360 + 240 + 100) * 2 + 1800 + 720) / 3600)


def test_a_campaign_adds_blocks_until_a_verdict_resumes_from_kept_runs_and_commits_each(tmp_path, spec,
                                                                                        monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@t"], ["config", "user.name", "t"],
                 ["commit", "-q", "--allow-empty", "-m", "start"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    keep, goal = repo / "results" / "study", cp.Goal(block=2, budget_hours=100)
    decisions = iter([None, "budget"])
    seen = []

    def scripted(rows, goal, hours):  # what the rule was shown: widths only, never a difference
        seen.append(rows)
        return next(decisions)

    monkeypatch.setattr(cp, "verdict", scripted)
    calls = _count_runs(monkeypatch)
    status = cp.run_campaign(spec, tmp_path / "out", keep, goal, CPU, commit=True, say=lambda _: None)
    assert status["verdict"] == "budget" and status["seeds"] == [0, 1, 2, 3] and status["blocks_done"] == 2
    assert sorted(set(calls)) == [(m, s) for m in ("baseline", "random_replace") for s in range(4)]
    assert all(set(r) <= {"method", "beam", "seeds", "half_width", "floor", "seeds_needed"} for rows in seen
               for r in rows) and {r["seeds"] for r in seen[0]} == {2}
    log = subprocess.run(["git", "log", "--format=%s"], cwd=repo, capture_output=True, text=True).stdout.splitlines()
    assert sum(s.startswith("campaign: baseline seed") for s in log) == 4 and len(log) == 1 + 8 + 3
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""
    assert json.loads((keep / "campaign.json").read_text())["verdict"] == "budget"
    where = cp.progress(spec, goal, keep)
    assert where.startswith("2 block(s) done (4 seeds)") and "block 3 (seeds 4-5): 0 of 4 runs kept" in where

    # another machine, with only the kept runs, a block left half-done: that block is finished
    # before anything is decided, and no kept run trains again
    shutil.rmtree(keep / "random_replace" / "seed3")
    calls.clear()
    decisions, seen[:] = iter(["reached"]), []
    status = cp.run_campaign(spec, tmp_path / "elsewhere", keep, goal, CPU, commit=True, say=lambda _: None)
    assert calls == [("random_replace", 3)] and len(seen) == 1 and status["verdict"] == "reached"


def test_campaign_status_runs_nothing(tmp_path, spec):
    spec_path = write_grid(tmp_path, methods=("baseline", "random_replace"))
    r = exposure("campaign", spec_path, "--keep", tmp_path / "kept", "--status", "--block", "2")
    assert r.returncode == 0 and "block 1 (seeds 0-1): 0 of 4 runs kept" in r.stdout
    assert not (tmp_path / "kept" / "baseline").exists() and not (tmp_path / "runs").exists()


def test_a_campaign_needs_a_baseline_and_a_git_tree_to_commit_to(tmp_path, spec):
    spec.methods = spec.methods[1:]
    with pytest.raises(UserError, match="needs baseline"):
        cp.run_campaign(spec, tmp_path / "out", tmp_path / "k", cp.Goal(), CPU)
    r = exposure("campaign", write_grid(tmp_path, methods=("baseline", "random_replace")), "--keep", tmp_path / "nogit", "--commit")
    assert r.returncode == 2 and "not inside a git work tree" in r.stderr and "Traceback" not in r.stderr


def test_a_failed_run_stops_the_campaign_and_retry_failed_starts_it_over(tmp_path, spec, monkeypatch):
    real = train_mod.run_one

    def diverging(spec, method, seed, run_dir, device, **kw):
        if method.name == "random_replace" and seed == 1:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "failed.json").write_text(json.dumps({"reason": "non-finite loss at step 3"}))
            return {"method": "random_replace", "seed": seed, "failed": {"reason": "non-finite loss at step 3"}}
        return real(spec, method, seed, run_dir, device, **kw)

    monkeypatch.setattr(train_mod, "run_one", diverging)
    keep, goal = tmp_path / "kept", cp.Goal(block=2)
    status = cp.run_campaign(spec, tmp_path / "out", keep, goal, CPU, say=lambda _: None)
    assert status["verdict"] == "failed" and status["failed"][0]["seed"] == 1
    assert not (keep / "random_replace" / "seed1").exists() and (keep / "baseline" / "seed1" / "metrics.json").exists()
    monkeypatch.setattr(train_mod, "run_one", real)
    monkeypatch.setattr(cp, "verdict", lambda rows, goal, hours: "reached")
    again = cp.run_campaign(spec, tmp_path / "out", keep, goal, CPU, say=lambda _: None)
    assert again["verdict"] == "failed"  # still failed: failed.json stands until --retry-failed
    again = cp.run_campaign(spec, tmp_path / "out", keep, goal, CPU, say=lambda _: None, retry_failed=True)
    assert again["verdict"] == "reached" and (keep / "random_replace" / "seed1" / "metrics.json").exists()


def test_another_experiment_reuses_the_identical_runs_and_warm_starts_from_them(tmp_path, spec, monkeypatch):
    """A leaderboard sharing the campaign's baseline runs: the identical runs (same everything but the
    experiment's name, methods and seed list) are copied, not trained; a warm start starts from the
    copied best.pt; a run that differs in one parameter trains."""
    from dataclasses import replace

    from exposure_cli.spec import MethodSpec

    out, keep = tmp_path / "out", tmp_path / "kept"
    run_spec(spec, out, CPU, keep=keep)
    other = replace(spec, name="board", methods=[  # the run to train first, as a costliest-first queue may
        MethodSpec("random_replace", {"prob": 0.9}), MethodSpec("baseline", {}),
        MethodSpec("random_replace", {"prob": 0.5, "pool": "target"}), MethodSpec("scst", {"samples": 1})])  # defaults
    calls = _count_runs(monkeypatch)
    real = train_mod.prepare_run

    def kept_first(spec, method_spec, seed, *a, **k):  # the copies are kept before anything trains
        assert all((tmp_path / "board-kept" / m / f"seed{s}" / "metrics.json").exists()
                   for m in ("baseline", "random_replace") for s in (0, 1))
        return real(spec, method_spec, seed, *a, **k)

    monkeypatch.setattr(train_mod, "prepare_run", kept_first)
    summary = run_spec(other, tmp_path / "board", CPU, keep=tmp_path / "board-kept", reuse=(out,))
    assert sorted(calls) == [("random_replace", 0), ("random_replace", 1), ("scst", 0), ("scst", 1)]
    for s in (0, 1):
        for m in ("baseline", "random_replace"):
            copied = tmp_path / "board-kept" / m / f"seed{s}"
            assert fileio.read_json(copied / "metrics.json") == fileio.read_json(out / m / f"seed{s}" / "metrics.json")
            assert yaml.safe_load((copied / "spec.yaml").read_text(encoding="utf-8"))["name"] == "board"
        warm = fileio.read_json(tmp_path / "board" / "scst" / f"seed{s}" / "metrics.json")["warm_start"]
        assert warm["from"] == str(tmp_path / "board" / "baseline" / f"seed{s}")
    assert {r["method"] for r in summary["rows"]} >= {"baseline", "random_replace(prob=0.9)", "scst"}
    # from a kept directory alone (no checkpoints): the copy goes to KEEP; a spec differing in the
    # training (here the learning rate) shares no run with it
    calls.clear()
    run_spec(replace(other, name="board2", methods=[MethodSpec("baseline", {})]), tmp_path / "b2", CPU,
             keep=tmp_path / "b2-kept", reuse=(keep,))
    assert calls == [] and (tmp_path / "b2-kept" / "baseline" / "seed1" / "predictions.beam2.tsv.xz").exists()
    changed = replace(other, name="board3", methods=[MethodSpec("baseline", {})], train=replace(spec.train, lr=1e-3))
    run_spec(changed, tmp_path / "b3", CPU, keep=tmp_path / "b3-kept", reuse=(keep, out))
    assert calls == [("baseline", 0), ("baseline", 1)]


def test_a_run_early_stopping_never_stopped_is_reused_where_stopping_is_later_or_off(tmp_path, spec, monkeypatch):
    """Patience p that never stopped a run made the run of every patience ≥ p and of none (the
    screen's no-early-stopping toggle beside the campaign); a run it stopped, or a smaller patience,
    is trained."""
    from dataclasses import replace

    stopping = replace(spec, train=replace(spec.train, epochs=2, patience=2))  # 2 epochs: nothing stops
    run_spec(stopping, tmp_path / "out", CPU, keep=tmp_path / "kept")
    stopped = tmp_path / "kept" / "random_replace" / "seed1" / "metrics.json"
    fileio.write_json(stopped, {**fileio.read_json(stopped), "epochs": 1, "stopped_early": True})
    calls = _count_runs(monkeypatch)
    for name, patience, trained in [("off", None, [("random_replace", 1)]), ("later", 3, [("random_replace", 1)]),
                                    ("sooner", 1, [(m, s) for m in ("baseline", "random_replace") for s in (0, 1)])]:
        calls.clear()
        other = replace(stopping, name=name, train=replace(stopping.train, patience=patience))
        run_spec(other, tmp_path / name, CPU, keep=tmp_path / f"{name}-kept", reuse=(tmp_path / "kept",))
        assert sorted(calls) == trained, name
        if name == "off":
            copied = tmp_path / "off-kept" / "baseline" / "seed0" / "metrics.json"
            assert fileio.read_json(copied) == fileio.read_json(tmp_path / "kept" / "baseline" / "seed0" / "metrics.json")


def test_run_commit_commits_each_kept_run_and_the_reused_ones(tmp_path):
    """`exposure run --keep --commit --reuse`, as `make leaderboard` beside a campaign: one commit per
    run, those --reuse copied into KEEP first (before any training: a kill then loses none of them),
    nothing left uncommitted."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@t"], ["config", "user.name", "t"],
                 ["commit", "-q", "--allow-empty", "-m", "start"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    first = write_grid(tmp_path, methods=("baseline",), seeds=(0, 1), epochs=1, train=48, bf16=False)
    r = exposure("run", first, "--out", tmp_path / "a", "--keep", tmp_path / "a-kept", "--threads", "1")
    assert r.returncode == 0, r.stderr
    # into a log (not a terminal) a line per run as it ends: the bars draw only at the end there
    for s in (0, 1):
        assert re.search(rf"^baseline seed {s}: 1 epochs, best 1, \d+\.\d min \[\d/2 runs\]$", r.stdout, re.M), r.stdout
    board = tmp_path / "board.yaml"
    raw = yaml.safe_load(first.read_text(encoding="utf-8"))
    board.write_text(yaml.safe_dump({**raw, "name": "board", "methods": ["baseline", "random_replace"]}), encoding="utf-8")
    keep = repo / "results" / "board"
    r = exposure("run", board, "--out", tmp_path / "b", "--keep", keep, "--reuse", tmp_path / "a-kept", "--commit",
                 "--threads", "1")
    assert r.returncode == 0, r.stderr
    log = subprocess.run(["git", "log", "--format=%s"], cwd=repo, capture_output=True, text=True).stdout.splitlines()
    runs = [s.split(" kept")[0].split(": ")[1] for s in reversed(log) if " seed " in s]
    assert sorted(runs[:2]) == ["baseline seed 0", "baseline seed 1"]
    assert sorted(runs[2:]) == ["random_replace seed 0", "random_replace seed 1"]
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""
    assert (keep / "baseline" / "seed1" / "metrics.json").exists()
    r = exposure("run", board, "--commit")
    assert r.returncode == 2 and "--commit: only with --keep" in r.stderr and "Traceback" not in r.stderr


def test_the_wall_clock_counts_running_time_across_invocations_but_not_a_stop(tmp_path):
    """runner.wall_clock on a clock the test moves: 0.3 s running, then a jump of 100 s while "stopped"
    (what SIGSTOP or a suspended machine looks like to the clock thread), then 0.3 s more. The file
    is on disk while the grid runs (a kill keeps it), and a second invocation adds to it."""
    import time

    from exposure_cli.runner.grid import wall_clock, wall_tick

    assert wall_tick(3.0, tick=5.0) == 3.0 and wall_tick(20.0, tick=5.0) == 20.0 and wall_tick(21.0, tick=5.0) == 5.0
    offset, path = [0.0], tmp_path / "wall.json"
    clock = lambda: time.monotonic() + offset[0]  # noqa: E731
    with wall_clock(tmp_path, tick=0.02, write_every=0.05, clock=clock):
        time.sleep(0.3)
        assert 0.1 < fileio.read_json(path)["seconds"] < 0.4  # written while running
        offset[0] += 100.0
        time.sleep(0.3)
    first = fileio.read_json(path)
    assert 0.5 < first["seconds"] < 0.9 and first["invocations"] == 1
    with wall_clock(tmp_path, tick=0.02, write_every=0.05, clock=clock):
        time.sleep(0.2)
    second = fileio.read_json(path)
    assert 0.15 < second["seconds"] - first["seconds"] < 0.4 and second["invocations"] == 2


def test_a_run_finished_but_not_kept_is_kept_before_anything_trains(tmp_path, spec, monkeypatch):
    """Killed between its metrics.json and its keeping (or copied by --reuse in an earlier
    invocation): kept first, not when a costliest-first queue reaches it."""
    out, keep = tmp_path / "out", tmp_path / "kept"
    spec.methods = spec.methods[::-1]  # random_replace first: the serial executor reaches it first
    run_spec(spec, out, CPU, keep=keep)
    shutil.rmtree(keep / "baseline")
    shutil.rmtree(keep / "random_replace" / "seed1")
    shutil.rmtree(out / "random_replace" / "seed1")
    real = train_mod.prepare_run

    def kept_first(spec, method_spec, seed, *a, **k):
        assert (keep / "baseline" / "seed0" / "metrics.json").exists() and (keep / "baseline" / "seed1").exists()
        return real(spec, method_spec, seed, *a, **k)

    monkeypatch.setattr(train_mod, "prepare_run", kept_first)
    ended = []
    run_spec(spec, out, CPU, keep=keep, on_finished=lambda t, r: ended.append((t.label, t.seed, "failed" in r)))
    assert (keep / "random_replace" / "seed1" / "metrics.json").exists()
    # each reported as it is kept (a --commit commits it there), the upfront ones first
    assert ended == [("baseline", 0, False), ("baseline", 1, False), ("random_replace", 1, False)]


def test_status_says_how_many_blocks_the_budget_still_runs():
    goal = cp.Goal(half_width=0.5, block=5, budget_hours=40)
    status = {"blocks_done": 1, "seeds": list(range(5)), "cpu_hours": 6.6, "block_hours": 6.6, "widths": [],
              "verdict": None}
    # blocks start while under 40 h: after 1 + 5 blocks 39.6 h, so a 6th more block runs (46.2 h)
    assert cp.blocks_to_budget(status, goal) == 6
    assert "at 6.6 CPU hours a block the budget runs at most 6 more (30 seeds)" in cp.describe(status, goal)
    assert cp.blocks_to_budget({**status, "blocks_done": 2, "cpu_hours": 13.2, "block_hours": 13.2}, goal) == 5
    assert cp.blocks_to_budget({**status, "blocks_done": 7, "cpu_hours": 46.2, "block_hours": 46.2}, goal) == 0
    assert cp.blocks_to_budget({**status, "blocks_done": 0, "cpu_hours": 0.0, "block_hours": 0.0}, goal) is None
    # in the middle of block 2: 3.1 h of it spent; a block still costs block 1's 6.6 h, and the
    # budget still runs 6 after block 1, block 2 among them
    mid = {**status, "cpu_hours": 9.7, "block_hours": 6.6}
    assert cp.blocks_to_budget(mid, goal) == 6
    assert "9.7 of 40 CPU hours; at 6.6 CPU hours a block the budget runs at most 6 more" in cp.describe(mid, goal)
