"""Experiment spec: YAML file → typed, validated dataclasses.

Every key is checked against the dataclass that holds it, so a typo or a wrong type stops the run
before any work with one line naming the key path and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import fileio
from .errors import UserError


@dataclass
class DataSpec:
    train: str = "data/csl/train.tsv"
    dev: str = "data/csl/dev.tsv"
    test: str = "data/csl/test.tsv"
    # Optional caps, in file order, for quick specs (smoke tests); null uses the whole split.
    train_limit: int | None = None
    test_limit: int | None = None


@dataclass
class ModelSpec:
    init: str = "scratch"
    layers: int = 4
    hidden: int = 256
    heads: int = 4
    intermediate: int | None = None  # default 4 × hidden, as in BERT
    dropout: float = 0.1
    max_len: int = 256  # positions for [CLS] source [SEP] target [SEP], as in the study
    max_source_len: int | None = None  # source characters kept; default max_len - max_target_len - 2
    max_target_len: int = 32  # target positions including the final [SEP]
    vocab_min_freq: int = 1  # characters seen fewer times in train become [UNK]
    pre_ln: bool = False  # LayerNorm before each sublayer instead of after (same parameters)
    copy: bool = False  # mix a pointer over the source into the output distribution (scratch profile)
    copy_continuation: int = 0  # with copy: learned pointer bonus for continuing a copied span of 1..n tokens
    copy_coverage: bool = False  # with copy: learned pointer weight on source tokens the target already holds

    def source_len(self) -> int:
        return self.max_source_len if self.max_source_len is not None else self.max_len - self.max_target_len - 2


@dataclass
class TrainSpec:
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-5
    warmup: int = 0  # optimizer steps of linear warm-up
    schedule: str = "constant"  # constant | linear | cosine (decay after warm-up)
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    label_smoothing: float = 0.0
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    bf16: bool = True
    dev_size: int = 500  # dev examples decoded greedily after each epoch to pick the best weights
    log_every: int = 20


@dataclass
class DecodeSpec:
    beams: list[int] = field(default_factory=lambda: [1, 2, 3])
    strategy: str = "study"  # study (bert4keras 0.5.8, the article's) | standard (finished pool); see decode.py
    max_len: int = 32  # generated target tokens, the final [SEP] included
    batch_size: int = 32  # sources decoded together (sorted by length)
    length_penalty: float = 0.0  # standard only: rank finished by score / ((5 + len) / 6) ** length_penalty
    n_best: int = 1  # hypotheses returned per source (`exposure generate`); the tables use the first
    no_repeat_ngram_size: int = 0  # forbid repeating any n-gram of this size; 0 = off


@dataclass
class MethodSpec:
    """One entry of `methods`: a registered method name and its parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Spec:
    name: str
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    methods: list[MethodSpec] = field(default_factory=lambda: [MethodSpec("baseline")])
    decode: DecodeSpec = field(default_factory=DecodeSpec)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["methods"] = [{m.name: dict(m.params)} if m.params else m.name for m in self.methods]
        return d


_CHOICES = {
    ("model", "init"): ("scratch",),
    ("train", "schedule"): ("constant", "linear", "cosine"),
    ("decode", "strategy"): ("study", "standard"),
}


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def _convert(value: Any, tp, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, where)
            except UserError:
                pass
        raise UserError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-5` as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise UserError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _build(cls, raw: Any, where: str):
    if not isinstance(raw, dict):
        raise UserError(f"{where or 'spec'}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise UserError(f"{path}: unknown key (expected one of: {', '.join(names)})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value if value is not None else {}, path)
        elif key == "methods":
            kwargs[key] = _methods(value, path)
        else:
            kwargs[key] = _convert(value, tp, path)
        choices = _CHOICES.get((where, key))
        if choices and kwargs[key] not in choices:
            raise UserError(f"{path}: expected one of {', '.join(choices)}, got {kwargs[key]!r}")
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UserError(f"{where or 'spec'}: missing required key {missing[0]!r}")
    return cls(**kwargs)


def _methods(raw: Any, where: str) -> list[MethodSpec]:
    from .methods import validate_method

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
        out.append(MethodSpec(name, validate_method(name, params, path)))
    labels = [method_label(m) for m in out]
    dup = {lab for lab in labels if labels.count(lab) > 1}
    if dup:
        raise UserError(f"{where}: method {sorted(dup)[0]!r} is listed twice with the same parameters")
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
        node = raw
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise UserError(f"{source} {key}: {p!r} is not a section")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise UserError(f"{source} {key}: value {value!r} is not valid YAML ({e.problem})") from None
    return raw


def load_spec(path: str | Path, overrides: list[str] | None = None) -> Spec:
    path = Path(path)
    text = fileio.read_text(path, "spec file")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    raw = apply_overrides(raw, overrides or [])
    try:
        return spec_from_dict(raw)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def spec_from_dict(raw: dict) -> Spec:
    spec = _build(Spec, raw, "")
    _check_ranges(spec)
    return spec


def _check_ranges(s: Spec) -> None:
    def need(ok: bool, key: str, what: str):
        if not ok:
            raise UserError(f"{key}: expected {what}")

    need(s.model.hidden % s.model.heads == 0, "model.hidden", f"a multiple of model.heads ({s.model.heads})")
    need(s.model.layers >= 1, "model.layers", "at least 1")
    need(0 <= s.model.dropout < 1, "model.dropout", "a number in [0, 1)")
    need(s.model.copy_continuation >= 0, "model.copy_continuation", "0 (off) or a positive match length")
    need(not s.model.copy_continuation or s.model.copy, "model.copy_continuation", "0 unless model.copy is true")
    need(not s.model.copy_coverage or s.model.copy, "model.copy_coverage", "false unless model.copy is true")
    need(s.model.max_target_len >= 1, "model.max_target_len", "at least 1")
    need(1 <= s.model.source_len() and s.model.source_len() + 2 + s.model.max_target_len <= s.model.max_len,
         "model.max_source_len", f"[CLS] source [SEP] + model.max_target_len to fit model.max_len ({s.model.max_len})")
    need(s.train.epochs >= 1, "train.epochs", "at least 1")
    need(s.train.batch_size >= 1, "train.batch_size", "at least 1")
    need(s.train.lr > 0, "train.lr", "a positive number")
    need(len(s.train.seeds) >= 1, "train.seeds", "at least one seed")
    need(len(set(s.train.seeds)) == len(s.train.seeds), "train.seeds", "distinct seeds")
    need(0 <= s.train.label_smoothing < 1, "train.label_smoothing", "a number in [0, 1)")
    need(s.train.dev_size >= 1, "train.dev_size", "at least 1")
    need(bool(s.decode.beams) and all(b >= 1 for b in s.decode.beams), "decode.beams", "a list of beam sizes ≥ 1")
    need(s.decode.max_len >= 1, "decode.max_len", "at least 1")
    room = s.model.max_len - s.model.source_len() - 1  # positions left after [CLS] source [SEP], last token not fed
    need(s.decode.max_len <= room, "decode.max_len",
         f"at most {room} (model.max_len minus [CLS] source [SEP], the last generated token needs no position)")
    need(s.decode.batch_size >= 1, "decode.batch_size", "at least 1")
    need(math.isfinite(s.decode.length_penalty), "decode.length_penalty", "a finite number")
    need(s.decode.n_best >= 1, "decode.n_best", "at least 1")
    need(s.decode.strategy != "standard" or s.decode.n_best <= min(s.decode.beams), "decode.n_best",
         f"at most the smallest beam ({min(s.decode.beams)}) with the standard strategy")
    need(s.decode.no_repeat_ngram_size >= 0, "decode.no_repeat_ngram_size", "0 (off) or a positive n-gram size")
