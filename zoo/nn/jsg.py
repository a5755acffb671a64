"""Family `jsg`: the VAE networks of Deasy et al. (2020), JS^G_alpha VAEs, Appendix Table 3.

- Encoder: Conv 32x4x4 s2 p1 repeated 3 times for 32 px inputs (4 times for 64 px), ReLU after each, flatten
  (32 x 4 x 4), FC 256, FC 256 (ReLU), then a Linear -> out_features with no activation: the table's "Latents" row
  (a VAE asks for 2 x latent_dim and splits mean / log-variance itself).
- Decoder (the generator): Linear latent -> 256, FC 256, FC -> 32 x 4 x 4 (ReLU after each), reshape, Deconv 32x4x4
  s2 p1 repeated (ReLU between), the last one -> channels; sigmoid by default here (the table's "Sigmoid" with a
  Bernoulli or MSE likelihood), `output_activation=None` gives logits. The table lists only "FC 256, FC 256" before
  the deconvolutions; the Linear to 32 x 4 x 4 that must connect them is our completion.
- Discriminator: not in the paper (the JS^G VAEs have none); the encoder body with a one-logit head, no norm, only so
  that the family offers the uniform interface.
- Image sizes: 32 and 64. MNIST's 28 px is zero-padded to 32 by the data pipeline, as in the paper.
`width` is the conv map count (32 in the paper), `hidden` the FC width (256). PyTorch default initialisation here;
`jsg_vae` re-draws the weights as the authors do (`model.init: kaiming_uniform`, its default).
"""
from __future__ import annotations

import math

from torch import Tensor, nn

from zoo.nn.layers import FeatureDiscriminator, Reshape, check_image_size, make_output_activation
from zoo.registry import register_backbone

JSG_SIZES = (32, 64)


def _n_convs(builder: str, image_size: int) -> int:
    check_image_size(f"jsg.{builder}", image_size, JSG_SIZES,
                     " (Deasy et al. Table 3; pad 28 px MNIST to 32 as the paper does)")
    return int(math.log2(image_size // 4))  # 3 stride-2 convs for 32 px, 4 for 64 px, down to 4x4


def _encoder_body(channels: int, image_size: int, width: int, hidden: int, builder: str) -> nn.Sequential:
    """Convolutions and the two FC 256 layers, (B, C, H, W) -> (B, hidden)."""
    layers: list[nn.Module] = []
    in_ch = channels
    for _ in range(_n_convs(builder, image_size)):
        layers += [nn.Conv2d(in_ch, width, 4, 2, 1), nn.ReLU()]
        in_ch = width
    layers += [nn.Flatten(), nn.Linear(width * 4 * 4, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()]
    return nn.Sequential(*layers)


class JSGEncoder(nn.Module):
    """Deasy et al. Table 3 encoder; see the module docstring."""

    def __init__(self, out_features: int, channels: int, image_size: int, width: int, hidden: int):
        super().__init__()
        self.body = _encoder_body(channels, image_size, width, hidden, "encoder")
        self.out = nn.Linear(hidden, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x))  # (B, C, H, W) -> (B, out_features)


class JSGDiscriminator(FeatureDiscriminator):
    """The JSG encoder body with a one-logit head (uniform interface only); `features` -> (B, hidden)."""

    def __init__(self, channels: int, image_size: int, width: int, hidden: int):
        super().__init__(hidden)
        self.body = _encoder_body(channels, image_size, width, hidden, "discriminator")

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)  # (B, hidden)


class JSGGenerator(nn.Module):
    """Deasy et al. Table 3 decoder; see the module docstring."""

    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int, hidden: int,
                 output_activation: str | None):
        super().__init__()
        n = _n_convs("generator", image_size)
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, width * 4 * 4), nn.ReLU(), Reshape(width, 4, 4),
        ]
        for i in range(n):
            last = i == n - 1
            layers.append(nn.ConvTranspose2d(width, channels if last else width, 4, 2, 1))
            layers.append(make_output_activation(output_activation) if last else nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)  # (B, latent) -> (B, C, image_size, image_size)


@register_backbone("jsg.generator")
def jsg_generator(latent_dim: int, channels: int, image_size: int, width: int = 32, hidden: int = 256,
                  output_activation: str | None = "sigmoid") -> nn.Module:
    """Deasy et al. decoder, (B, latent_dim) -> (B, channels, image_size, image_size); sigmoid by default."""
    return JSGGenerator(latent_dim, channels, image_size, width, hidden, output_activation)


@register_backbone("jsg.discriminator")
def jsg_discriminator(channels: int, image_size: int, width: int = 32, norm: str = "none",
                      hidden: int = 256) -> nn.Module:
    """Encoder body + one logit, (B, C, H, W) -> (B,); the family has no norm, so only norm="none" is accepted."""
    if norm != "none":
        raise ValueError(f"jsg.discriminator has no normalisation layers (Deasy et al. Table 3); norm must be 'none', "
                         f"got {norm!r}")
    return JSGDiscriminator(channels, image_size, width, hidden)


@register_backbone("jsg.encoder")
def jsg_encoder(out_features: int, channels: int, image_size: int, width: int = 32, hidden: int = 256) -> nn.Module:
    """Deasy et al. encoder, (B, C, H, W) -> (B, out_features) with no final activation."""
    return JSGEncoder(out_features, channels, image_size, width, hidden)
