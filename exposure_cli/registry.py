"""One registry type for every family of pluggable parts: methods, decode strategies, tokenizers,
model initialisations, executors, diagnostics.

As lm-evaluation-harness's `Registry` and fairseq's `setup_registry`: a name is registered once
(a second registration is a programming error, not a silent overwrite), an entry must subclass the
family's base class, an unknown name is a one-line `UserError` that suggests near names, and an
entry may be registered lazily as "package.module:Attr" so that a heavy dependency (Ray) is
imported only when that entry is chosen.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, TypeVar

from .errors import UserError

T = TypeVar("T")


# Every family of plug-ins, by the name `exposure ls` lists it under: a Registry made with a
# `family` records itself here when its module is imported.
FAMILIES: dict[str, "Registry"] = {}
# The modules that make a family (`families()` imports them): a new family's module goes here.
FAMILY_MODULES = ("exposure_cli.methods", "exposure_cli.decode.beam", "exposure_cli.executors", "exposure_cli.tokenizers",
                  "exposure_cli.build", "exposure_cli.diagnose")


def families() -> dict[str, "Registry"]:
    """Every family (name → registry), by name."""
    for module in FAMILY_MODULES:
        importlib.import_module(module)
    return dict(sorted(FAMILIES.items()))


class Registry(Generic[T]):
    def __init__(self, kind: str, base: type | None = None, family: str = ""):
        self.kind = kind  # what an entry is, for messages: "method", "decode strategy", ...
        self.base = base
        self._entries: dict[str, T | str] = {}
        if family:  # a plug-in family, listed by `exposure ls`
            if family in FAMILIES:
                raise ValueError(f"plug-in family {family!r} is made twice")
            FAMILIES[family] = self

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Class decorator: `@REGISTRY.register()` uses the class's `name` attribute."""

        def add(obj: T) -> T:
            self.add(name or getattr(obj, "name"), obj)
            return obj

        return add

    def add(self, name: str, obj: T | str) -> None:
        """Register `obj`, or the import path "package.module:Attr" it will be loaded from."""
        if not name:
            raise ValueError(f"a {self.kind} needs a non-empty name")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if not isinstance(obj, str):
            self._check(name, obj)
        self._entries[name] = obj

    def _check(self, name: str, obj) -> None:
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise TypeError(f"{self.kind} {name!r} must be a subclass of {self.base.__name__}, got {obj!r}")

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str, where: str | None = None) -> T:
        """The entry called `name` (imported now if it was registered lazily)."""
        if name not in self._entries:
            raise UserError(self.unknown(name, where))
        obj = self._entries[name]
        if isinstance(obj, str):
            module, _, attr = obj.partition(":")
            obj = getattr(importlib.import_module(module), attr)
            self._check(name, obj)
            self._entries[name] = obj
        return obj  # type: ignore[return-value]

    def unknown(self, name: str, where: str | None = None) -> str:
        near = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        prefix = f"{where}: " if where else ""
        return f"{prefix}unknown {self.kind} {name!r} (available: {', '.join(self.names())}){hint}"
