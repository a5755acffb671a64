"""Small layers shared by the backbones.

What lives here: the normalisation and output-activation factories every builder uses, argument checks with teaching
error messages, `InjectNoise` (the implicit-encoder noise of IJAE App. D), the DCGAN initialiser, the
`FeatureDiscriminator` base class that gives every discriminator its `features` / `head` split, and the residual
`BasicBlock` of He et al. (2016) used by the IJAE networks.

Conventions used by all backbones:
- A convolution or linear layer followed by a normalisation with a learned shift has no bias (the shift makes it
  redundant); with norm "none" it has one. `uses_bias(norm)` encodes this.
- norm "layer" on feature maps is `GroupNorm(1, C)`: each sample is normalised over its own (C, H, W), so no
  statistic mixes samples; this is what the per-sample gradient penalty of WGAN-GP requires (BatchNorm breaks it).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

NORM_KINDS = ("batch", "layer", "none")
OUTPUT_ACTIVATIONS = ("tanh", "sigmoid", None)


def check_norm(kind: str) -> str:
    """Return `kind` if it is a known normalisation kind, else raise a ValueError listing the kinds."""
    if kind not in NORM_KINDS:
        raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(map(repr, NORM_KINDS))}")
    return kind


def make_norm(kind: str, channels: int, dims: int = 2) -> nn.Module:
    """Normalisation layer factory.

    Args:
        kind: "batch" (BatchNorm), "layer" (per-sample normalisation over all features of that sample) or "none".
        channels: number of channels (feature maps) or features (vectors).
        dims: 2 for feature maps (B, C, H, W), 1 for vectors (B, C).

    Returns:
        The layer; `nn.Identity()` for "none".
    """
    check_norm(kind)
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 (vectors) or 2 (feature maps), got {dims}")
    if kind == "batch":
        return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm1d(channels)
    if kind == "layer":
        # GroupNorm(1, C) == LayerNorm over (C, H, W) with a per-channel affine, independent of H and W
        return nn.GroupNorm(1, channels) if dims == 2 else nn.LayerNorm(channels)
    return nn.Identity()


def uses_bias(norm: str) -> bool:
    """Whether a layer followed by `norm` should carry its own bias (only when nothing shifts its output)."""
    return check_norm(norm) == "none"


def make_output_activation(name: str | None) -> nn.Module:
    """Final activation of a generator: "tanh" (data in [-1, 1]), "sigmoid" (data in [0, 1]) or None (raw)."""
    if name not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"unknown output_activation {name!r}; choose one of 'tanh', 'sigmoid' or None (raw outputs)")
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    return nn.Identity()


def check_image_size(family: str, image_size: int, supported: Iterable[int], extra: str = "") -> None:
    """Raise a ValueError naming the supported sizes when `image_size` is not one of them."""
    supported = tuple(supported)
    if image_size not in supported:
        sizes = ", ".join(str(s) for s in supported)
        raise ValueError(f"{family}: unsupported image_size {image_size}; supported sizes: {sizes}.{extra}")


def check_power_of_two(family: str, image_size: int, minimum: int) -> int:
    """Return log2(image_size), raising a ValueError unless it is a power of two >= `minimum`."""
    if image_size < minimum or image_size & (image_size - 1):
        raise ValueError(
            f"{family}: unsupported image_size {image_size}; supported sizes: powers of two >= {minimum} "
            f"({', '.join(str(minimum * 2**k) for k in range(4))}, ...)"
        )
    return int(math.log2(image_size))


def check_width(family: str, width: int, multiple: int) -> None:
    """Raise a ValueError unless `width` is a positive multiple of `multiple` (so every scaled map count is whole)."""
    if width <= 0 or width % multiple:
        raise ValueError(f"{family}: width must be a positive multiple of {multiple} (layer maps are width / "
                         f"{multiple} x ...), got {width}")


class Reshape(nn.Module):
    """Reshape (B, N) vectors to (B, *shape)."""

    def __init__(self, *shape: int):
        super().__init__()
        self.shape = shape

    def forward(self, x: Tensor) -> Tensor:
        return x.view(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


NOISE_MODES = ("channel", "position", "free")


class InjectNoise(nn.Module):
    """Add Gaussian noise xi ~ N(0, I_noise_dim), drawn per example and call, to a feature map (IJAE App. D).

    App. D: "Inject Noise: Linear(128, num channels)(normal(size=128)) + image". Three readings (docs/models.md):
    - "channel": ``h + Linear(noise_dim, C)(xi)``, a per-channel shift constant over H and W (the table's text);
    - "position": ``h + Linear(noise_dim, C*H*W)(xi)`` reshaped to (C, H, W), a learned noise map per position (the
      reading that reproduces the encoder's #Weights = 6436224);
    - "free": ``h + xi`` per channel, no parameters (needs noise_dim == C; the paper's discriminator counts, which
      hold no injection parameters).
    xi is not rescaled: with PyTorch's default Linear init the learned modes add per-element variance
    1/3 + 1/(3 noise_dim) at initialisation, "free" adds 1. The encoder is implicit, E(x, xi), so noise stays on in
    eval mode too.

    Args:
        noise_dim: size of xi (128 in the paper).
        channels: channels C of the feature map it is added to.
        mode: "channel", "position" or "free".
        spatial: (H, W) of the feature map; required by "position".
    """

    def __init__(self, noise_dim: int, channels: int, mode: str = "channel", spatial: tuple[int, int] | None = None):
        super().__init__()
        if mode not in NOISE_MODES:
            raise ValueError(f"InjectNoise: unknown mode {mode!r}; choose one of {', '.join(NOISE_MODES)}")
        if mode == "position" and spatial is None:
            raise ValueError("InjectNoise: mode 'position' needs spatial=(H, W) of the feature map it is added to")
        if mode == "free" and noise_dim != channels:
            raise ValueError(f"InjectNoise: mode 'free' adds xi to the channels unprojected, so noise_dim must equal "
                             f"the channel count; got noise_dim {noise_dim}, channels {channels} (set noise_dim = "
                             f"width, or use the 'channel' mode)")
        self.noise_dim, self.mode = noise_dim, mode
        self.shape = (channels, *spatial) if mode == "position" else (channels,)
        self.proj = nn.Linear(noise_dim, math.prod(self.shape)) if mode != "free" else None

    def forward(self, h: Tensor, xi: Tensor | None = None) -> Tensor:
        """Args: h: (B, C, H, W) or (B, C); xi: optional (B, noise_dim) noise, drawn from N(0, I) when None."""
        if xi is None:
            xi = torch.randn(h.shape[0], self.noise_dim, device=h.device, dtype=h.dtype)
        elif xi.shape != (h.shape[0], self.noise_dim):
            raise ValueError(f"InjectNoise expects noise of shape (B, noise_dim) = ({h.shape[0]}, {self.noise_dim}),"
                             f" got {tuple(xi.shape)}")
        if self.mode == "position" and tuple(h.shape[1:]) != self.shape:
            raise ValueError(f"InjectNoise(mode='position') was built for feature maps {self.shape}, got "
                             f"{tuple(h.shape[1:])}")
        shift = xi if self.proj is None else self.proj(xi)  # (B, C) or (B, C*H*W)
        if self.mode == "position":
            return h + shift.view(h.shape)  # (B, C, H, W): one learned noise value per position
        return h + shift.view(*shift.shape, *([1] * (h.dim() - 2)))  # broadcast over the spatial dims

    def extra_repr(self) -> str:
        return f"noise_dim={self.noise_dim}, mode={self.mode!r}, shape={self.shape}"


def split_noise(noise: Tensor | None, n_injections: int, noise_dim: int, batch: int) -> list[Tensor | None]:
    """Split explicit noise of shape (B, n_injections, noise_dim) into one (B, noise_dim) tensor per injection.

    Returns `n_injections` Nones when `noise` is None, so each `InjectNoise` draws its own.
    """
    if noise is None:
        return [None] * n_injections
    if noise.shape != (batch, n_injections, noise_dim):
        raise ValueError(f"noise must have shape (B, n_injections, noise_dim) = ({batch}, {n_injections}, "
                         f"{noise_dim}), got {tuple(noise.shape)}")
    return list(noise.unbind(1))


class FeatureDiscriminator(nn.Module):
    """Base class of every discriminator: ``forward(*inputs) == head(features(*inputs)).squeeze(-1)``.

    Subclasses implement `features`, returning (B, feature_dim); the head is one linear layer to the logit. Models
    use `features` for feature matching / learned similarity and the zoo's VGH++ style heads.

    Args:
        feature_dim: number of columns `features` returns.
        head_bias: whether the final linear layer has a bias.
    """

    def __init__(self, feature_dim: int, head_bias: bool = True):
        super().__init__()
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, 1, bias=head_bias)

    def features(self, *inputs: Tensor, **kwargs) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, *inputs: Tensor, **kwargs) -> Tensor:
        return self.head(self.features(*inputs, **kwargs)).squeeze(-1)  # (B,)


def dcgan_init_(module: nn.Module) -> nn.Module:
    """DCGAN initialisation (Radford et al.; the WGAN code's `weights_init`), in place; returns `module`.

    Conv / transposed-conv weights ~ N(0, 0.02), BatchNorm weights ~ N(1, 0.02), their biases 0. Linear layers get
    N(0, 0.02) too: in our DCGAN networks the only Linear is the discriminator head, which stands for the WGAN code's
    final 4x4 convolution. Other modules (GroupNorm, ...) keep PyTorch defaults.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


def conv_block(
    in_ch: int, out_ch: int, kernel: int, stride: int, padding: int, norm: str, act: nn.Module | None,
    transposed: bool = False, output_padding: int = 0,
) -> list[nn.Module]:
    """[conv, norm, act] as a list (to splice into an nn.Sequential); no bias when the norm has a shift."""
    if transposed:
        conv = nn.ConvTranspose2d(in_ch, out_ch, kernel, stride, padding, output_padding, bias=uses_bias(norm))
    else:
        conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=uses_bias(norm))
    layers: list[nn.Module] = [conv]
    if norm != "none":
        layers.append(make_norm(norm, out_ch))
    if act is not None:
        layers.append(act)
    return layers


class BasicBlock(nn.Module):
    """Residual basic block of He et al. (2016): conv3x3-norm-ReLU-conv3x3-norm, plus shortcut, then ReLU.

    The shortcut is the identity when the shape is kept, else a 1x1 convolution (stride `stride`) + norm, "same as
    in original ResNet". With `upsample` the block first enlarges its input by nearest-neighbour upsampling (IJAE's
    "upsample instead of strided convolution"); the shortcut then is the upsampled input, with a 1x1 conv + norm only
    if the channel count changes.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        stride: stride of the first 3x3 convolution (and of the shortcut convolution).
        upsample: nearest-neighbour scale factor applied to the input (1 = none); exclusive with stride > 1.
        norm: normalisation kind after each convolution.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, upsample: int = 1, norm: str = "batch"):
        super().__init__()
        if stride > 1 and upsample > 1:
            raise ValueError("BasicBlock: use either stride > 1 (downsampling) or upsample > 1, not both")
        bias = uses_bias(norm)
        self.upsample = nn.Upsample(scale_factor=upsample, mode="nearest") if upsample > 1 else nn.Identity()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=bias), make_norm(norm, out_ch), nn.ReLU(),
            nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=bias), make_norm(norm, out_ch),
        )
        if stride != 1 or in_ch != out_ch:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, 0, bias=bias), make_norm(norm, out_ch)
            )
        else:
            self.shortcut = nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.upsample(x)  # (B, in_ch, H * upsample, W * upsample)
        return self.act(self.body(x) + self.shortcut(x))  # (B, out_ch, H', W')


def mlp_layers(in_dim: int, hidden: int, layers: int, act: type[nn.Module] | None = None,
               **act_kwargs) -> tuple[list[nn.Module], int]:
    """`layers` hidden Linear + activation pairs; returns the modules and the output width.

    Args:
        in_dim: input features.
        hidden: units per hidden layer.
        layers: number of hidden layers (0 gives an empty list and width `in_dim`).
        act: activation class (default ReLU), built with `act_kwargs`.
    """
    if layers < 0 or hidden <= 0:
        raise ValueError(f"mlp needs layers >= 0 and hidden > 0, got layers={layers}, hidden={hidden}")
    act = act or nn.ReLU
    mods: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers):
        mods += [nn.Linear(dim, hidden), act(**act_kwargs)]
        dim = hidden
    return mods, dim


def param_count(module: nn.Module, exclude: Sequence[type[nn.Module]] = ()) -> int:
    """Number of parameters of `module`, leaving out those of submodules of the `exclude` types."""
    skip = {id(p) for m in module.modules() if isinstance(m, tuple(exclude)) for p in m.parameters()}
    return sum(p.numel() for p in module.parameters() if id(p) not in skip)
