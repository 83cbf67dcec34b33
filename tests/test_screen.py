"""The ablation screen's interaction: the toggle's change of a method's difference to baseline,
paired by seed and test example, against a hand computation and a simulation with a known answer."""

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from exposure_cli.cli import app
from exposure_cli.report.leaderboard import Grid
from exposure_cli.runner.screen import interaction

N = 200


def grid(scores: dict) -> Grid:
    """A grid of per-example Rouge-L scores only: (method, beam, seed) → array in [0, 1]."""
    return Grid(Path("."), None, [], {k: {"rouge_l": v} for k, v in scores.items()}, {"rows": []})


def test_interaction_is_the_mean_change_of_the_paired_effect_by_hand():
    rng = np.random.default_rng(0)
    ref, tog = {}, {}
    for s in (0, 1, 2):
        b_ref, b_tog = rng.uniform(0.2, 0.6, N), rng.uniform(0.2, 0.6, N)
        ref[("baseline", 1, s)], ref[("m", 1, s)] = b_ref, b_ref + rng.normal(0.010, 0.05, N)
        tog[("baseline", 1, s)], tog[("m", 1, s)] = b_tog, b_tog + rng.normal(0.025, 0.05, N)
    ref[("baseline", 1, 3)], ref[("m", 1, 3)] = np.full(N, 0.5), np.full(N, 0.9)  # a seed only the reference has
    want = np.mean([(tog[("m", 1, s)] - tog[("baseline", 1, s)]) - (ref[("m", 1, s)] - ref[("baseline", 1, s)])
                    for s in (0, 1, 2)]) * 100
    got = interaction(grid(ref), grid(tog), "m", 1, "rouge_l")
    assert got["seeds"] == [0, 1, 2] and got["diff"] == pytest.approx(want, abs=1e-9)
    back = interaction(grid(tog), grid(ref), "m", 1, "rouge_l")
    assert back["diff"] == pytest.approx(-want) and back["hi"] == pytest.approx(-got["lo"])


def test_the_interaction_interval_covers_a_known_change():
    """300 simulated screens, 3 seeds each, with a seed effect, a shared per-example effect and noise
    in every cell; the toggle raises the method's effect by exactly 1.5 points."""
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(300):
        hard = rng.normal(0, 0.05, N)  # an example's difficulty, shared by every cell
        gain = rng.normal(0, 0.04, N)  # how much the method helps this example, in both experiments
        ref, tog = {}, {}
        for s in (0, 1, 2):
            for cells, extra in ((ref, 0.0), (tog, 0.015)):
                b = 0.4 + hard + rng.normal(0, 0.01) + rng.normal(0, 0.12, N)
                cells[("baseline", 1, s)] = b
                cells[("m", 1, s)] = 0.4 + hard + gain + extra + rng.normal(0, 0.01) + rng.normal(0, 0.12, N)
        r = interaction(grid(ref), grid(tog), "m", 1, "rouge_l")
        hits += r["lo"] <= 1.5 <= r["hi"]
    assert 0.91 <= hits / 300 <= 0.985, hits / 300


def test_screen_arguments_are_checked(tmp_path):
    r = CliRunner().invoke(app, ["screen", "results/csl-cpu", "no-equals-sign"])
    assert r.exit_code == 2 and "expected NAME=DIR" in r.output
