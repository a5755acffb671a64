"""Registered models, one file each. Importing this package imports every module in it, which registers them."""
from zoo.registry import import_submodules
from zoo.models.base import GenerativeModel, LatentVariableModel, Phase, PhaseOutput, create_model

import_submodules(__name__)

__all__ = ["GenerativeModel", "LatentVariableModel", "Phase", "PhaseOutput", "create_model"]
