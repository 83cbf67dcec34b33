"""From a spec to what a run trains: its tokenizer and its model, for each way of initialising one.

`model.init` names an entry of `INITS`: `scratch` (a character vocabulary built from the training
split and a new UniLM) or `pretrained` (a Hugging Face BERT directory: its WordPiece vocabulary and
weights; imported only when chosen).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from .model import ModelConfig, UniLM
from .registry import Registry
from .tokenizers import TOKENIZERS, CharTokenizer, Tokenizer

# What an unset model size means for a model trained from scratch (a pretrained one reads config.json).
SCRATCH_SIZE = {"layers": 4, "hidden": 256, "heads": 4}


class ModelInit:
    name: ClassVar[str] = ""
    tokenizer: ClassVar[str] = ""  # the TOKENIZERS entry this init's runs use

    def build_tokenizer(self, spec, train_pairs) -> Tokenizer:
        raise NotImplementedError

    def build_model(self, spec, tok: Tokenizer) -> UniLM:
        raise NotImplementedError


INITS: Registry[type[ModelInit]] = Registry("model init", ModelInit, family="inits")


def scratch_config(m, vocab_size: int) -> ModelConfig:
    """The ModelConfig of a spec's `model` section for a model trained from scratch."""
    size = {k: getattr(m, k) if getattr(m, k) is not None else v for k, v in SCRATCH_SIZE.items()}
    return ModelConfig(vocab_size=vocab_size, hidden=size["hidden"], layers=size["layers"], heads=size["heads"],
                       intermediate=m.intermediate, max_positions=m.max_len, dropout=m.dropout, pre_ln=m.pre_ln,
                       attention_dropout=m.attention_dropout,
                       copy=m.copy, copy_continuation=m.copy_continuation, copy_coverage=m.copy_coverage)


@INITS.register()
class Scratch(ModelInit):
    name = "scratch"
    tokenizer = "char"

    def build_tokenizer(self, spec, train_pairs) -> Tokenizer:
        return CharTokenizer.build((t for p in train_pairs for t in (p.source, p.target)), spec.model.vocab_min_freq)

    def build_model(self, spec, tok: Tokenizer) -> UniLM:
        return UniLM(scratch_config(spec.model, len(tok)))


INITS.add("pretrained", "exposure_cli.pretrained:Pretrained")


def tokenizer_for(spec, run_dir: Path, train_pairs=None) -> Tokenizer:
    """The run's tokenizer: loaded from `run_dir` when saved there, else built (and saved)."""
    init = INITS.get(spec.model.init)()
    cls = TOKENIZERS.get(init.tokenizer)
    if cls.saved_in(run_dir):
        return cls.load(run_dir)
    if train_pairs is None:
        return cls.load(run_dir)  # reports what is missing
    tok = init.build_tokenizer(spec, train_pairs)
    tok.save(run_dir)
    return tok


def build_model(spec, tok: Tokenizer) -> UniLM:
    return INITS.get(spec.model.init)().build_model(spec, tok)
