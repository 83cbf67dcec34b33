"""A campaign: one spec's grid run in blocks of seeds until its differences to baseline are known to
a stated precision, a CPU budget is spent, or the test set cannot give that precision.

The rule looks at interval widths only, never at a difference's sign or size, so that where the
campaign stops cannot depend on what it finds: after each complete block of seeds, every method's
difference to baseline on `goal.metric` at every beam has a 95% half-width from the seeds ×
test-examples components (stats.py). The campaign stops when

  - reached:     every half-width is ≤ goal.half_width;
  - unreachable: some difference's floor (its half-width with infinitely many seeds, from the
                 components measured so far) is ≥ goal.half_width: no number of seeds on this test
                 set gets there;
  - budget:      the kept runs have used goal.budget_hours CPU hours (wall seconds × torch threads
                 of training, dev selection, test decoding and diagnostics);

and otherwise runs the next block. Every run's small outputs and diagnostics go to KEEP as it
finishes (runner.grid.finish_run), optionally committed to git one run at a time, and a later campaign
(here or on another machine with KEEP checked out) continues from KEEP: kept runs are never run
again, and a block left half-done is finished before anything is decided. KEEP/campaign.json holds
the state after each decision.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import fileio, stats
from ..errors import UserError
from ..report.summary import run_seconds
from ..spec import Spec, method_label
from . import rundir
from .commit import Committer
from .grid import is_kept, rebuild_summary, run_spec
from .rundir import run_path

STATUS = "campaign.json"


@dataclass
class Goal:
    half_width: float = 0.5  # the 95% half-width every difference to baseline should reach (×100 points)
    metric: str = "rouge_l"
    block: int = 5  # seeds added at a time (the first block also estimates the components)
    budget_hours: float = 40.0  # CPU hours (wall × threads) after which no block starts


def block_seeds(spec: Spec, goal: Goal, index: int) -> list[int]:
    first = spec.train.seeds[0] if spec.train.seeds else 0
    return list(range(first + index * goal.block, first + (index + 1) * goal.block))


def kept_runs(spec: Spec, keep: Path, seeds: list[int]) -> int:
    return sum(is_kept(run_path(keep, method_label(m), s)) for m in spec.methods for s in seeds)


def next_block(spec: Spec, goal: Goal, keep: Path) -> int:
    """The first block of seeds not wholly kept."""
    b = 0
    while kept_runs(spec, keep, block_seeds(spec, goal, b)) == len(spec.methods) * goal.block:
        b += 1
    return b


def widths(summary: dict, goal: Goal) -> list[dict]:
    """Per method and beam: the difference's current half-width, its floor and the seeds that would
    reach goal.half_width (when the seed component is estimable). No difference itself."""
    rows = []
    for r in summary["rows"]:
        d = r.get("vs_baseline", {}).get(goal.metric)
        if d is None:
            continue
        c = d.get("components") or {}
        row = {"method": r["method"], "beam": r["beam"], "seeds": c.get("seeds"), "half_width": (d["hi"] - d["lo"]) / 2}
        if c.get("seed") is not None:
            comp = stats.Components.from_record(c)
            row["floor"] = stats.half_width_floor(comp)
            row["seeds_needed"] = stats.seeds_for_half_width(comp, goal.half_width)
        rows.append(row)
    return rows


def run_hours(keep: Path) -> list[tuple[int | None, float]]:
    """(seed, CPU hours) of each kept run: (training + dev selection + test decoding + diagnostics)
    wall seconds × the run's torch threads (1 when a run predates the threads record)."""
    hours = []
    for run in rundir.finished_runs(keep):
        m = fileio.read_json(run / rundir.METRICS)
        seconds = run_seconds(m)
        if (path := rundir.kept(run, rundir.DIAGNOSTICS)).exists():
            seconds += float(fileio.read_json(path).get("seconds") or 0)
        hours.append((m.get("seed"), seconds * int(m.get("threads") or 1) / 3600))
    return hours


def cpu_hours(hours: list[tuple[int | None, float]], seeds: list[int] | None = None) -> float:
    """The total of `run_hours`' runs (of `seeds` only, when given)."""
    return sum((h for s, h in hours if seeds is None or s in seeds), 0.0)


def verdict(rows: list[dict], goal: Goal, hours: float) -> str | None:
    """reached, unreachable, budget, or None (run another block); see the module docstring."""
    if rows and all(r["half_width"] <= goal.half_width for r in rows):
        return "reached"
    if any(r.get("floor") is not None and r["floor"] >= goal.half_width for r in rows):
        return "unreachable"
    if hours >= goal.budget_hours:
        return "budget"
    return None


def run_campaign(spec: Spec, out: Path, keep: Path, goal: Goal, device, console=None, executor: str = "serial",
                 threads: int = 0, commit: bool = False, say=print, retry_failed: bool = False,
                 **executor_options) -> dict:
    """Blocks of seeds until a verdict (module docstring); returns the final KEEP/campaign.json."""
    if not any(method_label(m) == "baseline" for m in spec.methods) or len(spec.methods) < 2:
        raise UserError("methods: a campaign needs baseline and at least one other method (it measures differences)")
    committer = Committer(keep, say) if commit else None

    summary = None  # KEEP's, as the last block's run_spec left it (None: read KEEP)
    while True:
        b = next_block(spec, goal, keep)
        started = kept_runs(spec, keep, block_seeds(spec, goal, b)) > 0  # a block left half-done: finish it first
        status = state(spec, goal, keep, b, summary)
        if b > 0 and not started:
            status["verdict"] = verdict(status["widths"], goal, status["cpu_hours"])
        fileio.write_json(keep / STATUS, status)
        if committer:
            committer.commit(keep / STATUS, f"campaign: {b} block(s) of {goal.block} seeds done, "
                                            f"{status['cpu_hours']:.1f} CPU hours, verdict {status.get('verdict')}")
        say(describe(status, goal))
        if status.get("verdict"):
            return status
        block = copy.deepcopy(spec)
        block.train.seeds = block_seeds(spec, goal, b)
        say(f"block {b + 1}: seeds {block.train.seeds[0]}-{block.train.seeds[-1]}")
        summary = run_spec(block, out, device, console, executor, threads, retry_failed, keep=keep,
                           on_finished=committer.run_finished if committer else None, **executor_options)
        if summary.get("failed"):
            status["verdict"] = "failed"
            status["failed"] = summary["failed"]
            fileio.write_json(keep / STATUS, status)
            return status


def progress(spec: Spec, goal: Goal, keep: Path) -> str:
    """Where a campaign stands, from KEEP alone (nothing runs): the decision state and the block under way."""
    b = next_block(spec, goal, keep)
    seeds = block_seeds(spec, goal, b)
    kept = [f"{method_label(m)} seed {s}" for m in spec.methods for s in seeds if is_kept(run_path(keep, method_label(m), s))]
    lines = [describe(state(spec, goal, keep, b), goal),
             f"block {b + 1} (seeds {seeds[0]}-{seeds[-1]}): {len(kept)} of {len(spec.methods) * goal.block} runs kept"]
    return "\n".join(lines + [f"  {k}" for k in kept])


def state(spec: Spec, goal: Goal, keep: Path, blocks_done: int, summary: dict | None = None) -> dict:
    """The decision state from KEEP's runs; `summary` is KEEP's summary when the caller has it (run_spec
    returns it), else it is rebuilt from the kept predictions."""
    hours = run_hours(keep)  # one (seed, hours) per finished run
    rows = widths(summary or rebuild_summary(keep), goal) if hours else []
    seeds = [s for b in range(blocks_done) for s in block_seeds(spec, goal, b)]
    # block_hours: the complete blocks' (what a block costs); cpu_hours also counts a block under way
    return {"goal": asdict(goal), "blocks_done": blocks_done, "seeds": seeds, "cpu_hours": round(cpu_hours(hours), 3),
            "block_hours": round(cpu_hours(hours, seeds), 3), "widths": rows, "verdict": None}


def block_cost(status: dict) -> float | None:
    """CPU hours a complete block has cost on average, or None before the first block."""
    done, hours = status["blocks_done"], status["block_hours"]
    return hours / done if done and hours else None


def blocks_to_budget(status: dict, goal: Goal) -> int | None:
    """More blocks after those done (a block under way is one of them) that the budget lets run at
    what a block has cost (a block starts while the hours spent are below the budget), or None
    before the first block."""
    cost = block_cost(status)
    if cost is None:
        return None
    return max(0, math.ceil((goal.budget_hours - cost * status["blocks_done"]) / cost))


def describe(status: dict, goal: Goal) -> str:
    lines = [f"{status['blocks_done']} block(s) done ({len(status['seeds'])} seeds), "
             f"{status['cpu_hours']:.1f} of {goal.budget_hours:g} CPU hours"]
    left = blocks_to_budget(status, goal)
    if left is not None and not status.get("verdict"):
        lines[0] += (f"; at {block_cost(status):.1f} CPU hours a block the budget runs at most {left} more "
                     f"({left * goal.block} seeds) unless the widths get there first")
    for r in status["widths"]:
        extra = (f", floor {r['floor']:.2f}, seeds for ±{goal.half_width:g}: {r['seeds_needed'] or 'unreachable'}"
                 if "floor" in r else "")
        lines.append(f"  {r['method']} beam {r['beam']}: ±{r['half_width']:.2f} on {r['seeds']} seeds{extra}")
    if status.get("verdict"):
        lines.append(f"verdict: {status['verdict']}")
    return "\n".join(lines)
