"""Registered models, one file each. Importing this package imports every module in it, which registers them."""
from zoo.models.base import GaussianLatentModel, GenerativeModel, LatentVariableModel, Phase, PhaseOutput
from zoo.registry import import_submodules

import_submodules(__name__)

__all__ = ["GaussianLatentModel", "GenerativeModel", "LatentVariableModel", "Phase", "PhaseOutput"]
