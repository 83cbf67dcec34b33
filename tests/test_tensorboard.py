"""TensorBoard curves (`--tensorboard`, `train.tensorboard`): the event files, read back with
tensorboard's own EventAccumulator, hold exactly train.jsonl's numbers, also after a run was killed
and resumed; without the package, asking for them is a one-line error."""

import json
import sys

import pytest
import yaml
from typer.testing import CliRunner

from exposure_cli import train as train_mod
from exposure_cli.cli import app
from grids import write_grid

pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(tmp_path, **train):
    return write_grid(tmp_path, methods=("gradient_penalty",), seeds=(0,), epochs=2, train=48,
                      **{"bf16": False, "log_every": 1, **train})


def _events(run_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _expected(run_dir, steps_per_epoch: int) -> dict[str, list[tuple[int, float]]]:
    """The log's numbers as the event files should hold them: every step record's numbers at its
    step, every epoch's dev scores at the step that ended it."""
    out: dict[str, list[tuple[int, float]]] = {}
    for rec in map(json.loads, (run_dir / "train.jsonl").read_text().splitlines()):
        if "dev" in rec:
            for k, v in rec["dev"].items():
                out.setdefault(f"dev/{k}", []).append((rec["epoch"] * steps_per_epoch, v))
        else:
            for k in set(rec) - {"step", "epoch"}:
                out.setdefault(f"train/{k}", []).append((rec["step"], rec[k]))
    return out


def _same(events, expected):
    assert set(events) == set(expected)
    for tag, points in expected.items():
        assert [s for s, _ in events[tag]] == [s for s, _ in points], tag
        assert [v for _, v in events[tag]] == pytest.approx([v for _, v in points], rel=1e-6, abs=1e-30), tag


def test_event_files_hold_the_logs_numbers(tmp_path):
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["run", str(spec), "--out", str(out), "--device", "cpu", "--tensorboard"])
    assert r.exit_code == 0, r.output
    run = out / "gradient_penalty" / "seed0"
    events = _events(run)
    assert {"train/loss", "train/lr", "train/grad_norm", "train/penalty", "dev/bleu", "dev/rouge_l"} <= set(events)
    assert len(events["train/loss"]) == 6 and [s for s, _ in events["dev/bleu"]] == [3, 6]  # 48 / 16 a epoch
    _same(events, _expected(run, 3))
    assert yaml.safe_load((run / "spec.yaml").read_text())["train"]["tensorboard"] is True


class Crash(Exception):
    pass


def test_a_resumed_run_shows_each_step_once(tmp_path, monkeypatch):
    """Killed after step 5 (epoch 2), its checkpoint at the end of epoch 1 (step 3), and resumed:
    the first process's events of steps 4 and 5 are dropped by the second's restart mark, and the
    curves read back are the log's."""
    spec = _spec(tmp_path, tensorboard=True, checkpoint_seconds=0)
    out = tmp_path / "out"
    real_step, calls = train_mod.train_step, {"n": 0}

    def step_then_crash(run, batch, log):
        calls["n"] += 1
        if calls["n"] == 6:
            raise Crash()
        return real_step(run, batch, log)

    monkeypatch.setattr(train_mod, "train_step", step_then_crash)
    with pytest.raises(Crash):
        CliRunner().invoke(app, ["run", str(spec), "--out", str(out), "--device", "cpu"], catch_exceptions=False)
    monkeypatch.setattr(train_mod, "train_step", real_step)
    run = out / "gradient_penalty" / "seed0"
    assert [s for s, _ in _events(run)["train/loss"]] == [1, 2, 3, 4, 5]
    r = CliRunner().invoke(app, ["run", str(spec), "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert len(list((run / "tensorboard").iterdir())) == 2  # one event file per process
    _same(_events(run), _expected(run, 3))


def test_without_the_package_asking_for_curves_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` raises ImportError
    spec = _spec(tmp_path)
    for args, where in ((["--tensorboard"], "--tensorboard"), (["--set", "train.tensorboard=true"], "train.tensorboard")):
        r = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "out"), "--device", "cpu", *args])
        assert r.exit_code == 2, r.output
        err = r.stderr.strip()
        assert "\n" not in err and where in err and "pip install 'exposure[tensorboard]'" in err
    assert not (tmp_path / "out").exists()
