"""Spec errors: exit code 2, one line naming the key path and what was expected."""

import pytest
from typer.testing import CliRunner

from exposure_cli.cli import app
from exposure_cli.errors import UserError
from exposure_cli.spec import load_spec, spec_from_dict


def _write(tmp_path, text):
    p = tmp_path / "s.yaml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("text, message", [
    ("name: x\nmodel: {hiden: 3}\n", "model.hiden: unknown key"),
    ("name: x\ntrain: {epochs: two}\n", "train.epochs: expected an integer, got 'two'"),
    ("name: x\ntrain: {bf16: 1}\n", "train.bf16: expected true/false"),
    ("name: x\nmethods: [baseline, teacher_forcing]\n", "methods[1]: unknown method 'teacher_forcing'"),
    ("name: x\nmethods: [{baseline: {p: 1}}]\n", "methods[0].baseline.p: unknown parameter"),
    ("name: x\ndecode: {strategy: greedy}\n", "decode.strategy: expected one of standard, study"),
    ("model: {layers: 2}\n", "missing required key 'name'"),
    ("name: x\nmodel: {hidden: 30, heads: 4}\n", "model.hidden: expected a multiple of model.heads"),
    ("name: x\ntrain: {seeds: [1, 1]}\n", "train.seeds: expected distinct seeds"),
    ("name: x\ntrain: {epochs: [1}\n", "s.yaml:2: invalid YAML"),
])
def test_bad_spec_names_the_key(tmp_path, text, message):
    with pytest.raises(UserError) as e:
        load_spec(_write(tmp_path, text))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path):
    p = _write(tmp_path, "name: x\ntrain: {lr: fast}\n")
    r = CliRunner().invoke(app, ["run", str(p), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2
    out = r.output.strip()
    assert out.count("\n") == 0 and "train.lr: expected a number, got 'fast'" in out and "Traceback" not in out
    assert not (tmp_path / "out").exists()


def test_overrides_are_parsed_as_yaml_and_validated(tmp_path):
    p = _write(tmp_path, "name: x\ntrain: {epochs: 5, lr: 1e-4}\n")
    s = load_spec(p, ["train.epochs=2", "decode.beams=[1, 3]", "methods=[baseline]"])
    assert s.train.epochs == 2 and s.train.lr == 1e-4 and s.decode.beams == [1, 3]
    with pytest.raises(UserError, match="train.epochs: expected an integer"):
        load_spec(p, ["train.epochs=2.5"])
    with pytest.raises(UserError, match="expected KEY.PATH=VALUE"):
        load_spec(p, ["train.epochs"])


def test_defaults_are_the_study_settings():
    s = spec_from_dict({"name": "x"})
    assert (s.train.batch_size, s.train.lr, s.train.epochs, s.model.max_len, s.model.max_target_len) == (16, 1e-5, 20, 256, 32)
    assert s.model.source_len() == 222  # [CLS] + 222 + [SEP] = the study's 224-token decoding prompt
    assert s.decode.beams == [1, 2, 3] and [m.name for m in s.methods] == ["baseline"]


def test_experiment_specs_in_the_repo_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for p in sorted(root.glob("experiments/*.yaml")):
        load_spec(p)
    paper = sorted(root.glob("experiments/paper/*.yaml"))
    assert [p.name for p in paper] == ["csl.yaml", "lcsts.yaml"]
    for p in paper:  # their checkpoint is ${EXPOSURE_BERT}, unset here: test_pretrained.py checks that message
        assert load_spec(p, ["model.checkpoint=/dummy/bert"]).model.init == "pretrained"
