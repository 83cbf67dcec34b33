"""`exposure bench grid`: how many runs an hour each executor gets through on the same grid.

Each executor runs the same small grid from scratch in a fresh `exposure run` process (so start-up,
Ray's included, is counted as a user would pay it), in a temporary directory; runs/hour is the
grid's runs over its wall time. The summaries must agree byte for byte — a faster executor that
changed the result would be a bug, so a disagreement is reported.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import UserError
from ..runner import rundir

EXECUTOR_ARGS = {
    "serial": ["--executor", "serial", "--threads", "1"],
    "serial2": ["--executor", "serial", "--threads", "2"],
    "pool": ["--jobs", "2"],
    "ray": ["--executor", "ray", "--cpus-per-run", "1"],
}


def bench_grid(spec: str, overrides: list[str], executors: list[str], device: str = "cpu") -> dict:
    unknown = [e for e in executors if e not in EXECUTOR_ARGS]
    if unknown:
        raise UserError(f"--executors: unknown {unknown[0]!r} (expected some of {', '.join(EXECUTOR_ARGS)})")
    out: dict = {"spec": spec, "overrides": overrides, "executors": {}}
    summaries = {}
    with tempfile.TemporaryDirectory(prefix="exposure-bench-grid-") as tmp:
        for name in executors:
            run_dir = Path(tmp) / name
            cmd = [sys.executable, "-m", "exposure_cli", "run", spec, "--out", str(run_dir), "--device", device,
                   *[a for o in overrides for a in ("--set", o)], *EXECUTOR_ARGS[name]]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            if r.returncode != 0:
                raise UserError(f"bench grid: the {name} run failed: {r.stderr.strip().splitlines()[-1:]}")
            runs = len(rundir.finished_runs(run_dir))
            summaries[name] = (run_dir / rundir.SUMMARY).read_bytes()
            out["executors"][name] = {"seconds": round(seconds, 1), "runs": runs,
                                      "runs_per_hour": round(runs * 3600 / seconds, 1)}
    # every executor but serial2 gives each run one thread: their summaries must be identical
    one_thread = [n for n in summaries if n != "serial2"]
    out["same_summary"] = all(summaries[n] == summaries[one_thread[0]] for n in one_thread)
    base = out["executors"].get("serial")
    if base:
        for v in out["executors"].values():
            v["speedup_vs_serial"] = round(base["seconds"] / v["seconds"], 2)
    return out
