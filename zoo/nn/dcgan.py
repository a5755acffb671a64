"""DCGAN-style convolutional backbones: families `dcgan` and `rosca_mnist`.

`dcgan` — the WGAN repository's `models/dcgan.py` (Arjovsky et al., github.com/martinarjovsky/WassersteinGAN), which
Rosca et al. (2018) App. K use for CelebA (64 px) and CIFAR-10 (32 px):
- Generator: the latent as a (B, latent, 1, 1) map, ConvTranspose 4x4 s1 p0 to `cngf` maps at 4x4, where `cngf` is
  width / 2 doubled once per doubling of 4 up to image_size (64 px, width 64: 512 @ 4, 256 @ 8, 128 @ 16, 64 @ 32),
  ConvTranspose 4x4 s2 p1 halving the maps, and a final ConvTranspose 4x4 s2 p1 to `channels`; BatchNorm + ReLU.
- Discriminator: Conv 4x4 s2 p1 to `width` maps (no norm), then Conv 4x4 s2 p1 doubling the maps with norm until
  4x4; LeakyReLU 0.2. The WGAN code's final Conv 4x4 s1 p0 -> 1 over the 4x4 map is exactly a Linear over the
  flattened (C, 4, 4) map: we write it as the Linear head, so `features` is that flattened map. As in the WGAN code,
  no convolution has a bias when followed by a norm, the head has none, and the DCGAN initialisation
  (`zoo.nn.layers.dcgan_init_`) is applied. With norm "none" (WGAN-GP) the convolutions get biases.
- Encoder: the discriminator's layout with ReLU and a norm after every convolution (the transposed generator, whose
  norms sit between all its layers), ending in Conv 4x4 s1 p0 -> out_features, flattened, with a bias and no
  activation.
- Image sizes: powers of two >= 8.

`rosca_mnist` — Rosca et al. (2018) App. K ColorMNIST, 28 px only:
- Generator (Table 5): Linear -> width x 7 x 7 (3136 at width 64), TransposedConv 5x5 s2 -> width (14 px),
  5x5 s1 -> width / 2, 5x5 s2 -> channels (28 px); "same" padding 2, output_padding 1 on the stride-2 ones.
  BatchNorm + ReLU after every layer but the last ("all generators used ReLUs", "batch normalization for all our
  experiments"); the norm after the Linear is a BatchNorm2d over the width channels of the reshaped 7x7 map (per
  channel, like the convolution norms), not a BatchNorm1d over 3136 features: the table does not say which.
- Discriminator (Table 4): Conv 5x5 with strides (2, 1, 2, 1, 2) and width/64 x (8, 16, 32, 64, 64) maps
  (28 -> 14 -> 14 -> 7 -> 7 -> 4 px), LeakyReLU 0.2, norm on every convolution but the first, then `Linear adv`.
  Decisions: "Linear adv 2" is a two-way softmax over real / fake, equivalent to one logit (softmax of (a, b) is
  sigmoid(a - b)), so the head outputs one logit; "Linear class 10" is an auxiliary classifier that no unsupervised
  model here uses, so it is omitted. `dropout` is applied after the last convolution: the paper's DCGAN uses
  "dropout of 0.8", a TensorFlow keep-probability, i.e. PyTorch p = 0.2; the DCGAN model sets it, the default is 0.
- Encoder: the transposed generator — Conv 5x5 s2 -> width / 2, 5x5 s1 -> width, 5x5 s2 -> width (7 px), flatten,
  Linear -> out_features; BatchNorm + ReLU after every convolution, nothing after the Linear ("we do not use any
  activation function after the encoder").
Initialisation: PyTorch defaults (the paper documents none).
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from zoo.nn.layers import (
    FeatureDiscriminator, Reshape, check_image_size, check_norm, check_power_of_two, check_width, conv_block,
    dcgan_init_, make_norm, make_output_activation, uses_bias,
)
from zoo.registry import register_backbone

ROSCA_MNIST_SIZES = (28,)


# ----------------------------------------------------------------------------------------------------------- dcgan
class DCGANGenerator(nn.Module):
    """WGAN-code DCGAN generator; see the module docstring."""

    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int, output_activation: str | None,
                 norm: str):
        super().__init__()
        n = check_power_of_two("dcgan.generator", image_size, 8)
        cngf = width // 2 * 2 ** (n - 2)  # width / 2 doubled until 4 * 2**k reaches image_size
        layers: list[nn.Module] = [Reshape(latent_dim, 1, 1)]
        layers += conv_block(latent_dim, cngf, 4, 1, 0, norm, nn.ReLU(), transposed=True)  # 4x4
        size = 4
        while size < image_size // 2:
            layers += conv_block(cngf, cngf // 2, 4, 2, 1, norm, nn.ReLU(), transposed=True)
            cngf, size = cngf // 2, size * 2
        layers += [nn.ConvTranspose2d(cngf, channels, 4, 2, 1, bias=False), make_output_activation(output_activation)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)  # (B, latent) -> (B, C, image_size, image_size)


def _dcgan_down_path(channels: int, image_size: int, width: int, norm: str, act: Callable[[], nn.Module],
                     first_norm: str, family: str) -> tuple[list[nn.Module], int]:
    """Stride-2 4x4 convolutions from image_size down to 4x4, doubling maps after the first; returns maps at 4x4."""
    check_power_of_two(family, image_size, 8)
    layers = conv_block(channels, width, 4, 2, 1, first_norm, act())
    maps, size = width, image_size // 2
    while size > 4:
        layers += conv_block(maps, maps * 2, 4, 2, 1, norm, act())
        maps, size = maps * 2, size // 2
    return layers, maps


class DCGANDiscriminator(FeatureDiscriminator):
    """WGAN-code DCGAN discriminator; `features` is the flattened 4x4 map the original final conv reads."""

    def __init__(self, channels: int, image_size: int, width: int, norm: str):
        check_norm(norm)
        layers, maps = _dcgan_down_path(channels, image_size, width, norm, lambda: nn.LeakyReLU(0.2), "none",
                                        "dcgan.discriminator")
        super().__init__(maps * 4 * 4, head_bias=False)
        if norm != "none":  # the WGAN code's first conv has no bias either; conv_block gave it one
            layers[0] = nn.Conv2d(channels, width, 4, 2, 1, bias=False)
        self.body = nn.Sequential(*layers, nn.Flatten())

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)  # (B, C, H, W) -> (B, maps * 16)


class DCGANEncoder(nn.Module):
    """DCGAN encoder: the discriminator layout with norm + ReLU, then Conv 4x4 s1 p0 -> out_features."""

    def __init__(self, out_features: int, channels: int, image_size: int, width: int, norm: str):
        super().__init__()
        layers, maps = _dcgan_down_path(channels, image_size, width, norm, nn.ReLU, norm, "dcgan.encoder")
        self.net = nn.Sequential(*layers, nn.Conv2d(maps, out_features, 4, 1, 0), nn.Flatten())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, C, H, W) -> (B, out_features)


@register_backbone("dcgan.generator")
def dcgan_generator(latent_dim: int, channels: int, image_size: int, width: int = 64,
                    output_activation: str | None = "tanh", norm: str = "batch") -> nn.Module:
    """WGAN-code DCGAN generator, (B, latent_dim) -> (B, channels, image_size, image_size); DCGAN init applied."""
    return dcgan_init_(DCGANGenerator(latent_dim, channels, image_size, width, output_activation, check_norm(norm)))


@register_backbone("dcgan.discriminator")
def dcgan_discriminator(channels: int, image_size: int, width: int = 64, norm: str = "batch") -> nn.Module:
    """WGAN-code DCGAN discriminator, (B, C, H, W) -> (B,) logits; norm "layer" / "none" for WGAN-GP."""
    return dcgan_init_(DCGANDiscriminator(channels, image_size, width, norm))


@register_backbone("dcgan.encoder")
def dcgan_encoder(out_features: int, channels: int, image_size: int, width: int = 64,
                  norm: str = "batch") -> nn.Module:
    """DCGAN encoder, (B, C, H, W) -> (B, out_features), no final activation; DCGAN init applied."""
    return dcgan_init_(DCGANEncoder(out_features, channels, image_size, width, check_norm(norm)))


# ----------------------------------------------------------------------------------------------------- rosca_mnist
class RoscaMnistGenerator(nn.Module):
    """Rosca et al. Table 5 ColorMNIST generator; see the module docstring."""

    def __init__(self, latent_dim: int, channels: int, width: int, output_activation: str | None, norm: str):
        super().__init__()
        half = width // 2
        self.net = nn.Sequential(
            nn.Linear(latent_dim, width * 7 * 7, bias=uses_bias(norm)),
            Reshape(width, 7, 7),
            make_norm(norm, width), nn.ReLU(),
            *conv_block(width, width, 5, 2, 2, norm, nn.ReLU(), transposed=True, output_padding=1),  # 14 px
            *conv_block(width, half, 5, 1, 2, norm, nn.ReLU(), transposed=True),  # 14 px
            nn.ConvTranspose2d(half, channels, 5, 2, 2, output_padding=1),  # 28 px
            make_output_activation(output_activation),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)  # (B, latent) -> (B, C, 28, 28)


class RoscaMnistDiscriminator(FeatureDiscriminator):
    """Rosca et al. Table 4 ColorMNIST discriminator; `features` is the flattened 4x4 map before `Linear adv`."""

    MAPS = (8, 16, 32, 64, 64)  # at width 64
    STRIDES = (2, 1, 2, 1, 2)

    def __init__(self, channels: int, width: int, norm: str, dropout: float):
        check_norm(norm)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"rosca_mnist.discriminator: dropout is a drop probability in [0, 1), got {dropout} "
                             "(the paper's 0.8 is TensorFlow's keep-probability, i.e. dropout=0.2)")
        super().__init__(width * 4 * 4)
        layers: list[nn.Module] = []
        in_ch = channels
        for i, (m, s) in enumerate(zip(self.MAPS, self.STRIDES)):
            maps = width * m // 64
            layers += conv_block(in_ch, maps, 5, s, 2, "none" if i == 0 else norm, nn.LeakyReLU(0.2))
            in_ch = maps
        layers.append(nn.Flatten())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.body = nn.Sequential(*layers)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)  # (B, C, 28, 28) -> (B, width * 16)


class RoscaMnistEncoder(nn.Module):
    """Rosca et al. ColorMNIST encoder, the transposed Table 5 generator; see the module docstring."""

    def __init__(self, out_features: int, channels: int, width: int, norm: str):
        super().__init__()
        self.net = nn.Sequential(
            *conv_block(channels, width // 2, 5, 2, 2, norm, nn.ReLU()),  # 14 px
            *conv_block(width // 2, width, 5, 1, 2, norm, nn.ReLU()),  # 14 px
            *conv_block(width, width, 5, 2, 2, norm, nn.ReLU()),  # 7 px
            nn.Flatten(),
            nn.Linear(width * 7 * 7, out_features),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, C, 28, 28) -> (B, out_features)


def _check_rosca(builder: str, image_size: int, width: int) -> None:
    check_image_size(f"rosca_mnist.{builder}", image_size, ROSCA_MNIST_SIZES, " (Rosca et al. App. K ColorMNIST)")
    check_width(f"rosca_mnist.{builder}", width, 8 if builder == "discriminator" else 2)


@register_backbone("rosca_mnist.generator")
def rosca_mnist_generator(latent_dim: int, channels: int, image_size: int = 28, width: int = 64,
                          output_activation: str | None = "tanh", norm: str = "batch") -> nn.Module:
    """Rosca et al. Table 5 generator, (B, latent_dim) -> (B, channels, 28, 28)."""
    _check_rosca("generator", image_size, width)
    return RoscaMnistGenerator(latent_dim, channels, width, output_activation, check_norm(norm))


@register_backbone("rosca_mnist.discriminator")
def rosca_mnist_discriminator(channels: int, image_size: int = 28, width: int = 64, norm: str = "batch",
                              dropout: float = 0.0) -> nn.Module:
    """Rosca et al. Table 4 discriminator, (B, C, 28, 28) -> (B,) logits; width must be a multiple of 8."""
    _check_rosca("discriminator", image_size, width)
    return RoscaMnistDiscriminator(channels, width, norm, dropout)


@register_backbone("rosca_mnist.encoder")
def rosca_mnist_encoder(out_features: int, channels: int, image_size: int = 28, width: int = 64,
                        norm: str = "batch") -> nn.Module:
    """Rosca et al. ColorMNIST encoder, (B, C, 28, 28) -> (B, out_features), no final activation."""
    _check_rosca("encoder", image_size, width)
    return RoscaMnistEncoder(out_features, channels, width, check_norm(norm))
