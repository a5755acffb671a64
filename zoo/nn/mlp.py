"""Fully connected backbones: the code discriminator of Rosca et al. and the `mlp` family for vector (toy) data.

- `mlp.code_discriminator(latent_dim, hidden=1000, layers=3)`: Rosca et al. App. K, "a 3 layer MLP with 1000 units
  each and leaky RELUs activations with a slope of 0.2". We read it as three hidden layers of 1000 units, each
  followed by LeakyReLU 0.2, and a Linear -> 1 logit on top (the logit layer is not counted as one of the three).
  No normalisation.
- `mlp.generator(latent_dim, out_dim, hidden, layers)`: ReLU hidden layers (generators use ReLU throughout the zoo)
  and a Linear -> out_dim; raw outputs by default (`output_activation=None`), since the toy mixtures are unbounded.
- `mlp.discriminator(in_dim, hidden, layers)`: LeakyReLU 0.2 hidden layers and a Linear -> 1 logit.
- `mlp.encoder(out_features, in_dim, hidden, layers)`: ReLU hidden layers and a Linear -> out_features with no
  activation, for the toy VAE-GAN hybrids.
These are vector networks, so they do not take the image builders' (channels, image_size, width) arguments.
Discriminators expose `features` (the last hidden layer) and `feature_dim` like the image ones. PyTorch default
initialisation.
"""
from __future__ import annotations

from torch import Tensor, nn

from zoo.nn.layers import FeatureDiscriminator, make_output_activation, mlp_layers
from zoo.registry import register_backbone


class MLPDiscriminator(FeatureDiscriminator):
    """`layers` LeakyReLU(0.2) hidden layers of `hidden` units, then a Linear -> 1 logit."""

    def __init__(self, in_dim: int, hidden: int, layers: int):
        mods, dim = mlp_layers(in_dim, hidden, layers, nn.LeakyReLU, negative_slope=0.2)
        super().__init__(dim)
        self.body = nn.Sequential(*mods)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)  # (B, in_dim) -> (B, hidden)


@register_backbone("mlp.code_discriminator")
def mlp_code_discriminator(latent_dim: int, hidden: int = 1000, layers: int = 3) -> nn.Module:
    """Rosca et al. code discriminator, (B, latent_dim) -> (B,) logits."""
    return MLPDiscriminator(latent_dim, hidden, layers)


@register_backbone("mlp.discriminator")
def mlp_discriminator(in_dim: int, hidden: int = 128, layers: int = 3) -> nn.Module:
    """Vector discriminator, (B, in_dim) -> (B,) logits."""
    return MLPDiscriminator(in_dim, hidden, layers)


@register_backbone("mlp.generator")
def mlp_generator(latent_dim: int, out_dim: int, hidden: int = 128, layers: int = 3,
                  output_activation: str | None = None) -> nn.Module:
    """Vector generator, (B, latent_dim) -> (B, out_dim)."""
    mods, dim = mlp_layers(latent_dim, hidden, layers, nn.ReLU)
    return nn.Sequential(*mods, nn.Linear(dim, out_dim), make_output_activation(output_activation))


@register_backbone("mlp.encoder")
def mlp_encoder(out_features: int, in_dim: int, hidden: int = 128, layers: int = 3) -> nn.Module:
    """Vector encoder, (B, in_dim) -> (B, out_features) with no final activation."""
    mods, dim = mlp_layers(in_dim, hidden, layers, nn.ReLU)
    return nn.Sequential(*mods, nn.Linear(dim, out_features))
