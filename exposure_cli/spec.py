"""Experiment spec: YAML file → typed, validated dataclasses.

Every key is checked against the dataclass that holds it (`typed.build`), so a typo or a wrong type
stops the run before any work with one line naming the key path and what was expected. A spec
given by bare name (`exposure run csl.yaml`) is looked up in ./experiments/ and then among the
specs packaged with exposure.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from . import fileio
from .errors import UserError
from .typed import build, param


def _strategies():
    from .decode.beam import STRATEGIES

    return STRATEGIES.names()


def _inits():
    from .build import INITS

    return INITS.names()


@dataclass
class DataSpec:
    train: str = param("data/csl/train.tsv", "training split, title<TAB>content per line")
    dev: str = param("data/csl/dev.tsv", "dev split, decoded after each epoch to select the weights")
    test: str = param("data/csl/test.tsv", "test split, decoded at every beam of decode.beams")
    train_limit: int | None = param(None, "use only the first N training pairs (quick specs); null = all")
    test_limit: int | None = param(None, "use only the first N test pairs; null = all")


@dataclass
class ModelSpec:
    init: str = param("scratch", "scratch: a new UniLM and a character vocabulary built from the training "
                      "split; pretrained: a Hugging Face BERT directory (model.checkpoint)", _inits)
    checkpoint: str | None = param(None, "with init: pretrained, the BERT directory (config.json, vocab.txt, "
                                   "model.safetensors or pytorch_model.bin); ${EXPOSURE_BERT} is expanded")
    simplify_vocab: bool = param(True, "with init: pretrained, drop multi-character tokens holding a CJK "
                                 "character or punctuation, as bert4keras' load_vocab(simplified=True)")
    layers: int | None = param(None, "transformer blocks; default 4 (scratch) or config.json's (pretrained)")
    hidden: int | None = param(None, "width; default 256 (scratch) or config.json's")
    heads: int | None = param(None, "attention heads; default 4 (scratch) or config.json's")
    intermediate: int | None = param(None, "feed-forward width; default 4 × hidden or config.json's")
    dropout: float = param(0.1, "dropout on embeddings and sublayer outputs (and attention probabilities, "
                           "unless model.attention_dropout says otherwise)")
    attention_dropout: float | None = param(None, "dropout on attention probabilities; null = model.dropout "
                                            "(BERT's); 0 = none, as bert4keras 0.5.8 (the paper profiles)")
    max_len: int = param(256, "positions for [CLS] source [SEP] target [SEP], as in the study")
    max_source_len: int | None = param(None, "source tokens kept; default max_len - max_target_len - 2")
    max_target_len: int = param(32, "target positions in training, the final [SEP] included")
    truncation: str = param("fixed", "fixed: cut the source to max_source_len and the target to "
                            "max_target_len; longest_first: as bert4keras' encode(max_length=max_len), drop "
                            "the second-to-last token of the longer side until the pair fits max_len",
                            ("fixed", "longest_first"))
    vocab_min_freq: int = param(1, "scratch: characters seen fewer times in training become [UNK]")
    pre_ln: bool = param(False, "LayerNorm before each sublayer instead of after (same parameters)")
    copy: bool = param(False, "mix a pointer over the source into the output distribution (scratch profile)")
    copy_continuation: int = param(0, "with copy: learned pointer bonus for continuing a copied span of 1..n tokens")
    copy_coverage: bool = param(False, "with copy: learned pointer weight on source tokens the target already holds")

    def source_len(self) -> int:
        return self.max_source_len if self.max_source_len is not None else self.max_len - self.max_target_len - 2


@dataclass
class TrainSpec:
    epochs: int = param(20, "passes over the training split")
    batch_size: int = param(16, "examples per optimizer step")
    lr: float = param(1e-5, "peak learning rate")
    adam_eps: float = param(1e-8, "Adam's epsilon (bert4keras and BERT use 1e-6)")
    warmup: int = param(0, "optimizer steps of linear warm-up")
    schedule: str = param("constant", "learning-rate decay after warm-up", ("constant", "linear", "cosine"))
    weight_decay: float = param(0.0, "AdamW's decoupled weight decay")
    no_decay_norm_bias: bool = param(False, "exempt biases and LayerNorm weights from weight decay "
                                     "(BERT's fine-tuning recipe); false decays every parameter")
    grad_clip: float | None = param(1.0, "clip the gradient's global norm to this; null = no clipping")
    label_smoothing: float = param(0.0, "label smoothing of the target cross-entropy")
    bucket: bool = param(True, "batch examples of similar length (less padding); false = consecutive slices "
                         "of one plain shuffle per epoch, as the study's scripts (the paper profiles)")
    seeds: list[int] = param([0, 1], "one run per seed and method")
    bf16: bool = param(True, "bf16 autocast for training and decoding (fp16 with a grad scaler on GPUs without bf16)")
    patience: int | None = param(None, "early stopping: end training once dev BLEU has not improved for this many "
                                 "epochs (the selected weights are the best epoch's either way); null = every epoch")
    dev_size: int | None = param(500, "dev examples greedily decoded after each epoch; null = the whole split")
    select_fp32: bool = param(False, "decode the dev set in fp32 for selection, even when training in bf16")
    checkpoint_seconds: float = param(120.0, "also save a resumable checkpoint every this many seconds of "
                                      "training (epoch ends always save one); 0 = only at epoch ends")
    log_every: int = param(20, "optimizer steps between lines of train.jsonl")
    tensorboard: bool = param(False, "also write train.jsonl's curves as TensorBoard event files in each run's "
                              "tensorboard/ (needs the tensorboard extra)")
    needs_gpu: bool = param(False, "a profile sized for a GPU: without CUDA `exposure run` stops and prints how "
                            "long a CPU run would take, unless --device cpu is given")
    cpu_step_seconds: float | None = param(None, "with needs_gpu: seconds of one training step measured on a CPU "
                                           "(the estimate's basis; docs/paper-profile.md)")


@dataclass
class DecodeSpec:
    beams: list[int] = param([1, 2, 3], "beam sizes the test set is decoded at")
    strategy: str = param("study", "study: the article's bert4keras 0.5.8 search; standard: a pool of finished "
                          "hypotheses (decode/beam.py explains both)", _strategies)
    max_len: int = param(32, "generated target tokens, the final [SEP] included")
    batch_size: int = param(32, "sources decoded together (sorted by length)")
    length_penalty: float = param(0.0, "standard only: rank finished by score / ((5 + len) / 6) ** length_penalty")
    n_best: int = param(1, "hypotheses returned per source (`exposure generate`); the tables use the first")
    no_repeat_ngram_size: int = param(0, "forbid repeating any n-gram of this size; 0 = off")


@dataclass
class ScoreSpec:
    lowercase: bool = param(True, "lower-case texts before the study's scores (the authors' scripts did from "
                            "September 2020 on; the article's tables of March 2020 predate it)")


@dataclass
class MethodSpec:
    """One entry of `methods`: a registered method name and its parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Spec:
    name: str = field(metadata={"help": "the experiment's name: the default output directory is runs/<name>"})
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    methods: list[MethodSpec] = field(default_factory=lambda: [MethodSpec("baseline")])
    decode: DecodeSpec = field(default_factory=DecodeSpec)
    score: ScoreSpec = field(default_factory=ScoreSpec)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["methods"] = [{m.name: dict(m.params)} if m.params else m.name for m in self.methods]
        return d


def _methods(raw: Any, where: str) -> list[MethodSpec]:
    from .methods import METHODS, validate_method

    if not isinstance(raw, list) or not raw:
        raise UserError(f"{where}: expected a non-empty list of method names or {{name: {{param: value}}}}")
    out = []
    for i, item in enumerate(raw):
        path = f"{where}[{i}]"
        if isinstance(item, str):
            name, params = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, params = next(iter(item.items()))
            params = params or {}
            if not isinstance(params, dict):
                raise UserError(f"{path}.{name}: expected a mapping of parameters, got {params!r}")
        else:
            raise UserError(f"{path}: expected a method name or {{name: {{param: value}}}}, got {item!r}")
        if name not in METHODS:
            raise UserError(METHODS.unknown(name, path))
        out.append(MethodSpec(name, validate_method(name, params, path)))
    labels = [method_label(m) for m in out]
    dup = {lab for lab in labels if labels.count(lab) > 1}
    if dup:
        raise UserError(f"{where}: method {sorted(dup)[0]!r} is listed twice with the same parameters")
    for i, m in enumerate(out):
        start = METHODS.get(m.name).warm_start
        if start and start not in labels:
            raise UserError(f"{where}[{i}].{m.name}: starts from the {start} run of its seed (warm start); "
                            f"add {start} to {where}")
    return out


def method_label(m: MethodSpec) -> str:
    """The method's name in tables and run directories: its name plus non-default parameters."""
    from .methods import get_method

    return get_method(m.name, m.params).label()


def apply_overrides(raw: dict, overrides: list[str], source: str = "--set") -> dict:
    """Apply `a.b.c=value` overrides; the value is parsed as YAML (`2`, `1e-4`, `[1,2]`, `true`)."""
    for item in overrides:
        if "=" not in item:
            raise UserError(f"{source} {item!r}: expected KEY.PATH=VALUE, e.g. train.epochs=2")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise UserError(f"{source} {item!r}: expected KEY.PATH=VALUE, e.g. train.epochs=2")
        node = raw
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise UserError(f"{source} {key}: {p!r} is not a section")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise UserError(f"{source} {key}: value {value!r} is not valid YAML ({getattr(e, 'problem', e)})") from None
    return raw


def packaged_specs() -> dict[str, Path]:
    """The specs shipped inside the package, by their path under experiments/ (`csl.yaml`, `paper/csl.yaml`)."""
    root = resources.files("exposure_cli") / "experiments"
    out: dict[str, Path] = {}
    if not root.is_dir():
        return out

    def walk(node, prefix=""):
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith((".yaml", ".yml")):
                out[prefix + child.name] = Path(str(child))

    walk(root)
    return out


def find_spec(name: str | Path) -> Path:
    """A spec path as given, else under ./experiments/, else among the packaged specs."""
    path = Path(name)
    if path.exists():
        return path
    candidates = [Path("experiments") / path]
    if path.suffix not in (".yaml", ".yml"):
        candidates.append(Path("experiments") / f"{path}.yaml")
    for c in candidates:
        if c.is_file():
            return c
    packaged = packaged_specs()
    for key in (str(name), f"{name}.yaml"):
        if key in packaged:
            return packaged[key]
    if len(path.parts) == 1 or not path.is_absolute():
        known = ", ".join(packaged) or "none"
        raise UserError(f"{name}: spec file not found (looked in ., ./experiments and the packaged specs: {known})")
    raise UserError(f"{name}: spec file not found")


def load_spec(path: str | Path, overrides: list[str] | None = None) -> Spec:
    path = find_spec(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a spec file (YAML)")
    text = fileio.read_text(path, "spec file")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if raw is None:
        raise UserError(f"{path}: the spec is empty (expected a mapping with at least 'name')")
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides or [])
    try:
        return spec_from_dict(raw)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def spec_from_dict(raw: dict) -> Spec:
    spec = build(Spec, raw, "", nested={"methods": _methods})
    if spec.model.checkpoint is not None:
        spec.model.checkpoint = expand_env(spec.model.checkpoint, "model.checkpoint")
    _check_ranges(spec)
    return spec


_ENV = re.compile(r"\$\{(\w+)\}")


def expand_env(value: str, key: str) -> str:
    """`${VAR}` replaced by the environment's VAR; an unset or empty one is an error naming both."""
    def sub(match):
        var = match.group(1)
        if not os.environ.get(var):
            raise UserError(f"{key}: {match.group(0)} is not set: set {var}=DIR (a Hugging Face BERT directory: "
                            f"config.json, vocab.txt, model.safetensors or pytorch_model.bin), or pass "
                            f"--set {key}=DIR")
        return os.environ[var]

    return _ENV.sub(sub, value)


def _check_ranges(s: Spec) -> None:
    def need(ok: bool, key: str, what: str):
        if not ok:
            raise UserError(f"{key}: expected {what}")

    m, t, d = s.model, s.train, s.decode
    need(bool(s.name) and isinstance(s.name, str), "name", "a non-empty string")
    # The default output directory is runs/<name>: a name must not lead out of runs/.
    if s.name in (".", "..") or any(c in s.name for c in "/\\\0"):
        raise UserError(f"name: expected a name usable as one directory under runs/ (no '/', '\\', '.' or '..'), "
                        f"got {s.name!r}")
    for key in ("layers", "hidden", "heads", "intermediate"):
        v = getattr(m, key)
        need(v is None or v >= 1, f"model.{key}", "at least 1")
    if m.hidden and m.heads:
        need(m.hidden % m.heads == 0, "model.hidden", f"a multiple of model.heads ({m.heads})")
    need(m.init != "pretrained" or bool(m.checkpoint), "model.checkpoint",
         "a BERT directory with init: pretrained (set EXPOSURE_BERT or --set model.checkpoint=DIR)")
    need(m.init == "pretrained" or m.checkpoint is None, "model.checkpoint", "null unless model.init is pretrained")
    need(not (m.init == "pretrained" and m.copy), "model.copy", "false with init: pretrained (BERT has no copy head)")
    need(not (m.init == "pretrained" and m.pre_ln), "model.pre_ln", "false with init: pretrained (BERT is post-LN)")
    need(0 <= m.dropout < 1, "model.dropout", "a number in [0, 1)")
    need(m.attention_dropout is None or 0 <= m.attention_dropout < 1, "model.attention_dropout",
         "a number in [0, 1), or null for model.dropout")
    need(m.copy_continuation >= 0, "model.copy_continuation", "0 (off) or a positive match length")
    need(not m.copy_continuation or m.copy, "model.copy_continuation", "0 unless model.copy is true")
    need(not m.copy_coverage or m.copy, "model.copy_coverage", "false unless model.copy is true")
    need(m.vocab_min_freq >= 1, "model.vocab_min_freq", "at least 1")
    need(m.max_target_len >= 1, "model.max_target_len", "at least 1")
    need(1 <= m.source_len() and m.source_len() + 2 + m.max_target_len <= m.max_len,
         "model.max_source_len", f"[CLS] source [SEP] + model.max_target_len to fit model.max_len ({m.max_len})")
    need(t.epochs >= 1, "train.epochs", "at least 1")
    need(t.patience is None or t.patience >= 1, "train.patience", "at least 1, or null (no early stopping)")
    need(t.batch_size >= 1, "train.batch_size", "at least 1")
    need(t.lr > 0 and math.isfinite(t.lr), "train.lr", "a positive number")
    need(t.adam_eps > 0, "train.adam_eps", "a positive number")
    need(t.warmup >= 0, "train.warmup", "0 or more steps")
    need(t.weight_decay >= 0, "train.weight_decay", "0 or more")
    need(t.grad_clip is None or t.grad_clip > 0, "train.grad_clip", "a positive number or null (no clipping)")
    need(len(t.seeds) >= 1, "train.seeds", "at least one seed")
    need(len(set(t.seeds)) == len(t.seeds), "train.seeds", "distinct seeds")
    need(all(sd >= 0 for sd in t.seeds), "train.seeds", "seeds ≥ 0")
    need(0 <= t.label_smoothing < 1, "train.label_smoothing", "a number in [0, 1)")
    need(t.dev_size is None or t.dev_size >= 1, "train.dev_size", "at least 1, or null for the whole split")
    need(t.checkpoint_seconds >= 0, "train.checkpoint_seconds", "0 or more seconds")
    need(t.log_every >= 1, "train.log_every", "at least 1")
    need(t.cpu_step_seconds is None or t.cpu_step_seconds > 0, "train.cpu_step_seconds",
         "a positive number of seconds, or null")
    for key in ("train_limit", "test_limit"):
        v = getattr(s.data, key)
        need(v is None or v >= 1, f"data.{key}", "at least 1, or null for the whole split")
    need(bool(d.beams) and all(b >= 1 for b in d.beams), "decode.beams", "a non-empty list of beam sizes ≥ 1")
    need(len(set(d.beams)) == len(d.beams), "decode.beams", "distinct beam sizes")
    need(d.max_len >= 1, "decode.max_len", "at least 1")
    room = m.max_len - m.source_len() - 1  # positions left after [CLS] source [SEP], last token not fed
    need(d.max_len <= room, "decode.max_len",
         f"at most {room} (model.max_len minus [CLS] source [SEP], the last generated token needs no position)")
    need(d.batch_size >= 1, "decode.batch_size", "at least 1")
    need(math.isfinite(d.length_penalty), "decode.length_penalty", "a finite number")
    need(d.n_best >= 1, "decode.n_best", "at least 1")
    need(d.strategy != "standard" or d.n_best <= min(d.beams), "decode.n_best",
         f"at most the smallest beam ({min(d.beams)}) with the standard strategy")
    need(d.no_repeat_ngram_size >= 0, "decode.no_repeat_ngram_size", "0 (off) or a positive n-gram size")
