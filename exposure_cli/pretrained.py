"""`model.init: pretrained`: a UniLM initialised from a Hugging Face BERT directory, as in the study.

The directory holds `config.json`, `vocab.txt` and `model.safetensors` or `pytorch_model.bin`: a
`BertForMaskedLM` (or `BertModel` + MLM head) checkpoint, its names with or without the `bert.`
prefix. The model's size comes from config.json; the encoder and the MLM head (transform, tied
decoder, output bias) come from the weights, the embedding rows and the bias sliced to the tokens
the run's vocabulary keeps (bert4keras' `keep_tokens`). Weights are read without running any code:
safetensors through the `safetensors` package, `.bin` only through `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import fileio
from .build import ModelInit
from .errors import UserError
from .model import ModelConfig, UniLM
from .tokenizers import Tokenizer
from .tokenizers.wordpiece import WordPieceTokenizer, read_vocab

CONFIG, VOCAB, SAFETENSORS, BIN = "config.json", "vocab.txt", "model.safetensors", "pytorch_model.bin"
# spec key → config.json key, for the sizes a spec may also set (then they must agree)
SIZE_KEYS = {"layers": "num_hidden_layers", "hidden": "hidden_size", "heads": "num_attention_heads",
             "intermediate": "intermediate_size"}
# config.json keys BERT may leave out, with BertConfig's defaults
OPTIONAL = {"max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
            "position_embedding_type": "absolute"}
# rows indexed by token id: sliced to the kept tokens
VOCAB_ROWS = ("bert.embeddings.word_embeddings.weight", "cls.predictions.bias")
# tensors of BERT checkpoints the UniLM has no use for
IGNORED = ("bert.pooler.", "cls.seq_relationship.", "bert.embeddings.position_ids", "bert.embeddings.token_type_ids")


def checkpoint_dir(spec) -> Path:
    d = Path(spec.model.checkpoint).expanduser()
    if not d.is_dir():
        raise UserError(f"{d}: BERT checkpoint directory not found (model.checkpoint; expected config.json, "
                        f"vocab.txt and {SAFETENSORS} or {BIN})")
    return d


def read_config(d: Path) -> dict:
    """config.json, checked to describe a BERT the UniLM can hold."""
    path = d / CONFIG
    cfg = fileio.read_json(path, "BERT config")
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: expected a JSON object")
    if cfg.get("model_type", "bert") != "bert":
        raise UserError(f"{path}: model_type {cfg['model_type']!r} is not BERT (expected 'bert')")
    cfg = {**OPTIONAL, **cfg}
    for key in list(SIZE_KEYS.values()) + ["vocab_size", "max_position_embeddings", "type_vocab_size"]:
        if not isinstance(cfg.get(key), int) or isinstance(cfg[key], bool) or cfg[key] < 1:
            raise UserError(f"{path}: {key} should be a positive integer in a BERT config, got {cfg.get(key)!r}")
    if cfg["hidden_act"] != "gelu":
        raise UserError(f"{path}: hidden_act {cfg['hidden_act']!r} is not supported (exposure's BERT uses exact "
                        "gelu, as BERT does)")
    if cfg["position_embedding_type"] != "absolute":
        raise UserError(f"{path}: position_embedding_type {cfg['position_embedding_type']!r} is not supported "
                        "(expected 'absolute')")
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise UserError(f"{path}: hidden_size {cfg['hidden_size']} is not a multiple of num_attention_heads "
                        f"{cfg['num_attention_heads']}")
    return cfg


def model_config(m, cfg: dict, path: Path, vocab_size: int, pad_id: int) -> ModelConfig:
    """The UniLM's config: sizes from config.json (a spec that sets them must agree), dropout from the spec."""
    for key, ckey in SIZE_KEYS.items():
        ours = getattr(m, key)
        if ours is not None and ours != cfg[ckey]:
            raise UserError(f"model.{key}: {ours} disagrees with {ckey} {cfg[ckey]} in {path} (leave it unset "
                            "with init: pretrained)")
    if m.max_len > cfg["max_position_embeddings"]:
        raise UserError(f"model.max_len: {m.max_len} is more than max_position_embeddings "
                        f"{cfg['max_position_embeddings']} in {path}")
    return ModelConfig(vocab_size=vocab_size, hidden=cfg["hidden_size"], layers=cfg["num_hidden_layers"],
                       heads=cfg["num_attention_heads"], intermediate=cfg["intermediate_size"],
                       max_positions=cfg["max_position_embeddings"], type_vocab_size=cfg["type_vocab_size"],
                       dropout=m.dropout, attention_dropout=m.attention_dropout,
                       layer_norm_eps=float(cfg["layer_norm_eps"]), pad_id=pad_id)


def read_weights(d: Path) -> tuple[dict, Path]:
    """The checkpoint's tensors by name, read without running code; anything but the two safe formats refused."""
    st, bin_ = d / SAFETENSORS, d / BIN
    if st.is_file():
        try:
            from safetensors import SafetensorError
            from safetensors.torch import load_file
        except ImportError:
            raise UserError(f"{st}: reading it needs the `safetensors` package: pip install "
                            "'exposure[pretrained]'") from None

        try:
            return load_file(st), st
        except (SafetensorError, OSError, ValueError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"{st}: not a readable safetensors file ({msg})") from None
    if bin_.is_file():
        state = fileio.torch_load(bin_, "cpu", "BERT checkpoint")
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise UserError(f"{bin_}: expected a state dict (tensor names → tensors)")
        return state, bin_
    others = sorted(p.name for p in d.iterdir() if p.is_file() and p.name not in (CONFIG, VOCAB))
    found = f" (found: {', '.join(others)}; only safetensors and torch weights_only files are loaded)" if others else ""
    raise UserError(f"{d}: no {SAFETENSORS} or {BIN}{found}")


def canonical_names(state: dict) -> dict:
    """Our names: `bert.`-prefixed, LayerNorm `weight`/`bias` (old checkpoints say `gamma`/`beta`)."""
    out = {}
    for name, t in state.items():
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if name.startswith(("embeddings.", "encoder.", "pooler.")):
            name = "bert." + name
        out[name] = t
    return out


def bert_state(state: dict, expected: dict[str, tuple], path: Path) -> dict:
    """The UniLM's tensors from a checkpoint's, checked against the shapes config.json implies."""
    state = canonical_names(state)
    if "cls.predictions.bias" not in state and "cls.predictions.decoder.bias" in state:
        state["cls.predictions.bias"] = state["cls.predictions.decoder.bias"]
    decoder = state.pop("cls.predictions.decoder.weight", None)
    state.pop("cls.predictions.decoder.bias", None)
    out = {}
    for name, shape in expected.items():
        if name not in state:
            raise UserError(f"{path}: no tensor {name} (a BertForMaskedLM checkpoint has it, with or without "
                            "the 'bert.' prefix)")
        if tuple(state[name].shape) != shape:
            raise UserError(f"{path}: tensor {name} has shape {tuple(state[name].shape)} but {CONFIG} implies {shape}")
        out[name] = state[name]
    extra = [n for n in state if n not in expected and not n.startswith(IGNORED)]
    if extra:
        raise UserError(f"{path}: tensor {extra[0]} has no place in a BERT of {CONFIG}'s size")
    if decoder is not None and not torch.equal(decoder, out[VOCAB_ROWS[0]]):
        raise UserError(f"{path}: tensor cls.predictions.decoder.weight differs from the word embeddings "
                        "(the UniLM ties them, as BERT does)")
    return out


def load_bert(model: UniLM, state: dict, path: Path, vocab_rows: int, keep: list[int]) -> None:
    """Load a checkpoint's tensors into `model`, keeping the embedding rows and MLM bias of `keep`."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for k in VOCAB_ROWS:
        expected[k] = (vocab_rows,) + expected[k][1:]
    tensors = bert_state(state, expected, path)
    index = torch.tensor(keep, dtype=torch.long)
    for k in VOCAB_ROWS:
        tensors[k] = tensors[k].index_select(0, index)
    model.load_state_dict(tensors, strict=True)


def keep_rows(tok: Tokenizer, vocab: dict[str, int], vocab_path: Path) -> list[int]:
    """Each run token's row in the checkpoint: the run's vocabulary is the checkpoint's, maybe simplified."""
    missing = [t for t in tok.tokens if t not in vocab]
    if missing:
        raise UserError(f"{vocab_path}: has no token {missing[0]!r} of the run's vocabulary (another checkpoint?)")
    return [vocab[t] for t in tok.tokens]


class Pretrained(ModelInit):
    name = "pretrained"
    tokenizer = "wordpiece"

    def build_tokenizer(self, spec, train_pairs) -> Tokenizer:
        tok, _ = WordPieceTokenizer.from_checkpoint(checkpoint_dir(spec) / VOCAB, spec.model.simplify_vocab)
        return tok

    def build_model(self, spec, tok: Tokenizer) -> UniLM:
        d = checkpoint_dir(spec)
        cfg = read_config(d)
        vocab = read_vocab(d / VOCAB)
        if len(vocab) > cfg["vocab_size"]:
            raise UserError(f"{d / VOCAB}: {len(vocab)} tokens but vocab_size is {cfg['vocab_size']} in {d / CONFIG}")
        keep = keep_rows(tok, vocab, d / VOCAB)
        model = UniLM(model_config(spec.model, cfg, d / CONFIG, len(tok), tok.pad_id))
        state, path = read_weights(d)
        load_bert(model, state, path, cfg["vocab_size"], keep)
        return model
