"""Executors: the same grid gives the same summary, byte for byte, whether its runs go one after
another in this process, two at a time in worker processes, or to Ray tasks on a real local Ray
instance — including when a Ray worker is killed mid-run and its task retried."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from exposure_cli.cli import app
from grids import ROOT, results, write_grid

runner = CliRunner()


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    spec = write_grid(tmp, methods=("baseline", "random_replace"), epochs=2, train=128, checkpoint_seconds=0.3)
    r = runner.invoke(app, ["run", str(spec), "--out", str(tmp / "serial"), "--device", "cpu", "--threads", "1"])
    assert r.exit_code == 0, r.output
    return spec, results(tmp / "serial")


def test_jobs_2_gives_the_summary_of_jobs_1_with_one_thread(grid, tmp_path):
    spec, reference = grid
    r = runner.invoke(app, ["run", str(spec), "--out", str(tmp_path / "pool"), "--device", "cpu", "--jobs", "2"])
    assert r.exit_code == 0, r.output
    assert "pool executor, 2 jobs" in " ".join(r.output.split())
    assert results(tmp_path / "pool") == reference
    summary = json.loads((tmp_path / "pool" / "summary.json").read_text())
    assert [(x["method"], x["seed"]) for x in summary["runs"]] == [("baseline", 0), ("baseline", 1),
                                                                    ("random_replace", 0), ("random_replace", 1)]


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray") if os.environ.get("EXPOSURE_ALLOW_NO_RAY") else __import__("ray")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    print(f"ray start-up {time.perf_counter() - t0:.1f} s")
    yield ray
    ray.shutdown()


def test_ray_tasks_give_the_same_summary_even_when_a_worker_is_killed(grid, tmp_path, local_ray):
    spec, reference = grid
    out = tmp_path / "ray"
    r = runner.invoke(app, ["run", str(spec), "--out", str(out), "--device", "cpu", "--executor", "ray",
                            "--cpus-per-run", "1"])
    assert r.exit_code == 0, r.output
    assert results(out) == reference
    assert not list(out.glob(".exposure-ray-marker-*"))

    # again, killing the worker of the first run that has trained a few steps
    out = tmp_path / "ray-killed"
    killed = []

    def kill_one():
        deadline = time.time() + 120
        while not killed and time.time() < deadline:
            for status in out.glob("*/seed*/status.json"):
                try:
                    s = json.loads(status.read_text())
                except ValueError:
                    continue
                if s.get("completed", 0) >= 10 and "pid" in s:
                    os.kill(s["pid"], signal.SIGKILL)
                    killed.append((status.parent, s["pid"], s["completed"]))
                    return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_one)
    watcher.start()
    r = runner.invoke(app, ["run", str(spec), "--out", str(out), "--device", "cpu", "--executor", "ray",
                            "--cpus-per-run", "1"])
    watcher.join()
    assert r.exit_code == 0, r.output
    assert killed, "no worker was killed"
    run_dir, pid, _ = killed[0]
    assert json.loads((run_dir / "status.json").read_text())["pid"] != pid  # a new worker finished it
    assert results(out) == reference


def test_ray_storage_check_refuses_a_directory_the_workers_cannot_see(local_ray, tmp_path):
    from exposure_cli.errors import UserError
    from exposure_cli.executors.ray import RayExecutor

    with pytest.raises(UserError, match="must be a filesystem every node mounts"):
        RayExecutor()._run([], None, str(tmp_path / "not-written-marker"))


def test_executor_ray_without_ray_installed_is_one_line_exit_2(tmp_path):
    spec = write_grid(tmp_path)
    code = ("import sys; sys.modules['ray'] = None\n"  # `import ray` now raises ImportError
            "from exposure_cli.cli import main; sys.argv = ['exposure'] + sys.argv[1:]; main()")
    r = subprocess.run([sys.executable, "-c", code, "run", str(spec), "--out", str(tmp_path / "o"),
                        "--executor", "ray"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == ("error: --executor ray needs Ray, an optional extra: pip install 'exposure[ray]' "
                                "(or make install EXTRAS=ray)")
    assert not (tmp_path / "o").exists()
