"""Registered models, one file each. Importing this package registers them all."""
from zoo.models import dcgan, vae, wgan_gp  # noqa: F401
from zoo.models.base import GenerativeModel, Phase, PhaseOutput, create_model

__all__ = ["GenerativeModel", "Phase", "PhaseOutput", "create_model"]
