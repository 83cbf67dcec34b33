"""`model.init: pretrained` against transformers on tiny random BERT checkpoints in every layout met in
the wild: the same logits, the same token ids, the study's vocabulary simplification and decoding
rule, and one-line errors (with no code run) for everything that cannot be loaded."""

import json
import pickle
from pathlib import Path

import pytest
import torch
from tiny_bert import LAYOUTS, tiny_bert, vocab_tokens, write_checkpoint
from typer.testing import CliRunner

from exposure_cli.batching import collate, encode_examples
from exposure_cli.build import INITS
from exposure_cli.cli import app
from exposure_cli.data import read_pairs
from exposure_cli.errors import UserError
from exposure_cli.pretrained import model_config
from exposure_cli.model import unilm_mask
from exposure_cli.spec import load_spec, spec_from_dict
from exposure_cli.tokenizers.wordpiece import WordPieceTokenizer, decode_tokens, read_vocab, simplify


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def test_texts(prepared_data):
    return {d: [t for p in read_pairs(prepared_data / d / "test.tsv") for t in (p.source, p.target)]
            for d in ("csl", "lcsts")}


@pytest.fixture(scope="module")
def bert(test_texts):
    tokens = vocab_tokens(test_texts["csl"] + test_texts["lcsts"])
    return tiny_bert(len(tokens)), tokens


def _spec(checkpoint, **model):
    return spec_from_dict({"name": "x", "model": {"init": "pretrained", "checkpoint": str(checkpoint),
                                                  "dropout": 0.0, **model}})


def _build(spec):
    init = INITS.get("pretrained")()
    tok = init.build_tokenizer(spec, None)
    return tok, init.build_model(spec, tok).eval()


@pytest.mark.parametrize("fmt, prefixed", LAYOUTS)
def test_logits_equal_transformers_full_and_simplified_vocabulary(tmp_path, bert, prepared_data, fmt, prefixed):
    hf, tokens = bert
    ck = write_checkpoint(hf, tokens, tmp_path / "bert", fmt, prefixed, old_names=fmt == "bin" and prefixed)
    pairs = read_pairs(prepared_data / "csl/test.tsv")[:3] + read_pairs(prepared_data / "lcsts/test.tsv")[:3]
    rows = read_vocab(ck / "vocab.txt")
    for simplified in (False, True):
        tok, ours = _build(_spec(ck, simplify_vocab=simplified))
        assert len(tok) == (len(tokens) if not simplified else len(simplify(rows)))
        keep = torch.tensor([rows[t] for t in tok.tokens])  # our id → the checkpoint's
        b = collate(encode_examples(tok, pairs, 222, 32, "longest_first", 256), tok.pad_id)
        mask = unilm_mask(b.segment_ids, b.pad_mask)
        additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
        with torch.no_grad():
            ref = hf(input_ids=keep[b.input_ids], token_type_ids=b.segment_ids, attention_mask=additive).logits
            got = ours(b.input_ids, b.segment_ids, b.pad_mask)
        real = b.pad_mask
        assert got.shape[-1] == len(keep)
        assert (got[real] - ref[..., keep][real]).abs().max() < 1e-5, (simplified, fmt, prefixed)


def test_token_ids_equal_bert_tokenizers_on_the_csl_and_lcsts_test_texts(tmp_path, bert, test_texts):
    from transformers import BertTokenizer
    from transformers.models.bert import BertTokenizerLegacy

    ck = write_checkpoint(*bert, tmp_path / "bert")
    ours, keep = WordPieceTokenizer.from_checkpoint(ck / "vocab.txt", simplified=False)
    assert keep == list(range(len(bert[1])))
    fast = BertTokenizer(vocab=str(ck / "vocab.txt"))  # transformers 5: the tokenizers-backed one
    legacy = BertTokenizerLegacy(vocab_file=str(ck / "vocab.txt"))  # the pure-Python one: independent
    for name, texts in test_texts.items():
        n_unk = 0
        for t in texts:
            ids = ours.encode(t)
            assert ids == fast.encode(t, add_special_tokens=False) == legacy.encode(t, add_special_tokens=False), t
            n_unk += ids.count(ours.unk_id)
        assert n_unk > 0, name  # some words are not in the vocabulary: [UNK] is exercised too
    latin = ours.encode("Deep Learning LSTMs networks")
    assert [ours.tokens[i] for i in latin] == ["deep", "learn", "##ing", "lstm", "##s", "net", "##work", "##s"]


def test_simplification_is_bert4keras_load_vocab_simplified():
    tokens = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "的", "中国", "##的", "deep", "##ing",
              "...", "##.", "!", "a", "##ab", "1990", "##年", "e\u0301", "[SEP]x"]
    vocab = {t: i for i, t in enumerate(tokens)}
    kept = [tokens[i] for i in simplify(vocab)]
    # startwith first, in its order; multi-character tokens with a CJK character or punctuation dropped
    # ([unused1], [MASK], 中国, ##的, ..., ##., ##年, [SEP]x); single characters and Latin/digit words kept
    assert kept == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "的", "deep", "##ing", "!", "a", "##ab", "1990", "e\u0301"]


def test_special_ids_are_looked_up_not_assumed(tmp_path, bert):
    ck = write_checkpoint(*bert, tmp_path / "bert")
    full, _ = WordPieceTokenizer.from_checkpoint(ck / "vocab.txt", simplified=False)
    assert (full.pad_id, full.unk_id, full.cls_id, full.sep_id) == (0, 3, 4, 5)  # [unusedN] before [UNK]
    small, _ = WordPieceTokenizer.from_checkpoint(ck / "vocab.txt", simplified=True)
    assert (small.pad_id, small.unk_id, small.cls_id, small.sep_id) == (0, 1, 2, 3)
    assert "[MASK]" not in small.tokens  # not in the study's startwith, and it holds punctuation


@pytest.mark.parametrize("tokens, text", [
    (["deep", "learn", "##ing"], "deep learning"),
    (["我", "爱", "lstm", "模", "型"], "我爱lstm模型"),
    (["hello", ",", "world", "!"], "hello, world!"),
    (["3", ".", "14", "元"], "3.14元"),
    (["（", "a", "）", "b"], "（a）b"),
    (["[CLS]", "中", "[UNK]", "文"], "中文"),
    (["it", "'", "s", "ok"], "it's ok"),
])
def test_decoding_follows_bert4keras_0_5_8(tokens, text):
    assert decode_tokens(tokens) == text


def test_decode_stops_at_sep_and_round_trips_chinese(tmp_path, bert, test_texts):
    ck = write_checkpoint(*bert, tmp_path / "bert")
    tok, _ = WordPieceTokenizer.from_checkpoint(ck / "vocab.txt", simplified=True)
    title = test_texts["csl"][1]
    ids = tok.encode(title)
    assert tok.decode(ids + [tok.sep_id] + ids) == tok.decode(ids)
    if all("\u4e00" <= c <= "\u9fff" for c in title):
        assert tok.decode(ids) == title
    tok.save(tmp_path / "run")
    again = WordPieceTokenizer.load(tmp_path / "run")
    assert again.tokens == tok.tokens and again.encode(test_texts["lcsts"][0]) == tok.encode(test_texts["lcsts"][0])


# ------------------------------------------------------------------------------------------ errors


def _error(fn) -> str:
    with pytest.raises(UserError) as e:
        fn()
    assert "\n" not in str(e.value)
    return str(e.value)


def test_what_cannot_be_loaded_is_one_line_naming_the_file_and_tensor(tmp_path, bert):
    hf, tokens = bert
    ck = write_checkpoint(hf, tokens, tmp_path / "bert")
    spec = _spec(ck)
    (ck / "config.json").rename(tmp_path / "c.json")
    assert "bert/config.json: BERT config not found" in _error(lambda: _build(spec))
    (tmp_path / "c.json").rename(ck / "config.json")
    cfg = json.loads((ck / "config.json").read_text())
    (ck / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    assert "config.json: model_type 'gpt2' is not BERT" in _error(lambda: _build(spec))
    (ck / "config.json").write_text(json.dumps({**cfg, "hidden_act": "gelu_new"}))
    assert "hidden_act 'gelu_new' is not supported" in _error(lambda: _build(spec))
    (ck / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 48}))
    msg = _error(lambda: _build(spec))
    assert "model.safetensors: tensor bert.encoder.layer.0.intermediate.dense.weight has shape (64, 32)" in msg
    assert "(48, 32)" in msg
    (ck / "config.json").write_text(json.dumps(cfg))
    msg = _error(lambda: _build(_spec(ck, hidden=64)))
    assert "model.hidden: 64 disagrees with hidden_size 32" in msg and "config.json" in msg
    (ck / "vocab.txt").unlink()
    assert "bert/vocab.txt: BERT vocabulary (vocab.txt) not found" in _error(lambda: _build(spec))


def test_missing_tensors_and_foreign_formats_are_refused(tmp_path, bert):
    from safetensors.torch import load_file, save_file

    hf, tokens = bert
    ck = write_checkpoint(hf, tokens, tmp_path / "bert")
    state = load_file(ck / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith("cls.")}, ck / "model.safetensors")
    assert "model.safetensors: no tensor cls.predictions.bias" in _error(lambda: _build(_spec(ck)))
    (ck / "model.safetensors").unlink()
    (ck / "tf_model.h5").write_bytes(b"\x89HDF\r\n")
    msg = _error(lambda: _build(_spec(ck)))
    assert "no model.safetensors or pytorch_model.bin (found: tf_model.h5" in msg
    (ck / "model.safetensors").write_bytes(b"not safetensors at all")
    assert "model.safetensors: not a readable safetensors file" in _error(lambda: _build(_spec(ck)))


class _Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_a_malicious_pytorch_model_bin_is_refused_without_running_it(tmp_path, bert):
    hf, tokens = bert
    ck = write_checkpoint(hf, tokens, tmp_path / "bert", "bin")
    proof = tmp_path / "pwned"
    state = torch.load(ck / "pytorch_model.bin", weights_only=True)
    with open(ck / "pytorch_model.bin", "wb") as f:
        torch.save({**state, "evil": _Payload(proof)}, f)
    with open(tmp_path / "control.pkl", "wb") as f:  # the payload does work when unpickled unsafely
        pickle.dump(_Payload(tmp_path / "control"), f)
    pickle.loads((tmp_path / "control.pkl").read_bytes())
    assert (tmp_path / "control").exists()
    msg = _error(lambda: _build(_spec(ck)))
    assert "pytorch_model.bin: refused to load" in msg
    assert not proof.exists()


def test_the_cli_reports_a_bad_checkpoint_in_one_line_with_exit_2(tmp_path, prepared_data):
    spec = {"name": "x", "data": {s: str(prepared_data / f"csl/{s}.tsv") for s in ("train", "dev", "test")},
            "model": {"init": "pretrained", "checkpoint": str(tmp_path / "nowhere")}}
    (tmp_path / "s.yaml").write_text(json.dumps(spec))
    r = CliRunner().invoke(app, ["run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.count("\n") == 0 and "nowhere: BERT checkpoint directory not found" in err and "Traceback" not in err


# ------------------------------------------------------------------------------ paper profiles


def test_paper_profiles_say_which_variable_or_key_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv("EXPOSURE_BERT", raising=False)
    for name in ("paper/csl.yaml", "paper/lcsts.yaml"):
        msg = _error(lambda: load_spec(name))
        assert "model.checkpoint: ${EXPOSURE_BERT} is not set" in msg and "--set model.checkpoint=DIR" in msg
        assert load_spec(name, [f"model.checkpoint={tmp_path}"]).model.checkpoint == str(tmp_path)
    monkeypatch.setenv("EXPOSURE_BERT", str(tmp_path))
    s = load_spec("paper/csl.yaml")
    assert s.model.checkpoint == str(tmp_path)
    t, m = s.train, s.model
    assert (m.init, m.simplify_vocab, m.max_len, m.source_len(), m.truncation, m.dropout) == \
        ("pretrained", True, 256, 222, "longest_first", 0.1)
    assert (t.epochs, t.batch_size, t.lr, t.adam_eps, t.warmup, t.weight_decay, t.grad_clip, t.label_smoothing) == \
        (20, 16, 1e-5, 1e-6, 0, 0.0, None, 0.0)
    assert (t.dev_size, t.select_fp32, t.seeds, s.decode.beams, s.decode.max_len) == (None, True, [0, 1], [1, 2, 3], 32)
    assert [(x.name, x.params) for x in s.methods] == [
        ("baseline", {}), ("random_replace", {"pool": "sequence"}), ("gradient_penalty", {"scope": "embedding_rows"}),
        ("random_replace", {}), ("gradient_penalty", {})]
    assert s.score.lowercase is False
    for name in ("paper/csl.yaml", "paper/lcsts.yaml"):  # as bert4keras 0.5.8 and the scripts' data generator
        p = load_spec(name)
        assert (p.model.attention_dropout, p.train.bucket) == (0, False)
        bert_base = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                     "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12}
        config = model_config(p.model, bert_base, Path("config.json"), 100, 0)
        assert (config.attention_p, config.dropout) == (0, 0.1)


def test_score_no_lowercase_scores_as_of_the_article(tmp_path):
    (tmp_path / "p.txt").write_text("lstm模型\n", encoding="utf-8")
    (tmp_path / "r.txt").write_text("LSTM模型\n", encoding="utf-8")
    args = ["score", "--pred", str(tmp_path / "p.txt"), "--ref", str(tmp_path / "r.txt"), "--json"]
    lower = json.loads(CliRunner().invoke(app, args).output)
    asis = json.loads(CliRunner().invoke(app, args + ["--no-lowercase"]).output)
    assert lower["rouge_1"] == pytest.approx(100.0) and asis["rouge_1"] == pytest.approx(100 * 2 / 6)
