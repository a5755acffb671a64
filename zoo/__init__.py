"""zoo: a PyTorch model zoo of VAE-GAN hybrid generative models.

Public API: `create_model` (a name), `build_model` (a recipe), `list_models`, `load_recipe`, `load_checkpoint`, `Trainer`.
"""
from zoo.config import ConfigError
from zoo.factory import build_model, create_model, list_models, load_checkpoint, load_recipe
from zoo.training import Trainer

__version__ = "0.1.0"
__all__ = ["ConfigError", "Trainer", "build_model", "create_model", "list_models", "load_checkpoint", "load_recipe"]
