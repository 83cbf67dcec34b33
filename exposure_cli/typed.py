"""Typed dataclasses from untyped YAML: the one place a value is checked against a field's type.

Both the spec sections and every registered family's parameters (a method's, for one) are plain
dataclasses; a field may carry `metadata={"help": ..., "choices": ...}`, where `choices` is a tuple
or a callable returning the allowed names (e.g. a registry's). Errors are one-line `UserError`s
that name the key path.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from .errors import UserError


def type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(type_name(a) for a in args) + " or null"
    if origin is list:
        return f"a list of {type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false", Any: "any value"}.get(tp, str(tp))


def convert(value: Any, tp, where: str) -> Any:
    """`value` as type `tp`, or a UserError naming `where` and what was expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return convert(value, a, where)
            except UserError:
                pass
        raise UserError(f"{where}: expected {type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{where}: expected {type_name(tp)}, got {value!r}")
        (inner,) = typing.get_args(tp)
        return [convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
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
    raise UserError(f"{where}: expected {type_name(tp)}, got {value!r}")


def choices(f: dataclasses.Field) -> tuple[str, ...] | None:
    c = f.metadata.get("choices")
    return tuple(c()) if callable(c) else c


def check_choice(f: dataclasses.Field, value: Any, where: str) -> None:
    allowed = choices(f)
    if allowed is not None and value not in allowed:
        raise UserError(f"{where}: expected one of {', '.join(allowed)}, got {value!r}")


def default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def build(cls, raw: Any, where: str, nested: dict[str, typing.Callable[[Any, str], Any]] | None = None,
          noun: str = "key"):
    """An instance of dataclass `cls` from a mapping, every key and value checked.

    Dataclass-typed fields are built recursively; `nested` gives a builder for fields that need
    their own rule (the spec's `methods` list).
    """
    if not isinstance(raw, dict):
        raise UserError(f"{where or 'spec'}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            expected = f"one of: {', '.join(fields)}" if fields else f"no {noun}s"
            raise UserError(f"{path}: unknown {noun} (expected {expected})")
        tp = hints[key]
        if nested and key in nested:
            kwargs[key] = nested[key](value, path)
        elif dataclasses.is_dataclass(tp):
            kwargs[key] = build(tp, value if value is not None else {}, path, nested, noun)
        else:
            kwargs[key] = convert(value, tp, path)
        check_choice(fields[key], kwargs[key], path)
    missing = [n for n, f in fields.items() if n not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UserError(f"{where or 'spec'}: missing required key {missing[0]!r}")
    return cls(**kwargs)


@dataclass
class FieldDoc:
    name: str
    type: str
    default: Any
    help: str
    choices: tuple[str, ...] | None


def describe(cls) -> list[FieldDoc]:
    """Each field of a dataclass with its type, default and help, for `exposure ls`."""
    hints = typing.get_type_hints(cls)
    return [FieldDoc(f.name, type_name(hints[f.name]), default(f), f.metadata.get("help", ""), choices(f))
            for f in dataclasses.fields(cls)]


def param(default: Any, help: str, choices=None) -> Any:
    """A dataclass field with its help text (and allowed values): `x: float = param(0.5, "...")`."""
    metadata = {"help": help}
    if choices is not None:
        metadata["choices"] = choices
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)
