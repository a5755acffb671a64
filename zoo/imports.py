"""The modules a recipe's `imports:` (or `--import`) names: models, backbones, datasets or metrics defined outside
the package, which register themselves when imported.

Importing a module runs its code. A recipe the user names (`zoo train RECIPE`, `load_recipe(path)`) is the user's
own file, so its imports run. A run folder's config.yaml is data from wherever the folder came from (a download, a
colleague): loading it (`load_checkpoint`, `zoo sample`, `zoo evaluate`, ...) imports nothing it names unless the
caller says it trusts the folder (`trust_imports=True`, `--trust-imports`). A module that is imported already (the
zoo's own, an installed `zoo.models` plugin, one the user imported or passed with --import) needs no trust.

Entries, as written in a recipe and recorded in a run's config.yaml:
    my_models.vae               a module on sys.path (installed, or on PYTHONPATH)
    my_models.vae@/abs/folder   the same, found in /abs/folder, the working directory of the run that recorded it:
                                a checkpoint then loads from any working directory
    /abs/path/plugin.py         a file, imported as a module named after it (`plugin`)
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from zoo.config import ConfigError


class UntrustedImportsError(ConfigError):
    """A run folder's recipe names modules to import that are not imported yet, and the caller did not trust it."""

    def __init__(self, entries: list[str]):
        self.entries = entries
        super().__init__(f"asks to import {', '.join(entries)} (code from outside the zoo); pass --trust-imports / "
                         f"trust_imports=True if you trust it")


@dataclass(frozen=True)
class _Entry:
    text: str  # as written
    module: str  # the name it has in sys.modules
    file: Path | None = None  # a .py file
    root: Path | None = None  # the folder a module name was found in (`name@root`)

    def loaded(self) -> bool:
        """Imported already (by the zoo, a plugin, the user): importing it again runs nothing new."""
        module = sys.modules.get(self.module)
        if module is None:
            return False
        return self.file is None or _same_file(getattr(module, "__file__", None), self.file)


def _same_file(location: str | None, path: Path) -> bool:
    return location is not None and Path(location).resolve() == path


def parse(name: object) -> _Entry:
    """One `imports:` entry, checked without importing anything."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"imports: got {name!r}, expected a module name or a path to a .py file")
    if name.endswith(".py"):
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"imports: {name!r} is not a file; give a module name or an existing .py file")
        module = path.stem
        # Imported under its stem, the file would replace that module for the whole process (json.py for json).
        if module in sys.stdlib_module_names:
            raise ConfigError(f"imports: {name!r} has the name of the standard-library module {module!r}, which it "
                              f"would replace; rename the file (e.g. my_{module}.py)")
        current = sys.modules.get(module)
        if current is not None and not _same_file(getattr(current, "__file__", None), path):
            raise ConfigError(f"imports: {name!r} has the name of the imported module {module!r}, which it would "
                              f"replace ({getattr(current, '__file__', None) or 'built in'}); rename the file")
        return _Entry(name, module, file=path)
    module, _, root = name.partition("@")
    return _Entry(name, module, root=Path(root) if root else None)


def import_modules(names: Sequence[object], *, trusted: bool = True) -> list[str]:
    """Import the modules `names` lists (see the module docstring for the forms); returns them as a recipe records
    them, so that a checkpoint loads from any working directory: file paths absolute, a module found in the working
    directory with that folder (`name@folder`).

    Args:
        trusted: import what is not imported yet. If False, raise UntrustedImportsError naming those entries, having
            imported nothing.
    """
    entries = [parse(name) for name in names]
    if not trusted and (pending := [e.text for e in entries if not e.loaded()]):
        raise UntrustedImportsError(pending)
    return [_import(entry) for entry in entries]


def _import(entry: _Entry) -> str:
    if entry.file is not None:
        if not entry.loaded():
            spec = importlib.util.spec_from_file_location(entry.module, entry.file)
            sys.modules[entry.module] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(sys.modules[entry.module])
        return str(entry.file)
    if entry.root is not None and entry.module not in sys.modules:
        if not entry.root.is_dir():
            raise ConfigError(f"imports: {entry.text!r}: the folder {str(entry.root)!r} it was found in is gone; "
                              f"install its package or pass the module's new place with --import")
        if str(entry.root) not in sys.path:
            sys.path.append(str(entry.root))
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # the installed `zoo` script: cwd is not on it
        sys.path.append(cwd)
    try:
        importlib.import_module(entry.module)
    except ModuleNotFoundError as err:
        raise ConfigError(f"imports: cannot import {entry.module!r} ({err}); run from the folder holding it, add that "
                          f"folder to PYTHONPATH, install its package, or pass the path of its .py file") from None
    root = _root_of(entry.module)
    if root is not None and root == Path(cwd).resolve():  # found only because of where the run started
        return f"{entry.module}@{root}"
    return entry.text


def _root_of(name: str) -> Path | None:
    """The sys.path folder a module was imported from (the parent of its top-level package)."""
    top = sys.modules.get(name.split(".")[0])
    location = getattr(top, "__file__", None)
    if location:
        path = Path(location).resolve()
        return path.parent.parent if path.stem == "__init__" else path.parent
    paths = list(getattr(top, "__path__", None) or [])  # a namespace package
    return Path(paths[0]).resolve().parent if paths else None
