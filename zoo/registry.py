"""One small generic registry: models, backbones, datasets and metrics are all looked up by name.

A leaf: it imports nothing of zoo. Resolving names to built objects (and importing the packages whose modules
register themselves) is `zoo.factory`'s job."""
from __future__ import annotations

import difflib
import fnmatch
import importlib
import pkgutil
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists what is."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class Registry:
    """Maps names to objects (classes or factories) of one kind.

    Args:
        kind: what is registered ("model", "backbone", ...), used in error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register `obj` under `name`; without `obj`, returns a decorator."""

        def add(target: T) -> T:
            if name in self._entries and self._entries[name] is not target:
                raise ValueError(f"{self.kind} {name!r} is already registered to {self._entries[name]!r}")
            self._entries[name] = target
            return target

        return add if obj is None else add(obj)

    def get(self, name: str) -> Any:
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Registered {self.kind}s: {', '.join(self.names()) or '(none)'}"
            )
        return self._entries[name]

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted registered names, optionally filtered by a shell-style pattern such as ``"vae*"``."""
        names = sorted(self._entries)
        return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


MODELS = Registry("model")
BACKBONES = Registry("backbone")
DATASETS = Registry("dataset")
METRICS = Registry("metric")


def register_model(name: str):
    """Class decorator registering a `GenerativeModel` subclass under `name`; the class keeps its name in `cls.name`
    so that a model knows what it is registered as (a subclass registered under another name gets its own)."""

    def add(cls: T) -> T:
        cls.name = name
        return MODELS.register(name, cls)

    return add


def register_backbone(name: str):
    return BACKBONES.register(name)


def register_dataset(name: str):
    return DATASETS.register(name)


def import_submodules(package: str) -> None:
    """Import every module of `package` (a package's `__init__` calls this so that each file registers itself
    and adding a model, backbone or metric means adding one file)."""

    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")

