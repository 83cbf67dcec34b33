"""Bad input, systematically: every command on every kind of malformed input exits 2 with one line
naming the file, line or key path and what was expected, no traceback, and leaves no finished-run
file behind. One row per case; a new command adds its rows to CASES.

A case is (id, args, expected fragment of the message, setup). `setup(tmp)` writes what the case
needs and returns a dict of names to substitute into args (`{spec}`, `{run}`, ...).
"""

from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from exposure_cli.cli import app
from grids import ROOT, write_grid

runner = CliRunner()


# ------------------------------------------------------------------------------ setups


def spec_text(text: str | bytes, name: str = "s.yaml"):
    def setup(tmp: Path) -> dict:
        p = tmp / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return {"spec": p}
    return setup


def grid_spec(**edits):
    """A valid tiny spec over valid data, then `edits` ({"model.hidden": 30}) applied to it."""
    def setup(tmp: Path) -> dict:
        p = write_grid(tmp)
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        for key, value in edits.items():
            node = raw
            *parents, last = key.split(".")
            for k in parents:
                node = node.setdefault(k, {})
            node[last] = value
        p.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        return {"spec": p, "train": tmp / "train.tsv"}
    return setup


def bad_train(content: bytes):
    def setup(tmp: Path) -> dict:
        out = grid_spec()(tmp)
        (tmp / "train.tsv").write_bytes(content)
        return out
    return setup


def files(**named: bytes | str):
    def setup(tmp: Path) -> dict:
        out = {}
        for name, content in named.items():
            p = tmp / name.replace("_", ".")
            p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
            out[name.split("_")[0]] = p
        return out
    return setup


class Payload:
    """Unpickling this would create a file: the proof that a payload never runs."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def run_dir(best: str):
    """A run directory whose best.pt is `best`: valid, missing, truncated or a pickle payload."""
    def setup(tmp: Path) -> dict:
        d = tmp / "run"
        d.mkdir()
        raw = yaml.safe_load(grid_spec()(tmp)["spec"].read_text(encoding="utf-8"))
        (d / "spec.yaml").write_text(yaml.safe_dump({**raw, "run": {"method": {"baseline": {}}, "seed": 0}}),
                                     encoding="utf-8")
        (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]) + "\n",
                                     encoding="utf-8")
        from exposure_cli.model import ModelConfig, UniLM
        from dataclasses import asdict

        model = UniLM(ModelConfig(vocab_size=6, hidden=32, layers=1, heads=2, max_positions=48))
        good = {"model": model.state_dict(), "config": asdict(model.config), "epoch": 1}
        if best == "valid":
            torch.save(good, d / "best.pt")
        elif best == "truncated":
            torch.save(good, d / "best.pt")
            data = (d / "best.pt").read_bytes()
            (d / "best.pt").write_bytes(data[: len(data) // 2])
        elif best == "payload":
            torch.save({"model": Payload(str(tmp / "PWNED")), "config": {}}, d / "best.pt")
        elif best == "no-spec":
            torch.save(good, d / "best.pt")
            (d / "spec.yaml").unlink()
        elif best == "no-vocab":
            torch.save(good, d / "best.pt")
            (d / "vocab.txt").unlink()
        return {"run": d, "input": _input(tmp)}
    return setup


def _input(tmp: Path) -> Path:
    p = tmp / "in.txt"
    p.write_text("abc\n", encoding="utf-8")
    return p


def summary(text: str):
    def setup(tmp: Path) -> dict:
        (tmp / "s.json").write_text(text, encoding="utf-8")
        ref = tmp / "ref.json"
        shutil.copy(ROOT / "results/smoke.json", ref)
        return {"summary": tmp / "s.json", "ref": ref}
    return setup


def manifest(text: str):
    return files(MANIFEST_tsv=text)


# ------------------------------------------------------------------------------- cases

RUN = ["run", "{spec}", "--out", "{out}", "--device", "cpu"]
GOOD_MANIFEST = (ROOT / "data/MANIFEST.tsv").read_text(encoding="utf-8")

CASES = [
    # spec files that are not specs
    ("spec-missing", ["run", "{tmp}/nope.yaml"], "nope.yaml: spec file not found", None),
    ("spec-empty", RUN, "s.yaml: the spec is empty", spec_text("")),
    ("spec-not-yaml", RUN, "s.yaml:2: invalid YAML", spec_text("name: x\nmodel: {layers: [1}\n")),
    ("spec-not-mapping", RUN, "s.yaml: expected a mapping at the top level, got list", spec_text("- a\n- b\n")),
    ("spec-not-utf8", RUN, "s.yaml: spec file is not UTF-8 text", spec_text(b"name: \xff\xfe\n")),
    ("spec-directory", ["run", "{tmp}"], "is a directory, expected a spec file", None),
    # unknown keys and parameters at every level
    ("key-top", RUN, "nme: unknown key (expected one of: name, data", spec_text("nme: x\n")),
    ("key-data", RUN, "data.tran: unknown key", grid_spec(**{"data.tran": "x"})),
    ("key-model", RUN, "model.hiden: unknown key", grid_spec(**{"model.hiden": 3})),
    ("key-train", RUN, "train.epoch: unknown key", grid_spec(**{"train.epoch": 3})),
    ("key-decode", RUN, "decode.beam: unknown key", grid_spec(**{"decode.beam": [1]})),
    ("key-score", RUN, "score.lower: unknown key", grid_spec(**{"score.lower": True})),
    ("method-unknown", RUN, "methods[0]: unknown method 'baselin'", grid_spec(methods=["baselin"])),
    ("method-param", RUN, "methods[0].random_replace.rate: unknown parameter", grid_spec(methods=[{"random_replace": {"rate": 1}}])),
    ("method-shape", RUN, "methods[0]: expected a method name or", grid_spec(methods=[["baseline"]])),
    ("methods-not-list", RUN, "methods: expected a non-empty list", grid_spec(methods="baseline")),
    ("methods-empty", RUN, "methods: expected a non-empty list", grid_spec(methods=[])),
    ("methods-twice", RUN, "methods: method 'baseline' is listed twice", grid_spec(methods=["baseline", "baseline"])),
    # names used as path components cannot leave the output root (--out itself may be any path)
    ("name-parent", RUN, "name: expected a name usable as one directory under runs/", grid_spec(name="../x")),
    ("name-absolute", RUN, "got '/abs'", grid_spec(name="/abs")),
    ("name-dotdot", RUN, "got '..'", grid_spec(name="..")),
    ("name-backslash", RUN, "name: expected a name usable as one directory", grid_spec(name="a\\b")),
    # wrong types
    ("type-int", RUN, "train.epochs: expected an integer, got 'two'", grid_spec(**{"train.epochs": "two"})),
    ("type-bool", RUN, "model.copy: expected true/false, got 'yes'", grid_spec(**{"model.copy": "yes"})),
    ("type-list", RUN, "decode.beams: expected a list of an integer, got 3", grid_spec(**{"decode.beams": 3})),
    ("type-section", RUN, "model: expected a mapping of keys, got 3", grid_spec(model=3)),
    ("type-param", RUN, "methods[0].gradient_penalty.epsilon: expected a number, got 'big'", grid_spec(methods=[{"gradient_penalty": {"epsilon": "big"}}])),
    ("type-choice", RUN, "train.schedule: expected one of constant, linear, cosine, got 'step'", grid_spec(**{"train.schedule": "step"})),
    # out of range and inconsistent values
    ("range-heads", RUN, "model.hidden: expected a multiple of model.heads (2)", grid_spec(**{"model.hidden": 31})),
    ("range-layers", RUN, "model.layers: expected at least 1", grid_spec(**{"model.layers": 0})),
    ("range-negative", RUN, "model.hidden: expected at least 1", grid_spec(**{"model.hidden": -32})),
    ("range-dropout", RUN, "model.dropout: expected a number in [0, 1)", grid_spec(**{"model.dropout": 1.0})),
    ("range-beams-empty", RUN, "decode.beams: expected a non-empty list", grid_spec(**{"decode.beams": []})),
    ("range-beam-zero", RUN, "decode.beams: expected a non-empty list of beam sizes ≥ 1", grid_spec(**{"decode.beams": [0, 1]})),
    ("range-seeds-empty", RUN, "train.seeds: expected at least one seed", grid_spec(**{"train.seeds": []})),
    ("range-batch", RUN, "train.batch_size: expected at least 1", grid_spec(**{"train.batch_size": 0})),
    ("range-lr", RUN, "train.lr: expected a positive number", grid_spec(**{"train.lr": -1e-3})),
    ("range-param", RUN, "methods[0].random_replace.prob: expected a number in [0.0, 1.0]", grid_spec(methods=[{"random_replace": {"prob": 1.5}}])),
    ("range-param-nan", RUN, "methods[0].gradient_penalty.epsilon: expected a number in", grid_spec(methods=[{"gradient_penalty": {"epsilon": float("nan")}}])),
    ("range-source", RUN, "model.max_source_len: expected [CLS] source [SEP]", grid_spec(**{"model.max_source_len": 100})),
    ("range-decode-len", RUN, "decode.max_len: expected at most", grid_spec(**{"decode.max_len": 40})),
    ("inconsistent-copy", RUN, "model.copy_coverage: expected false unless model.copy is true", grid_spec(**{"model.copy_coverage": True})),
    ("inconsistent-ckpt", RUN, "model.checkpoint: expected null unless model.init is pretrained", grid_spec(**{"model.checkpoint": "x"})),
    # --set
    ("set-unknown", RUN + ["--set", "model.hiden=3"], "model.hiden: unknown key", grid_spec()),
    ("set-no-equals", RUN + ["--set", "train.epochs"], "--set 'train.epochs': expected KEY.PATH=VALUE", grid_spec()),
    ("set-bad-yaml", RUN + ["--set", "train.epochs=[1"], "--set train.epochs: value '[1' is not valid YAML", grid_spec()),
    ("set-not-section", RUN + ["--set", "name.x=1"], "--set name.x: 'name' is not a section", grid_spec()),
    ("set-empty-key", RUN + ["--set", "=3"], "expected KEY.PATH=VALUE", grid_spec()),
    # data splits
    ("tsv-missing", RUN + ["--set", "data.train={tmp}/none.tsv"], "none.tsv: split not found", grid_spec()),
    ("tsv-empty", RUN, "train.tsv: the split has no examples", bad_train(b"")),
    ("tsv-columns", RUN, "train.tsv:2: expected 2 tab-separated fields (title, content), found 3", bad_train("ab\tabc\nab\tabc\tx\n".encode())),
    ("tsv-empty-field", RUN, "train.tsv:1: empty title", bad_train("\tabc\n".encode())),
    ("tsv-not-utf8", RUN, "train.tsv:2: invalid UTF-8", bad_train(b"ab\tabc\nab\t\xff\xfe\n")),
    # devices and executors
    ("device-unknown", RUN + ["--device", "tpu"], "--device 'tpu': expected cpu, cuda, cuda:N or auto", grid_spec()),
    ("device-no-cuda", ["run", "{spec}", "--out", "{out}", "--device", "cuda"], "--device cuda: CUDA is not available", grid_spec()),
    ("executor-unknown", RUN + ["--executor", "slurm"], "--executor: unknown executor 'slurm'", grid_spec()),
    ("jobs-serial", RUN + ["--executor", "serial", "--jobs", "2"], "--jobs 2: the serial executor runs one run at a time", grid_spec()),
    ("ray-flags-local", RUN + ["--cpus-per-run", "2"], "--address, --cpus-per-run and --gpus-per-run: only with --executor ray", grid_spec()),
    ("cli-range", RUN + ["--jobs", "0"], "Invalid value for '--jobs'", grid_spec()),
    # data fetch / prepare
    ("manifest-missing", ["data", "fetch", "--manifest", "{tmp}/none.tsv", "--out", "{out}"], "none.tsv: manifest not found", None),
    ("manifest-header", ["data", "fetch", "--manifest", "{MANIFEST}", "--out", "{out}"], "MANIFEST.tsv:1: manifest header lacks column(s)", manifest("a\tb\n")),
    ("manifest-sha", ["data", "fetch", "--manifest", "{MANIFEST}", "--out", "{out}"], "MANIFEST.tsv:2: sha256 'abc' is not 64 lowercase hex digits", manifest("path\tsha256\tbytes\tupstream\nx.tsv\tabc\t1\thttp://x\n")),
    ("manifest-escape", ["data", "fetch", "--manifest", "{MANIFEST}", "--out", "{out}"], "must be a relative path inside the data folder", manifest("path\tsha256\tbytes\tupstream\n../x.tsv\t" + "0" * 64 + "\t1\thttp://x\n")),
    ("mirror-missing", ["data", "fetch", "--manifest", "{MANIFEST}", "--out", "{out}", "--mirror", "{tmp}/nomirror"], "nomirror: mirror folder not found", manifest(GOOD_MANIFEST)),
    ("prepare-missing", ["data", "prepare", "--raw", "{tmp}/raw", "--out", "{out}"], "raw file missing", None),
    # score
    ("score-lengths", ["score", "--pred", "{p}", "--ref", "{r}"], "has 2 predictions but", files(p_txt="a\nb\n", r_txt="a\n")),
    ("score-missing", ["score", "--pred", "{tmp}/none.txt", "--ref", "{tmp}/none.txt"], "none.txt: file not found", None),
    ("score-not-utf8", ["score", "--pred", "{p}", "--ref", "{p}"], "p.txt: file is not UTF-8 text", files(p_txt=b"\xff\n")),
    ("score-empty", ["score", "--pred", "{p}", "--ref", "{p}"], "p.txt: nothing to score", files(p_txt="")),
    ("score-tsv-header", ["score", "--pred", "{p}"], "a .tsv must start with the header", files(p_tsv="a\tb\tc\n")),
    ("score-tsv-fields", ["score", "--pred", "{p}"], "p.tsv:2: expected 3 tab-separated fields, found 2", files(p_tsv="source\treference\tprediction\na\tb\n")),
    ("score-no-ref", ["score", "--pred", "{p}"], "--ref is required", files(p_txt="a\n")),
    # gpu-check (it takes no files: a bad device is its only bad input)
    ("gpu-check-device", ["gpu-check", "--device", "tpu"], "--device 'tpu': expected cpu, cuda, cuda:N or auto", None),
    ("gpu-check-no-cuda", ["gpu-check", "--device", "cuda"], "--device cuda: CUDA is not available", None),
    # generate
    ("generate-missing", ["generate", "{tmp}/norun"], "norun: not a run directory", None),
    ("generate-no-best", ["generate", "{run}", "--input", "{input}"], "no finished checkpoint", run_dir("none")),
    ("generate-truncated", ["generate", "{run}", "--input", "{input}", "--device", "cpu"], "best.pt: not a readable checkpoint, truncated or corrupt", run_dir("truncated")),
    ("generate-payload", ["generate", "{run}", "--input", "{input}", "--device", "cpu"], "best.pt: refused to load", run_dir("payload")),
    ("generate-no-spec", ["generate", "{run}", "--input", "{input}"], "spec.yaml: run spec not found", run_dir("no-spec")),
    ("generate-no-vocab", ["generate", "{run}", "--input", "{input}", "--device", "cpu"], "vocab.txt: vocabulary file not found", run_dir("no-vocab")),
    ("generate-input", ["generate", "{run}", "--input", "{tmp}/none.txt", "--device", "cpu"], "none.txt: input file not found", run_dir("valid")),
    ("generate-strategy", ["generate", "{run}", "--strategy", "greedy"], "--strategy: unknown decode strategy 'greedy'", run_dir("valid")),
    # compare
    ("compare-json", ["compare", "{summary}", "{ref}"], "s.json:1: invalid JSON", summary("{rows: 1")),
    ("compare-shape", ["compare", "{summary}", "{ref}"], "s.json: expected an object with a 'rows' list", summary('{"name": "x"}')),
    ("compare-row", ["compare", "{summary}", "{ref}"], "s.json: rows[0]: missing key 'beam'", summary('{"rows": [{"method": "b"}]}')),
    ("compare-value", ["compare", "{summary}", "{ref}"], "s.json: rows[0].rouge_l: expected a number", summary('{"rows": [{"method": "b", "beam": 1, "rouge_l": "x", "rouge_1": 1, "rouge_2": 1, "bleu": 1}]}')),
    ("compare-missing", ["compare", "{tmp}/none", "{tmp}/none"], "none: not found (run `exposure run` first", None),
    ("ls-unknown", ["ls", "nothing"], "nothing: expected one of specs", None),
    # table and plot
    ("table-missing", ["table", "{tmp}/none"], "none: not found (run `exposure run` first", None),
    ("table-json", ["table", "{summary}"], "s.json:1: invalid JSON", summary("{rows: 1")),
    ("table-format", ["table", "{ref}", "--format", "html"], "--format html: expected one of", summary("{}")),
    ("table-paper", ["table", "{ref}", "--paper", "cnn"], "--paper", summary("{}")),
    ("plot-missing", ["plot", "{tmp}/none", "--out", "{out}"], "none: not found (run `exposure run` first", None),
    ("plot-shape", ["plot", "{summary}", "--out", "{out}"], "s.json: expected an object with a 'rows' list", summary("[]")),
    # export
    ("export-missing", ["export", "{tmp}/norun", "--out", "{out}"], "norun: not a run directory", None),
    ("export-no-best", ["export", "{run}", "--out", "{out}"], "no finished checkpoint", run_dir("none")),
    ("export-payload", ["export", "{run}", "--out", "{out}"], "best.pt: refused to load", run_dir("payload")),
    ("export-out-file", ["export", "{run}", "--out", "{input}"], "in.txt: exists and is not a directory", run_dir("valid")),
    # diagnose
    ("diagnose-missing", ["diagnose", "{tmp}/none"], "none: not a directory", None),
    ("diagnose-no-run", ["diagnose", "{tmp}"], ": no finished run (expected OUT/<method>/seed<N>/metrics.json", None),
    ("diagnose-beams", ["diagnose", "{tmp}", "--beams", "1,x"], "--beams '1,x': expected comma-separated integers", None),
    ("diagnose-split", ["diagnose", "{tmp}", "--split", "valid"], "--split valid: expected one of", None),
    ("diagnose-errors", ["diagnose", "{tmp}", "--errors", "1,1"], "--errors: expected distinct error counts", None),
    # power and keep
    ("power-missing", ["power", "{tmp}/none"], "none: not found (expected an output directory of `exposure run`)", None),
    ("power-empty", ["power", "{tmp}"], ": no summary.json and no run inside", None),
    ("power-effect", ["power", "{tmp}", "--effect", "-1"], "Invalid value for '--effect'", None),
    ("keep-missing", ["keep", "{tmp}/none", "{out}"], "none: not a directory (expected an output directory", None),
    ("keep-no-run", ["keep", "{tmp}", "{out}"], ": no finished run (expected <method>/seed<k>/metrics.json inside)", None),
    # leaderboard (tests/test_leaderboard.py: a grid without a baseline run)
    ("leaderboard-missing", ["leaderboard", "{tmp}/none", "--output-dir", "{out}"], "none: not a directory (expected an "
     "output directory of `exposure run`", None),
    ("leaderboard-file", ["leaderboard", "{summary}", "--output-dir", "{out}"], "s.json: not a directory", summary("{}")),
    ("leaderboard-empty", ["leaderboard", "{tmp}", "--output-dir", "{out}"], ": no finished run (expected "
     "<method>/seed<k>/metrics.json", None),
    ("leaderboard-name", ["leaderboard", "{tmp}", "--name", "a/b"], "--name 'a/b': expected a file name", None),
    ("leaderboard-wall", ["leaderboard", "{tmp}", "--wall-seconds", "-1"], "Invalid value for '--wall-seconds'", None),
    # campaign (tests/test_campaign.py) and screen (tests/test_screen.py)
    ("campaign-spec-missing", ["campaign", "{tmp}/nope.yaml", "--keep", "{out}"], "nope.yaml: spec file not found", None),
    ("campaign-metric", ["campaign", "{spec}", "--keep", "{out}", "--metric", "cider"],
     "--metric cider: expected one of", grid_spec()),
    ("campaign-no-baseline", ["campaign", "{spec}", "--keep", "{out}", "--out", "{tmp}/runs"],
     "methods: a campaign needs baseline and at least one other method", grid_spec(methods=["random_replace"])),
    ("campaign-no-git", ["campaign", "{spec}", "--keep", "{out}", "--commit"], "not inside a git work tree",
     grid_spec(methods=["baseline", "random_replace"])),
    ("campaign-block", ["campaign", "{spec}", "--keep", "{out}", "--block", "1"], "Invalid value for '--block'",
     grid_spec()),
    ("screen-missing", ["screen", "{tmp}/none", "a={tmp}/none"], "none: not a directory", None),
    ("screen-pair", ["screen", "{tmp}", "no-equals"], "'no-equals': expected NAME=DIR", None),
    ("screen-empty", ["screen", "{tmp}", "a={tmp}"], ": no finished run", None),
]

FINISHED = ("metrics.json", "summary.json", "table.md", "table.csv", "best.pt", "beam_rouge_l.png", "diagnostics.json", "model.safetensors")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing_finished(case, tmp_path):
    _, args, expected, setup = case
    names = {"tmp": tmp_path, "out": tmp_path / "out"}
    if setup is not None:
        names.update(setup(tmp_path))
    argv = [a.format(**names) for a in args]
    before = {p for p in tmp_path.rglob("*")}
    r = runner.invoke(app, argv, terminal_width=400)
    out = r.stderr.strip()
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output and len(out.splitlines()) == 1, out
    assert expected in out, out
    created = {p for p in tmp_path.rglob("*")} - before
    assert not [p for p in created if p.name in FINISHED], created
    assert not (tmp_path / "PWNED").exists()  # a pickle payload never ran


def test_method_labels_never_leave_or_share_a_run_directory(tmp_path):
    """A label is a registered name and its parameters, made a directory name by run_dir_name; one that
    would still give '.', '..' or another label's directory is refused (a method with a free-text
    parameter could make one)."""
    from exposure_cli.errors import UserError
    from exposure_cli.runner.grid import check_run_dirs, run_path

    for labels, message in [(["baseline", ".."], "'..' gives no usable run directory name"),
                            (["."], "'.' gives no usable run directory name"),
                            (["m(p=a/b)", "m(p=a b)"], "'m(p=a/b)' and 'm(p=a b)' would share the run directory 'm-p=a-b'")]:
        with pytest.raises(UserError, match=re.escape(message)):
            check_run_dirs(labels)
    for label in ("../x", "/abs", "m(p=../../etc)", "a/../../b"):
        assert run_path(tmp_path, label, 0).resolve().parent.parent == tmp_path.resolve()
    check_run_dirs(["baseline", "random_replace(pool=sequence)", "gradient_penalty(epsilon=0.5)"])


def test_a_bom_and_crlf_line_ends_are_simply_read(tmp_path, prepared_data):
    """The same split with a BOM and CRLF line ends gives the same pairs (and so the same runs)."""
    from exposure_cli.data import read_pairs

    src = prepared_data / "csl/dev.tsv"
    crlf = tmp_path / "dev.tsv"
    crlf.write_bytes(b"\xef\xbb\xbf" + src.read_bytes().replace(b"\n", b"\r\n"))
    assert read_pairs(crlf) == read_pairs(src)


def test_a_payload_checkpoint_is_refused_by_every_loader(tmp_path):
    from exposure_cli.errors import UserError
    from exposure_cli.fileio import torch_load
    from exposure_cli.model import UniLM

    path = tmp_path / "x.pt"
    torch.save({"a": Payload(str(tmp_path / "PWNED"))}, path)
    for load in (lambda: torch_load(path), lambda: UniLM.from_checkpoint(path)):
        with pytest.raises(UserError, match="refused to load"):
            load()
    assert not (tmp_path / "PWNED").exists()
    # and the payload is real: unpickling it with pickle would create the file
    pickle.loads(pickle.dumps(Payload(str(tmp_path / "PWNED"))))
    assert (tmp_path / "PWNED").exists()


def test_every_command_has_bad_input_rows():
    """A new command must come with its rows (or be listed here as taking no files)."""
    from exposure_cli.cli.app import app as the_app
    import typer

    group = typer.main.get_command(the_app)
    commands = set(group.commands) - {"bench", "demo", "data"}
    covered = {c[1][0] for c in CASES}
    assert commands <= covered, commands - covered
    assert {"fetch", "prepare"} <= {c[1][1] for c in CASES if c[1][0] == "data"}
    # every row is (unique name, argv of strings, expected message, a setup function or None)
    assert len({c[0] for c in CASES}) == len(CASES)
    assert all(isinstance(a, str) for c in CASES for a in c[1]) and all(isinstance(c[2], str) and c[2] for c in CASES)
    assert all(c[3] is None or callable(c[3]) for c in CASES)
