"""zoo: a PyTorch model zoo of VAE-GAN hybrid generative models.

Public API: `create_model` (a name), `build_model` (a recipe), `list_models`, `load_recipe`, `load_checkpoint`,
`Trainer`.

The names are imported when first used (PEP 562), so `import zoo` and `zoo --help` / `zoo COMMAND --help` answer
without importing torch; commands import what they run inside their `main`.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["ConfigError", "Trainer", "build_model", "create_model", "list_models", "load_checkpoint", "load_recipe"]

_HOME = {"ConfigError": "zoo.config", "Trainer": "zoo.training", "build_model": "zoo.factory",
         "create_model": "zoo.factory", "list_models": "zoo.factory", "load_checkpoint": "zoo.factory",
         "load_recipe": "zoo.factory"}

if TYPE_CHECKING:  # what type checkers and editors see
    from zoo.config import ConfigError
    from zoo.factory import build_model, create_model, list_models, load_checkpoint, load_recipe
    from zoo.training import Trainer


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value  # once: later look-ups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
