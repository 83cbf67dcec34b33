"""Crash safety, proven: a grid killed with SIGKILL at random moments (seeded) and at chosen ones
(between writing a file and renaming it into place), rerun each time, ends with the same summary,
predictions and hypotheses, byte for byte, as an uninterrupted run. Also: one runner per output
directory, a stale lock never blocks, and Ctrl-C stops cleanly and resumes.

`make torture` runs the random-kill test with 10 kills (EXPOSURE_TORTURE_KILLS=10).
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from grids import ROOT, exposure, results, start, write_grid

KILLS = int(os.environ.get("EXPOSURE_TORTURE_KILLS", "4"))
ARGS = ("--device", "cpu", "--threads", "1")


def _uninterrupted(tmp, **grid_keys):
    """A baseline + random_replace grid in `tmp` (write_grid's keys), run once without interruption:
    its spec and the result every interrupted run of it must end with."""
    spec = write_grid(tmp, methods=("baseline", "random_replace"), **grid_keys)
    return spec, _finish(spec, tmp / "reference")


@pytest.fixture(scope="module")
def long_grid(tmp_path_factory):
    """A grid long enough (about 20 s uninterrupted) that random kills land in every phase."""
    return _uninterrupted(tmp_path_factory.mktemp("long"), epochs=4, train=320, checkpoint_seconds=0.5, log_every=1)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A 2-method × 2-seed grid with a checkpoint after every second of training, and its
    uninterrupted result."""
    return _uninterrupted(tmp_path_factory.mktemp("grid"), epochs=3, train=160, checkpoint_seconds=0.3)


def _finish(spec, out):
    r = exposure("run", spec, "--out", out, *ARGS)
    assert r.returncode == 0, r.stderr
    return results(out)


def _phase(out) -> str:
    """Where the grid was when it died, read from its files: runs finished, and the current run's
    last log line (training step or epoch's dev selection), its test predictions, or the summary."""
    runs = sorted(out.glob("*/seed*"))
    done = [r for r in runs if (r / "metrics.json").exists()]
    if (out / "summary.json").exists():
        return "after the summary"
    current = [r for r in runs if r not in done]
    if not current:
        return f"{len(done)} runs done, before the summary"
    r = current[-1]
    if list(r.glob("predictions.beam*.tsv")):
        return f"{len(done)} done, decoding test"
    lines = (r / "train.jsonl").read_text().splitlines() if (r / "train.jsonl").exists() else []
    last = json.loads(lines[-1]) if lines else {}
    what = f"step {last['step']}" if "step" in last else (f"after epoch {last['epoch']}'s selection" if last else "start")
    return f"{len(done)} done, training ({what})"


def _log_lines(out) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in out.glob("*/seed*/train.jsonl"))


def _trigger(out, rng: random.Random):
    """A seeded kill condition: mostly after a random number of further training-log lines (steps
    and dev selections), sometimes when the next test-predictions file appears (mid-decoding), or
    right after the summary is written."""
    mode = rng.choices(["steps", "decoding", "summary"], weights=[7, 2, 1])[0]
    if mode == "steps":
        target = _log_lines(out) + rng.randint(1, 60)
        return mode, lambda: _log_lines(out) >= target
    if mode == "decoding":
        seen = len(list(out.glob("*/seed*/predictions.beam*.tsv")))
        return mode, lambda: len(list(out.glob("*/seed*/predictions.beam*.tsv"))) > seen
    return mode, lambda: (out / "summary.json").exists()


def test_random_sigkills_leave_a_grid_that_finishes_as_if_never_killed(long_grid, tmp_path):
    """KILLS SIGKILLs of an `exposure run` that resumes the last one's work, each at a seeded random
    point (a number of training steps, the next decoding, the summary); when a run finishes before
    its kill point, its result is checked and the grid starts over in a fresh directory."""
    spec, reference = long_grid
    rng = random.Random(20261125)
    kills, finished, attempt, phases = 0, 0, 0, []
    out = tmp_path / "out0"
    while kills < KILLS:
        mode, due = _trigger(out, rng)
        p = start("run", spec, "--out", out, *ARGS)
        while p.poll() is None and not due():
            time.sleep(0.01)
        if p.poll() is not None:  # done before its kill point: check it, start a fresh grid
            assert p.returncode == 0, p.stderr.read()
            assert results(out) == reference
            finished += 1
            attempt += 1
            out = tmp_path / f"out{attempt}"
            continue
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
        phases.append(f"{mode}: {_phase(out)}")
    assert _finish(spec, out) == reference
    assert not list(out.rglob(".*.tmp")) and not list(out.rglob("last.pt"))
    print(f"\n{kills} kills survived ({finished} grids finished between kills):\n  " + "\n  ".join(phases))


@pytest.mark.parametrize("n", [1, 7, 23])
def test_a_kill_between_writing_a_file_and_renaming_it_loses_nothing(grid, tmp_path, n):
    """The n-th atomic write of the grid is interrupted after its temporary is complete, before the
    rename: checkpoints, best weights, predictions, metrics or the summary, depending on n."""
    spec, reference = grid
    out = tmp_path / "out"
    r = exposure("run", spec, "--out", out, *ARGS, env={"EXPOSURE_FAULT": f"rename:{n}"})
    assert r.returncode == -signal.SIGKILL
    assert list(out.rglob(".*.tmp"))  # the temporary it died holding
    assert _finish(spec, out) == reference


def test_one_runner_per_output_directory_and_a_killed_one_does_not_block(grid, tmp_path):
    spec, reference = grid
    out = tmp_path / "out"
    first = start("run", spec, "--out", out, *ARGS)
    deadline = time.time() + 30
    while not (out / ".exposure.lock").exists() or not (out / ".exposure.lock").read_text():
        assert time.time() < deadline and first.poll() is None
        time.sleep(0.1)
    second = exposure("run", spec, "--out", out, *ARGS)
    assert second.returncode == 2
    line = second.stderr.strip()
    assert len(line.splitlines()) == 1 and f"in use by process {first.pid}" in line
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert _finish(spec, out) == reference  # the dead runner's lock is gone with it


def test_ctrl_c_exits_130_with_complete_files_and_the_same_command_resumes(grid, tmp_path):
    spec, reference = grid
    out = tmp_path / "out"
    p = start("run", spec, "--out", out, *ARGS)
    deadline = time.time() + 60
    while _log_lines(out) < 3:  # mid-training, whatever the machine's speed
        assert time.time() < deadline and p.poll() is None
        time.sleep(0.01)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not list(out.rglob(".*.tmp"))
    assert _finish(spec, out) == reference


def test_ctrl_c_during_start_up_exits_130_too(grid, tmp_path):
    """Ctrl-C while the command is still importing torch or building the grid: CPython 3.11 flags
    an interrupt that lands in an extension's Python code as unhandled and used to die by SIGINT
    (exit -2) after printing our message, or inside numpy's import, ending in an ImportError (exit 1);
    every moment of start-up must give 130."""
    spec, _ = grid
    for i, delay in enumerate([0.1, 0.2, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8, 2.1]):
        p = start("run", spec, "--out", tmp_path / f"out{i}", *ARGS)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert p.returncode in (130, 0), (delay, p.returncode, err)  # 0: finished first (a fast machine)
        assert "Traceback" not in err


def test_a_killed_pool_driver_takes_its_workers_with_it(grid, tmp_path):
    spec, reference = grid
    out = tmp_path / "out"
    p = start("run", spec, "--out", out, "--device", "cpu", "--jobs", "2")
    deadline = time.time() + 60
    while not list(out.glob("*/seed*/status.json")):
        assert time.time() < deadline and p.poll() is None
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(1.0)
    before = {q: q.stat().st_mtime_ns for q in out.rglob("*") if q.is_file()}
    time.sleep(1.5)
    after = {q: q.stat().st_mtime_ns for q in out.rglob("*") if q.is_file()}
    assert before == after  # no orphan kept writing
    r = exposure("run", spec, "--out", out, "--device", "cpu", "--jobs", "2")
    assert r.returncode == 0, r.stderr
    assert results(out) == reference  # --jobs 2 gives each run 1 thread, as the reference's --threads 1


def _steps_logged(run_dir) -> int:
    log = run_dir / "train.jsonl"
    return sum('"step"' in line for line in log.read_text().splitlines()) if log.exists() else 0


def _mid_epoch(run_dir) -> bool:
    """At least 3 steps into an epoch by its log (a log line every step)."""
    log = run_dir / "train.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    return len(lines) >= 3 and all('"step"' in line for line in lines[-3:])


# No periodic checkpoint, a log line every step: a last.pt mid-epoch can only be the signal's.
PREEMPTIBLE = ("--set", "train.checkpoint_seconds=0", "--set", "train.log_every=1")
# The grid's baseline runs alone (its runs are independent of each other): a quarter or half the time.
BASELINE = ("--set", "methods=[baseline]")
ONE_RUN = (*BASELINE, "--set", "train.seeds=[0]")


def _runs(files: dict, prefix: str = "baseline/") -> dict:
    """The predictions and hypotheses of the runs under `prefix` (a subset grid has its own summary)."""
    return {k: v for k, v in files.items() if k.startswith(prefix)}


EXECUTION = {"serial": ("--threads", "1", *ONE_RUN), "pool": ("--jobs", "2", *BASELINE),
             "ray": ("--executor", "ray", "--cpus-per-run", "1", *BASELINE)}


@pytest.mark.parametrize("executor", list(EXECUTION))
def test_sigterm_saves_last_pt_where_training_is_and_the_same_command_resumes(grid, tmp_path, executor):
    """A scheduler's preemption: SIGTERM mid-epoch exits 143 saying how to resume, after every run in
    training (in the driver, in each pool worker, in each Ray task) saved last.pt at the step it
    reached; the rerun ends byte for byte as the uninterrupted grid (checked for the serial executor:
    resuming is the same code whoever runs it, and each rerun costs a grid)."""
    if executor == "ray" and os.environ.get("EXPOSURE_ALLOW_NO_RAY"):
        pytest.importorskip("ray")
    spec, reference = grid
    out = tmp_path / "out"
    args = ("run", spec, "--out", out, "--device", "cpu", *PREEMPTIBLE, *EXECUTION[executor])
    p = start(*args)
    deadline = time.time() + 90
    while not any(_mid_epoch(r) for r in out.glob("*/seed*")):
        assert time.time() < deadline and p.poll() is None
        time.sleep(0.01)
    at_signal = sum(_steps_logged(r) for r in out.glob("*/seed*"))
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "rerun the same command to resume" in err and "Traceback" not in err
    assert not list(out.rglob(".*.tmp"))
    # Every run that had trained and not finished saved last.pt at its last step (the log has a line a
    # step; with checkpoint_seconds 0 only epoch ends save otherwise). A pool or Ray stop reaches its
    # runs some steps later on a loaded machine, so only the serial run is held to the signal's step.
    training = [r for r in out.glob("*/seed*") if _steps_logged(r) and not (r / "metrics.json").exists()]
    saved = [torch.load(r / "last.pt", weights_only=True)["state"] | {"logged": _steps_logged(r)} for r in training]
    assert saved and all(st["step"] == st["logged"] for st in saved), saved
    if executor != "serial":
        return
    assert 0 < saved[0]["batch_in_epoch"] and saved[0]["step"] <= at_signal + 2, (saved, at_signal)
    r = exposure(*args)
    assert r.returncode == 0, r.stderr
    assert _runs(results(out)) == _runs(reference, "baseline/seed0/")


# ------------------------------------------------------------------ full disks and damaged storage


def _can_mount() -> bool:
    return shutil.which("unshare") is not None and \
        subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_mount(), reason="a tmpfs in a private mount namespace (unshare -m) needs CAP_SYS_ADMIN")
def test_a_full_disk_is_one_line_and_the_same_command_resumes_once_space_is_freed(grid, tmp_path):
    """--out on a 64 kB tmpfs: the first checkpoint (best.pt, 75 kB, or last.pt, 220 kB, whichever
    comes first) does not fit. One line naming it, the filesystem and the space needed, exit 2, no
    temporary left; with the tmpfs grown, the same command finishes the run as the uninterrupted
    grid did."""
    spec, reference = grid
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cmd = shlex.join([sys.executable, "-m", "exposure_cli", "run", str(spec), "--out", str(mnt / "out"), *ARGS,
                      *ONE_RUN])
    script = f"""
mount -t tmpfs -o size=64k tmpfs {mnt} || exit 1
{cmd} >/dev/null 2>{tmp_path}/full.err; echo $? >{tmp_path}/full.code
cp -a {mnt}/out {tmp_path}/full
mount -o remount,size=16m {mnt}
{cmd} >/dev/null 2>{tmp_path}/freed.err; echo $? >{tmp_path}/freed.code
cp -a {mnt}/out {tmp_path}/freed
"""
    subprocess.run(["unshare", "-m", "sh", "-c", script], check=True, timeout=300, cwd=ROOT)
    err = (tmp_path / "full.err").read_text().strip()
    assert (tmp_path / "full.code").read_text().strip() == "2", err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(rf"{mnt}/out/baseline/seed0/(last|best)\.pt: no space left on the filesystem at {mnt} "
                     r"\(\d+ kB needed, \d+ kB free\)", err), err
    assert "rerun the same command" in err
    left = sorted(p.name for p in (tmp_path / "full").rglob("*"))
    assert not [n for n in left if n.endswith(".tmp") or n.endswith(".pt")], left
    assert (tmp_path / "freed.code").read_text().strip() == "0", (tmp_path / "freed.err").read_text()
    assert _runs(results(tmp_path / "freed")) == _runs(reference, "baseline/seed0/")


def _damage(path, n: int = 64) -> None:
    """Flip n bytes in the middle of a file, as a bad disk or a half-synced network filesystem would."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + n] = bytes(b ^ 0xFF for b in data[mid:mid + n])
    path.write_bytes(bytes(data))


def _kill_when(p, due, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    while not due():
        assert time.time() < deadline and p.poll() is None
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    out, err = p.communicate()
    return out + err


def test_damaged_checkpoints_and_outputs_are_noticed_and_the_grid_ends_as_if_never_damaged(grid, tmp_path):
    """64 flipped bytes: in last.pt after a kill (resumed from last.prev.pt), in the best.pt of a run
    in training (the run is redone), in a finished run's predictions (decoded again from best.pt),
    in a finished run's best.pt and hypotheses (redone). Each says so in one line; the grid ends
    byte for byte as the uninterrupted one (the grid's baseline runs, to save time)."""
    spec, reference = grid
    out = tmp_path / "out"
    first, second = out / "baseline" / "seed0", out / "baseline" / "seed1"

    p = start("run", spec, "--out", out, *ARGS, *BASELINE)
    _kill_when(p, lambda: (first / "last.prev.pt").exists() and (first / "last.pt").exists())
    _damage(first / "last.pt")
    p = start("run", spec, "--out", out, *ARGS, *BASELINE)
    said = _kill_when(p, lambda: (second / "best.pt").exists() and (second / "last.pt").exists())
    assert f"{first}/last.pt: damaged" in said and "resuming from last.prev.pt" in said, said
    _damage(second / "best.pt")
    r = exposure("run", spec, "--out", out, *ARGS, *BASELINE)
    assert r.returncode == 0, r.stderr
    assert f"{second}/best.pt: damaged" in r.stdout + r.stderr and "the run starts over" in r.stdout + r.stderr
    assert _runs(results(out)) == _runs(reference)

    _damage(first / "predictions.beam2.tsv")
    r = exposure("run", spec, "--out", out, *ARGS, *BASELINE)
    said = r.stdout + r.stderr
    assert r.returncode == 0 and f"{first}/predictions.beam2.tsv: damaged" in said and "again from best.pt" in said
    assert _runs(results(out)) == _runs(reference)

    _damage(second / "best.pt")
    _damage(second / "hypotheses.beam1.jsonl")
    r = exposure("run", spec, "--out", out, *ARGS, *BASELINE)
    said = r.stdout + r.stderr
    assert r.returncode == 0 and f"{second}/best.pt: damaged" in said and "the run starts over" in said, said
    assert _runs(results(out)) == _runs(reference)
