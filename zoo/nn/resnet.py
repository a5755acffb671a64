"""Residual backbones: families `resnet` (Gulrajani et al. 2017, CIFAR-10) and `ijae` (IJAE App. D).

`resnet` — the CIFAR-10 ResNet of Gulrajani et al.'s `gan_cifar_resnet.py` (improved_wgan_training), default width
128. Blocks are pre-activation (norm, ReLU, conv3x3, norm, ReLU, conv3x3) plus a shortcut; "up" blocks upsample by
nearest neighbour before the first conv and use upsample + 1x1 conv as shortcut; "down" blocks mean-pool after the
second conv and use 1x1 conv + mean-pool as shortcut; plain blocks keep an identity shortcut. All convs have biases.
- Generator: Linear(latent -> 4*4*width), up-blocks to image_size, norm, ReLU, Conv3x3 -> channels, tanh.
- Discriminator: optimised first block (conv3x3, ReLU, conv3x3, mean-pool; shortcut mean-pool then 1x1 conv), down
  blocks, two plain blocks, ReLU, MEAN over the spatial dims (Gulrajani's `reduce_mean(axis=[2, 3])`), Linear -> 1.
  Default norm "none" (the unconditional CIFAR critic has no normalisation); "layer" / "batch" go in the blocks.
- Encoder: the discriminator body with Linear -> out_features; default norm "batch" (Rosca et al. use batch
  normalisation in all their networks).
- Image sizes: 32 (the paper); 16 and 64 by one resampling block fewer / more (generator: log2(size / 4) up-blocks;
  discriminator: log2(size) - 4 down-blocks after the optimised block).
Initialisation: PyTorch defaults.

`ijae` — IJAE App. D networks, 32 px, latent 128, width 128. The extracted tables are garbled; our reading:
- Encoder (the first table, #Weights 6436224, whose caption was lost): BasicBlock 3 -> w s2 + InjectNoise,
  BasicBlock s2 + InjectNoise, BasicBlock s2, BasicBlock s2, ReLU, InjectNoise, Flatten (w x 2 x 2), Linear ->
  out_features. `forward(x, noise=None)`, noise (B, 3, noise_dim): one xi per injection, drawn when None. Default
  `noise="position"`: the first two injections are Linear(noise_dim, w x H x W) noise maps, the third adds xi
  per channel without parameters (needs noise_dim == w); `noise="channel"`: three Linear(noise_dim, w) shifts.
- Generator (Table 4): Linear latent -> 16 w, reshape (w, 4, 4), three upsampling BasicBlocks (identity upsampled
  shortcut), BatchNorm, ReLU, Conv3x3 s1 p1 -> channels, tanh.
- Discriminator (Table 5): BasicBlock 3 -> w s2 + InjectNoise, BasicBlock s2 + InjectNoise, two BasicBlocks s1,
  ReLU, global average pooling (w features), Linear -> 1. `features(x, noise=None)`, noise (B, 2, noise_dim).
- Pair discriminator (Table 6): x and y stacked side by side, (B, C, H, 2W), the Table 5 body, global average pooling,
  concatenated with the latent (w + latent features), Linear -> 1. `forward(x, y, z, noise=None)`.
- Joint discriminator (Table 7, its last rows cut off): Conv 4x4 s2 p1 -> w/2, LeakyReLU 0.2, Conv 4x4 s2 p1 -> w,
  LeakyReLU 0.2, Flatten (w x 8 x 8), concat latent, Linear -> 512, LeakyReLU 0.2, Linear -> 256, LeakyReLU 0.2 and
  our completion Linear 256 -> 1 (the printed rows repeat "Linear 512 -> 256" and stop); `forward(x, z)`.
- Image sizes: 32 (the paper); 16 and 64 as generalisations (one up / down block fewer / more in the encoder and
  generator; the discriminators are size-agnostic up to their flatten / pooling).
- Norms: the generator uses BatchNorm (its weight count needs it); the encoder and discriminators default to no
  norm with conv biases, the only reading under which Table 5's count (and, see below, the encoder's) comes out
  exactly; `norm="batch"` gives the text-book "same as in original ResNet" blocks.

Parameter counts at paper sizes (latent 128, width 128, noise_dim 128, 3 channels, 32 px) against the paper's
#Weights:
- Generator 1154179: ours 1154179, exact (bias-free convs before BatchNorm, biased Linear and output conv).
- Table 5 discriminator 1053825: ours 1086849 = 1053825 + 2 x 16512, i.e. exact except the two InjectNoise
  projections Linear(128, 128), which the paper's count evidently leaves out (with BatchNorm instead of conv biases
  it would be off by a further 1280).
- Table 6 pair discriminator 1054081: ours 1086977 = 1054081 + 2 x 16512 - 128, i.e. 1053953 without the
  projections, 128 short of the paper, which no reading of the table explains (its Linear 256 -> 1 adds 128 over
  Table 5; the paper's counts differ by 256).
- Table 7 joint discriminator 4526273: ours 4526273, exact — which confirms the Linear 256 -> 1 completion.
- Encoder 6436224: ours 6436224 with the default `noise="position"`, exact: 1152384 without injections +
  129 x (128 x 16 x 16 + 128 x 8 x 8) = 5283840 for two per-position Linear(128, C x H x W) with bias; among
  none / per-channel / per-position / per-map / scale injections, with or without bias, at each of the three places,
  this is the only combination that gives the count, so the third injection has no parameters. It contradicts the
  table's "Linear(128, num channels)" (per-channel, `noise="channel"`: 1201920), but it is what the paper counted.
- The discriminators' counts hold no injection parameters at all: `noise="free"` (xi added per channel unprojected,
  noise_dim == width) gives Table 5 exactly, and is the IJAE model's default (`IJAEConfig.disc_noise`); these
  builders' own default stays the text's per-channel Linear (docs/models.md).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from zoo.nn.layers import (
    BasicBlock, FeatureDiscriminator, InjectNoise, Reshape, check_image_size, check_norm, check_width, make_norm,
    make_output_activation, split_noise,
)
from zoo.registry import register_backbone

RESNET_SIZES = (16, 32, 64)
IJAE_SIZES = (16, 32, 64)


# ---------------------------------------------------------------------------------------------------------- resnet
class ResBlock(nn.Module):
    """Gulrajani et al.'s pre-activation `ResidualBlock` with resample None, "up" or "down"."""

    def __init__(self, in_ch: int, out_ch: int, resample: str | None, norm: str):
        super().__init__()
        if resample not in (None, "up", "down"):
            raise ValueError(f"ResBlock: resample must be None, 'up' or 'down', got {resample!r}")

        def up() -> nn.Module:
            return nn.Upsample(scale_factor=2, mode="nearest") if resample == "up" else nn.Identity()

        def pool() -> nn.Module:
            return nn.AvgPool2d(2) if resample == "down" else nn.Identity()

        mid = in_ch if resample == "down" else out_ch  # "down" widens in its second conv, the others in the first
        self.body = nn.Sequential(
            make_norm(norm, in_ch), nn.ReLU(), up(), nn.Conv2d(in_ch, mid, 3, 1, 1),
            make_norm(norm, mid), nn.ReLU(), nn.Conv2d(mid, out_ch, 3, 1, 1), pool(),
        )
        if resample is None and in_ch == out_ch:
            self.shortcut: nn.Module = nn.Identity()
        else:  # Gulrajani's UpsampleConv / ConvMeanPool with a 1x1 kernel
            self.shortcut = nn.Sequential(up(), nn.Conv2d(in_ch, out_ch, 1), pool())

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.shortcut(x)  # (B, out_ch, H', W')


class OptimizedDiscBlock(nn.Module):
    """Gulrajani et al.'s `OptimizedResBlockDisc1`: the first discriminator block, without a leading norm / ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, 1, 1), nn.ReLU(), nn.Conv2d(out_ch, out_ch, 3, 1, 1), nn.AvgPool2d(2)
        )
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(in_ch, out_ch, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.shortcut(x)  # (B, out_ch, H / 2, W / 2)


def _resnet_body(channels: int, image_size: int, width: int, norm: str, builder: str) -> nn.Sequential:
    """Discriminator body up to the pooled (B, width) features."""
    check_image_size(f"resnet.{builder}", image_size, RESNET_SIZES, " (32 is Gulrajani et al.'s CIFAR-10 network)")
    n_down = int(math.log2(image_size)) - 4
    blocks = [OptimizedDiscBlock(channels, width)]
    blocks += [ResBlock(width, width, "down", norm) for _ in range(n_down)]
    blocks += [ResBlock(width, width, None, norm) for _ in range(2)]
    return nn.Sequential(*blocks, nn.ReLU())


class ResNetDiscriminator(FeatureDiscriminator):
    """Gulrajani et al. CIFAR-10 ResNet critic; `features` is the spatial mean of the last block (B, width)."""

    def __init__(self, channels: int, image_size: int, width: int, norm: str):
        body = _resnet_body(channels, image_size, width, check_norm(norm), "discriminator")
        super().__init__(width)
        self.body = body

    def features(self, x: Tensor) -> Tensor:
        return self.body(x).mean(dim=(2, 3))  # (B, C, H, W) -> (B, width)


class ResNetEncoder(nn.Module):
    """The ResNet critic body with a Linear -> out_features head and no final activation."""

    def __init__(self, out_features: int, channels: int, image_size: int, width: int, norm: str):
        super().__init__()
        self.body = _resnet_body(channels, image_size, width, check_norm(norm), "encoder")
        self.out = nn.Linear(width, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x).mean(dim=(2, 3)))  # (B, C, H, W) -> (B, out_features)


@register_backbone("resnet.generator")
def resnet_generator(latent_dim: int, channels: int, image_size: int, width: int = 128,
                     output_activation: str | None = "tanh", norm: str = "batch") -> nn.Module:
    """Gulrajani et al. CIFAR-10 ResNet generator, (B, latent_dim) -> (B, channels, image_size, image_size)."""
    check_image_size("resnet.generator", image_size, RESNET_SIZES, " (32 is Gulrajani et al.'s CIFAR-10 network)")
    check_norm(norm)
    n_up = int(math.log2(image_size // 4))
    return nn.Sequential(
        nn.Linear(latent_dim, 4 * 4 * width), Reshape(width, 4, 4),
        *[ResBlock(width, width, "up", norm) for _ in range(n_up)],
        make_norm(norm, width), nn.ReLU(), nn.Conv2d(width, channels, 3, 1, 1),
        make_output_activation(output_activation),
    )


@register_backbone("resnet.discriminator")
def resnet_discriminator(channels: int, image_size: int, width: int = 128, norm: str = "none") -> nn.Module:
    """Gulrajani et al. CIFAR-10 ResNet critic, (B, C, H, W) -> (B,) logits."""
    return ResNetDiscriminator(channels, image_size, width, norm)


@register_backbone("resnet.encoder")
def resnet_encoder(out_features: int, channels: int, image_size: int, width: int = 128,
                   norm: str = "batch") -> nn.Module:
    """ResNet critic body as an encoder, (B, C, H, W) -> (B, out_features)."""
    return ResNetEncoder(out_features, channels, image_size, width, norm)


# ------------------------------------------------------------------------------------------------------------ ijae
def _check_ijae(builder: str, image_size: int) -> None:
    check_image_size(f"ijae.{builder}", image_size, IJAE_SIZES, " (32 is the IJAE App. D network)")


class NoisyStem(nn.Module):
    """The first two rows shared by the IJAE encoder and discriminators: two stride-2 BasicBlocks, each followed by a
    noise injection (`InjectNoise` mode "channel", "position" or "free"; "position" needs the input size)."""

    def __init__(self, channels: int, width: int, noise_dim: int, norm: str, noise: str = "channel",
                 image_size: int | None = None):
        super().__init__()
        spatial = [(image_size // 2,) * 2, (image_size // 4,) * 2] if image_size else [None, None]
        self.block1 = BasicBlock(channels, width, 2, norm=norm)
        self.noise1 = InjectNoise(noise_dim, width, noise, spatial[0])
        self.block2 = BasicBlock(width, width, 2, norm=norm)
        self.noise2 = InjectNoise(noise_dim, width, noise, spatial[1])

    def forward(self, x: Tensor, xi1: Tensor, xi2: Tensor) -> Tensor:
        h = self.noise1(self.block1(x), xi1)  # (B, w, H/2, W/2)
        return self.noise2(self.block2(h), xi2)  # (B, w, H/4, W/4)


class IJAEEncoder(nn.Module):
    """IJAE implicit encoder E(x, xi); see the module docstring. `noise`: "position" (default, the reading that gives
    App. D's 6436224 weights: per-position injections after blocks 1-2, a parameter-free one before the Linear) or
    "channel" (all three Linear(noise_dim, width) per-channel shifts, the table's text)."""

    n_injections = 3

    def __init__(self, out_features: int, channels: int, image_size: int, width: int, noise_dim: int, norm: str,
                 noise: str = "position"):
        super().__init__()
        if noise not in ("position", "channel"):
            raise ValueError(f"ijae.encoder: noise must be 'position' or 'channel', got {noise!r}")
        self.noise_dim = noise_dim
        self.stem = NoisyStem(channels, width, noise_dim, norm, noise, image_size)
        # the table's ReLU after the blocks is a no-op (a BasicBlock ends in ReLU); kept to mirror the table
        self.blocks34 = nn.Sequential(BasicBlock(width, width, 2, norm=norm), BasicBlock(width, width, 2, norm=norm),
                                      nn.ReLU())
        self.noise3 = InjectNoise(noise_dim, width, "free" if noise == "position" else "channel")
        self.out = nn.Linear(width * (image_size // 16) ** 2, out_features)

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        """Args: x: (B, C, H, W); noise: optional (B, 3, noise_dim), one xi per injection (fresh N(0, I) if None)."""
        xi = split_noise(noise, self.n_injections, self.noise_dim, x.shape[0])
        h = self.stem(x, xi[0], xi[1])  # (B, w, H/4, W/4)
        h = self.noise3(self.blocks34(h), xi[2])  # (B, w, H/16, W/16)
        return self.out(h.flatten(1))  # (B, out_features)


class IJAEDiscBody(nn.Module):
    """Table 5 body: two noisy strided BasicBlocks, two plain ones, ReLU, global average pooling -> (B, width).
    `noise`: "channel" (default, the table's text) or "free" (no parameters, the paper's #Weights)."""

    n_injections = 2

    def __init__(self, channels: int, width: int, noise_dim: int, norm: str, noise: str = "channel"):
        super().__init__()
        if noise not in ("channel", "free"):
            raise ValueError(f"ijae discriminators: noise must be 'channel' or 'free', got {noise!r}")
        self.noise_dim = noise_dim
        self.stem = NoisyStem(channels, width, noise_dim, norm, noise)
        self.blocks34 = nn.Sequential(BasicBlock(width, width, 1, norm=norm), BasicBlock(width, width, 1, norm=norm),
                                      nn.ReLU())

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        xi = split_noise(noise, self.n_injections, self.noise_dim, x.shape[0])
        h = self.stem(x, xi[0], xi[1])  # (B, w, H/4, W/4)
        return self.blocks34(h).mean(dim=(2, 3))  # (B, w)


class IJAEDiscriminator(FeatureDiscriminator):
    """IJAE Table 5 single-image discriminator; `features(x, noise=None)` -> (B, width)."""

    def __init__(self, channels: int, width: int, noise_dim: int, norm: str, noise: str = "channel"):
        super().__init__(width)
        self.body = IJAEDiscBody(channels, width, noise_dim, norm, noise)
        self.n_injections, self.noise_dim = self.body.n_injections, noise_dim

    def features(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        """Args: x: (B, C, H, W); noise: optional (B, 2, noise_dim)."""
        return self.body(x, noise)  # (B, width)


class IJAEPairDiscriminator(FeatureDiscriminator):
    """IJAE Table 6 pair discriminator D(x, y, z); `features(x, y, z, noise=None)` -> (B, width + latent_dim)."""

    def __init__(self, latent_dim: int, channels: int, width: int, noise_dim: int, norm: str, noise: str = "channel"):
        super().__init__(width + latent_dim)
        self.body = IJAEDiscBody(channels, width, noise_dim, norm, noise)
        self.n_injections, self.noise_dim = self.body.n_injections, noise_dim

    @staticmethod
    def stack_pair(x: Tensor, y: Tensor) -> Tensor:
        """Put y to the right of x ("Stack Images, orient = horizontal"): (B, C, H, W) x 2 -> (B, C, H, 2W)."""
        return torch.cat([x, y], dim=-1)

    def features(self, x: Tensor, y: Tensor, z: Tensor, noise: Tensor | None = None) -> Tensor:
        """Args: x, y: (B, C, H, W) images; z: (B, latent_dim); noise: optional (B, 2, noise_dim)."""
        h = self.body(self.stack_pair(x, y), noise)  # (B, width)
        return torch.cat([h, z], dim=1)  # (B, width + latent_dim)


class IJAEJointDiscriminator(FeatureDiscriminator):
    """IJAE Table 7 image + latent discriminator D(x, z); `features(x, z)` -> (B, hidden[-1])."""

    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int, hidden: tuple[int, ...]):
        super().__init__(hidden[-1])
        self.conv = nn.Sequential(
            nn.Conv2d(channels, width // 2, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width // 2, width, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(),
        )
        layers: list[nn.Module] = []
        dim = width * (image_size // 4) ** 2 + latent_dim
        for h in hidden:
            layers += [nn.Linear(dim, h), nn.LeakyReLU(0.2)]
            dim = h
        self.mlp = nn.Sequential(*layers)

    def features(self, x: Tensor, z: Tensor) -> Tensor:
        h = self.conv(x)  # (B, width * H/4 * W/4)
        return self.mlp(torch.cat([h, z], dim=1))  # (B, hidden[-1])


@register_backbone("ijae.encoder")
def ijae_encoder(out_features: int, channels: int, image_size: int, width: int = 128, noise_dim: int | None = None,
                 norm: str = "none", noise: str = "position") -> nn.Module:
    """IJAE implicit encoder, (B, C, H, W) [+ noise (B, 3, noise_dim)] -> (B, out_features); out_features = latent.
    noise_dim defaults to width (128 = 128 in App. D); `noise="position"` needs noise_dim == width (its last
    injection adds xi unprojected)."""
    _check_ijae("encoder", image_size)
    noise_dim = width if noise_dim is None else noise_dim
    return IJAEEncoder(out_features, channels, image_size, width, noise_dim, check_norm(norm), noise)


@register_backbone("ijae.generator")
def ijae_generator(latent_dim: int, channels: int, image_size: int, width: int = 128,
                   output_activation: str | None = "tanh", norm: str = "batch") -> nn.Module:
    """IJAE Table 4 generator, (B, latent_dim) -> (B, channels, image_size, image_size)."""
    _check_ijae("generator", image_size)
    check_norm(norm)
    n_up = int(math.log2(image_size // 4))
    return nn.Sequential(
        nn.Linear(latent_dim, width * 4 * 4), Reshape(width, 4, 4),
        *[BasicBlock(width, width, upsample=2, norm=norm) for _ in range(n_up)],
        make_norm(norm, width), nn.ReLU(), nn.Conv2d(width, channels, 3, 1, 1),
        make_output_activation(output_activation),
    )


@register_backbone("ijae.discriminator")
def ijae_discriminator(channels: int, image_size: int, width: int = 128, norm: str = "none",
                       noise_dim: int = 128, noise: str = "channel") -> nn.Module:
    """IJAE Table 5 single-image discriminator, (B, C, H, W) [+ noise (B, 2, noise_dim)] -> (B,) logits."""
    _check_ijae("discriminator", image_size)
    return IJAEDiscriminator(channels, width, noise_dim, check_norm(norm), noise)


@register_backbone("ijae.pair_discriminator")
def ijae_pair_discriminator(latent_dim: int, channels: int, image_size: int, width: int = 128, noise_dim: int = 128,
                            norm: str = "none", noise: str = "channel") -> nn.Module:
    """IJAE Table 6 pair discriminator, (x, y, z) -> (B,) logits."""
    _check_ijae("pair_discriminator", image_size)
    return IJAEPairDiscriminator(latent_dim, channels, width, noise_dim, check_norm(norm), noise)


@register_backbone("ijae.joint_discriminator")
def ijae_joint_discriminator(latent_dim: int, channels: int, image_size: int, width: int = 128,
                             hidden: tuple[int, ...] = (512, 256)) -> nn.Module:
    """IJAE Table 7 image + latent discriminator, (x, z) -> (B,) logits."""
    _check_ijae("joint_discriminator", image_size)
    check_width("ijae.joint_discriminator", width, 2)
    return IJAEJointDiscriminator(latent_dim, channels, image_size, width, tuple(hidden))
