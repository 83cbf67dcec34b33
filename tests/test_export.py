"""A short run from a tiny BERT checkpoint trains, selects and decodes end to end; `exposure export`
writes runs (pretrained and scratch) that transformers loads with no missing or unexpected keys and
that decode greedily to exactly what `exposure generate --beam 1` prints."""

import json
import shutil

import pytest
import torch
import yaml
from tiny_bert import tiny_bert, vocab_tokens, write_checkpoint
from typer.testing import CliRunner

from exposure_cli.cli import app
from exposure_cli.data import read_pairs
from exposure_cli.model import unilm_mask

runner = CliRunner()
N_SOURCES = 12


pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(prepared_data, model: dict, tmp) -> str:
    spec = {
        "name": "tiny",
        "data": {**{s: str(prepared_data / f"csl/{s}.tsv") for s in ("train", "dev", "test")},
                 "train_limit": 48, "test_limit": 6},
        "model": {"max_len": 96, "max_target_len": 16, "dropout": 0.1, **model},
        "train": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "seeds": [0], "dev_size": 6, "grad_clip": None},
        "methods": ["baseline", "random_replace"],
        "decode": {"beams": [1, 2], "max_len": 16},
    }
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def pretrained_run(prepared_data, tmp_path_factory):
    """A grid of two short runs from a tiny BERT checkpoint; the checkpoint is deleted afterwards:
    everything later needs only the run directory."""
    tmp = tmp_path_factory.mktemp("pretrained")
    texts = [t for p in read_pairs(prepared_data / "csl/test.tsv") for t in (p.source, p.target)]
    ck = write_checkpoint(tiny_bert(len(vocab_tokens(texts))), vocab_tokens(texts), tmp / "bert", "bin")
    spec = _spec(prepared_data, {"init": "pretrained", "checkpoint": str(ck), "truncation": "longest_first"}, tmp)
    r = runner.invoke(app, ["run", spec, "--out", str(tmp / "out"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    shutil.rmtree(ck)
    return tmp / "out"


@pytest.fixture(scope="module")
def scratch_run(prepared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scratch")
    spec = _spec(prepared_data, {"init": "scratch", "layers": 1, "hidden": 32, "heads": 2}, tmp)
    r = runner.invoke(app, ["run", spec, "--out", str(tmp / "out"), "--device", "cpu", "--set",
                            "methods=[baseline]"])
    assert r.exit_code == 0, r.output
    return tmp / "out" / "baseline" / "seed0"


def test_a_run_from_a_bert_checkpoint_trains_selects_and_decodes(pretrained_run):
    summary = json.loads((pretrained_run / "summary.json").read_text())
    assert sorted((row["method"], row["beam"]) for row in summary["rows"]) == \
        [("baseline", 1), ("baseline", 2), ("random_replace", 1), ("random_replace", 2)]
    for method in ("baseline", "random_replace"):
        d = pretrained_run / method / "seed0"
        assert {"vocab.txt", "tokenizer.json", "best.pt", "metrics.json", "predictions.beam2.tsv"} <= \
            {p.name for p in d.iterdir()}
        log = [json.loads(line) for line in (d / "train.jsonl").read_text().splitlines()]
        assert [e["epoch"] for e in log if "dev" in e] == [1, 2]  # selected on dev after each epoch
        assert "[MASK]" not in (d / "vocab.txt").read_text(encoding="utf-8").split("\n")  # simplified
        rows = (d / "predictions.beam1.tsv").read_text(encoding="utf-8").splitlines()
        assert len(rows) == 1 + 6


def _greedy_with_transformers(hf, hf_tok, sources, max_source: int, max_len: int) -> list[list[int]]:
    """Greedy UniLM decoding with transformers' BertForMaskedLM: [CLS] source [SEP] + the tokens so
    far, segments 0 then 1, the UniLM mask as a 4-D additive attention mask, full recompute."""
    out = []
    for s in sources:
        prompt = [hf_tok.cls_token_id] + hf_tok.encode(s, add_special_tokens=False)[:max_source] + [hf_tok.sep_token_id]
        gen = []
        for _ in range(max_len):
            ids = torch.tensor([prompt + gen])
            seg = torch.tensor([[0] * len(prompt) + [1] * len(gen)])
            mask = unilm_mask(seg, torch.ones_like(ids, dtype=torch.bool))
            additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
            with torch.no_grad():
                nxt = int(hf(input_ids=ids, token_type_ids=seg, attention_mask=additive).logits[0, -1].argmax())
            gen.append(nxt)
            if nxt == hf_tok.sep_token_id:
                break
        out.append(gen)
    return out


def _check_export(run_dir, tmp_path, prepared_data):
    from transformers import AutoTokenizer, BertForMaskedLM

    from exposure_cli.decode.generate import load_run

    out = tmp_path / "hf"
    r = runner.invoke(app, ["export", str(run_dir), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    hf, info = BertForMaskedLM.from_pretrained(out, output_loading_info=True, attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    hf.eval()
    hf_tok = AutoTokenizer.from_pretrained(out)
    sources = [p.source for p in read_pairs(prepared_data / "csl/test.tsv")[:N_SOURCES]]
    (tmp_path / "src.txt").write_text("\n".join(sources) + "\n", encoding="utf-8")
    r = runner.invoke(app, ["generate", str(run_dir), "--beam", "1", "--input", str(tmp_path / "src.txt"),
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    ours = r.stdout.splitlines()
    _, tok, spec = load_run(run_dir, "cpu")
    for s in sources:  # the exported tokenizer is the run's
        assert hf_tok.encode(s, add_special_tokens=False) == tok.encode(s)
    gen = _greedy_with_transformers(hf, hf_tok, sources, spec.model.source_len(), spec.decode.max_len)
    theirs = [tok.decode(g) for g in gen]
    assert theirs == ours
    assert any(ours)  # something was generated
    _check_logits(hf, run_dir, prepared_data)
    return ours


def _check_logits(hf, run_dir, prepared_data):
    """Teacher-forced logits of real test pairs, at every real position of a padded batch: the
    exported BertForMaskedLM's (UniLM mask as a 4-D additive mask) against the run's own model."""
    from exposure_cli.batching import collate, encode_examples
    from exposure_cli.decode.generate import load_run

    model, tok, spec = load_run(run_dir, "cpu")
    from exposure_cli.data import Pair

    pairs = [Pair(p.source[:n], p.target) for p, n in zip(read_pairs(prepared_data / "csl/test.tsv"), (20, 90, 5, 60))]
    batch = collate(encode_examples(tok, pairs, spec.model.source_len(), spec.model.max_target_len), tok.pad_id)
    mask = unilm_mask(batch.segment_ids, batch.pad_mask)
    additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    with torch.no_grad():
        ours = model.eval()(batch.input_ids, batch.segment_ids, batch.pad_mask)
        theirs = hf(input_ids=batch.input_ids, token_type_ids=batch.segment_ids, attention_mask=additive).logits
    assert (~batch.pad_mask).any()  # padding present: the masks line up
    real = batch.pad_mask
    torch.testing.assert_close(theirs[real], ours[real], rtol=2e-5, atol=2e-5)  # fp32 noise: 4e-6
    assert ours[real].std() > 0.1  # trained logits, not a constant


def test_an_exported_pretrained_run_decodes_in_transformers_as_generate_does(pretrained_run, tmp_path, prepared_data):
    _check_export(pretrained_run / "baseline" / "seed0", tmp_path, prepared_data)


def test_an_exported_scratch_run_decodes_in_transformers_as_generate_does(scratch_run, tmp_path, prepared_data):
    _check_export(scratch_run, tmp_path, prepared_data)


def test_a_run_with_a_copy_head_is_refused(scratch_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(scratch_run, run)
    ck = torch.load(run / "best.pt", weights_only=True)
    from exposure_cli.model import ModelConfig, UniLM

    config = {**ck["config"], "copy": True}
    torch.save({**ck, "model": UniLM(ModelConfig(**config)).state_dict(), "config": config}, run / "best.pt")
    r = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "hf")])
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert err.count("\n") == 0 and "copy head (model.copy: true)" in err and "BertForMaskedLM" in err
    assert not (tmp_path / "hf").exists()


def test_a_pre_ln_run_is_refused(scratch_run, tmp_path):
    run = tmp_path / "pre-ln"
    shutil.copytree(scratch_run, run)
    ck = torch.load(run / "best.pt", weights_only=True)
    from exposure_cli.model import ModelConfig, UniLM

    config = {**ck["config"], "pre_ln": True}  # the same parameter names: only the config tells
    torch.save({**ck, "config": config}, run / "best.pt")
    assert set(UniLM(ModelConfig(**config)).state_dict()) == set(ck["model"])
    r = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "hf")])
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert err.count("\n") == 0 and "pre-LN (model.pre_ln: true)" in err and "post-LN" in err
    assert not (tmp_path / "hf").exists()
