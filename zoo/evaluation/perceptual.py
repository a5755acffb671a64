"""`lpips`: reconstruction quality as LPIPS (Zhang et al. 2018), AlexNet v0.1, through the `lpips` package (IJAE
section 5 protocol: mean LPIPS(x, reconstruct(x)) over the test split, lower is better).

The v0.1 linear layers ship inside the lpips package. The AlexNet backbone normally comes from torchvision's
download; a local file of torchvision AlexNet `features.{0,3,6,8,10}.*` weights works instead (`--lpips-weights`,
ZOO_LPIPS_WEIGHTS, or `weights=` of `lpips_distance`), e.g. the shared `weights/lpips/alexnet_features.pth`.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.evaluation.core import (EvaluationError, MetricResult, WeightsNotFoundError, define_metric,
                                 load_state_dict_file, quantize, sha256_file, to_rgb, weights_record)
from zoo.evaluation.sampling import EvalContext

LPIPS_ENV = "ZOO_LPIPS_WEIGHTS"
MIN_SIDE = 32  # smaller images (MNIST's 28 px) are upsampled bilinearly to 32x32: AlexNet needs >= 31 px
# torchvision AlexNet `features` index -> lpips slice holding it (lpips/pretrained_networks.py: slices 0-1, 2-4, 5-7,
# 8-9, 10-11 of the feature stack).
_SLICE_OF = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
_NETWORKS: dict[str, tuple[nn.Module, dict[str, str]]] = {}  # weights file -> (network, record), built once


def _linear_layers_file() -> Path:
    import lpips
    return Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"


def build_lpips(weights: str | Path | None = None) -> tuple[nn.Module, dict[str, str]]:
    """LPIPS-alex v0.1 in eval mode and its protocol record. `weights`: a torchvision-keyed AlexNet features file;
    None reads ZOO_LPIPS_WEIGHTS, else lets torchvision download the ImageNet AlexNet."""

    import lpips

    weights = weights or os.environ.get(LPIPS_ENV) or None
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=` argument
        warnings.simplefilter("ignore")
        if weights is None:
            try:
                net = lpips.LPIPS(net="alex", version="0.1", verbose=False)
            except Exception as err:  # noqa: BLE001 - offline downloads fail in many ways
                raise WeightsNotFoundError(
                    f"LPIPS needs the AlexNet backbone weights and torchvision could not download them "
                    f"({type(err).__name__}: {err}). Pass a local file of torchvision AlexNet features.* weights with "
                    f"--lpips-weights PATH or {LPIPS_ENV}=PATH (e.g. shared/weights/lpips/alexnet_features.pth)"
                ) from None
            record = {"backbone_weights": "torchvision alexnet (ImageNet)"}
        else:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise WeightsNotFoundError(f"LPIPS backbone weights {str(path)!r} is not a file; pass --lpips-weights "
                                           f"PATH or {LPIPS_ENV}=PATH with torchvision AlexNet features.* weights")
            net = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
            net.net.load_state_dict(_to_slices(load_state_dict_file(path, "LPIPS backbone"), path), strict=True)
            record = {f"backbone_{k}": v for k, v in weights_record(path).items()}
    record = {"backbone": "lpips alex v0.1", **record, "linear_sha256": sha256_file(_linear_layers_file())}
    _channels_last_pools(net.net)
    return net.eval().requires_grad_(False), record


def _channels_last_pools(backbone: nn.Module) -> None:
    """Swap each max-pool of `backbone` for `_ChannelsLastMaxPool2d` with its settings (no weights change)."""
    for parent in list(backbone.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.MaxPool2d:
                setattr(parent, name, _ChannelsLastMaxPool2d(child.kernel_size, child.stride, child.padding,
                                                             child.dilation, ceil_mode=child.ceil_mode))


class _ChannelsLastMaxPool2d(nn.MaxPool2d):
    """AlexNet's max-pooling through PyTorch's channels-last CPU kernel: its NCHW one is about 10x slower on the small
    maps LPIPS sees (a fifth of a 32 px pass). A window's maximum is the same number whatever the layout, so the
    values are bit-identical to the package's. The output is copied back to NCHW strides, so the next convolution
    takes the package's path (a 1x1 map counts as contiguous in either layout: `.contiguous()` would keep the
    channels-last strides, and the convolution would round differently)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu":
            return super().forward(x)
        pooled = super().forward(x.contiguous(memory_format=torch.channels_last))  # (B, C, H', W'), channels last
        return pooled.clone(memory_format=torch.contiguous_format)


def _to_slices(state: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "features" or int(parts[1]) not in _SLICE_OF:
            raise EvaluationError(f"{path}: unexpected key {key!r}; expected torchvision AlexNet keys "
                                  f"features.{{0,3,6,8,10}}.{{weight,bias}}")
        out[f"slice{_SLICE_OF[int(parts[1])]}.{parts[1]}.{parts[2]}"] = value
    return out


def _network(weights: str | Path | None, device: torch.device | None = None) -> tuple[nn.Module, dict[str, str]]:
    """The LPIPS network of `weights` (built once per file) and its record, on `device` when one is given. It moves
    only when it is elsewhere: `Module.to` walks every tensor even when nothing moves, ~0.2 ms a call on CPU."""
    weights = weights or os.environ.get(LPIPS_ENV) or None  # resolved before caching, so the key names the file
    key = str(weights)
    if key not in _NETWORKS:
        _NETWORKS[key] = build_lpips(weights)
    net, record = _NETWORKS[key]
    if device is not None and next(net.parameters()).device != device:
        net.to(device)
    return net, record


@torch.no_grad()
def lpips_distance(x: Tensor, y: Tensor, weights: str | Path | None = None) -> Tensor:
    """LPIPS-alex v0.1 distance of each pair (x[i], y[i]).

    Args:
        x, y: (B, C, H, W) images in [-1, 1] (C = 1 is repeated to RGB; sides below 32 px are upsampled to 32).
        weights: AlexNet backbone file (torchvision `features.*` keys); None: ZOO_LPIPS_WEIGHTS, else torchvision.

    Returns:
        (B,) distances; 0 for identical images.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"lpips_distance: expected two (B, C, H, W) batches of one shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    net, _ = _network(weights, x.device)
    # One AlexNet pass over both batches where the package makes two: the same layers and element-wise operations,
    # half the kernel launches and, on CPU, larger convolutions (docs/metrics.md, Evaluation speed).
    features = _features(net, torch.cat([x, y]))  # (2B, C_k, H_k, W_k) per layer
    b = x.shape[0]
    return _combine(net, [f[:b] for f in features], [f[b:] for f in features])


def _lpips_input(x: Tensor) -> Tensor:
    """The images LPIPS compares: RGB, at least 32 px (before its v0.1 scaling layer)."""
    x = to_rgb(x).float()
    if min(x.shape[-2:]) < MIN_SIDE:
        x = F.interpolate(x, size=(MIN_SIDE, MIN_SIDE), mode="bilinear", align_corners=False)
    return x


def _features(net: nn.Module, x: Tensor) -> list[Tensor]:
    """The lpips package's v0.1 features of `x`: scaling layer, AlexNet slices, unit norm over channels."""
    import lpips
    return [lpips.normalize_tensor(f) for f in net.net(net.scaling_layer(_lpips_input(x)))]


def _combine(net: nn.Module, f0: list[Tensor], f1: list[Tensor]) -> Tensor:
    """The lpips package's v0.1 combination: squared differences, linear layer per level, spatial mean, sum over
    levels (in its order, so the sums round alike); (B,)."""
    return sum(lin((a - b) ** 2).mean(dim=(2, 3)) for lin, a, b in zip(net.lins, f0, f1)).flatten()


@torch.no_grad()
def lpips_features(x: Tensor, weights: str | Path | None = None) -> list[Tensor]:
    """The unit-normalised AlexNet activations LPIPS compares (one (B, C_k, H_k, W_k) tensor per layer). One side
    of `lpips_distance`: the real images' features are a reference statistic, computed once and cached."""
    net, _ = _network(weights, x.device)
    return _features(net, x)


@torch.no_grad()
def lpips_from_features(f0: list[Tensor], f1: list[Tensor], weights: str | Path | None = None) -> Tensor:
    """(B,) LPIPS from two feature lists of `lpips_features`."""
    net, _ = _network(weights, f0[0].device)
    return _combine(net, f0, f1)


def _flatten(features: list[Tensor]) -> Tensor:
    return torch.cat([f.flatten(1) for f in features], dim=1)


def _unflatten(flat: Tensor, like: list[Tensor]) -> list[Tensor]:
    sizes = [f[0].numel() for f in like]
    return [part.view(-1, *f.shape[1:]) for part, f in zip(flat.split(sizes, dim=1), like)]


@dataclass
class LpipsOptions:
    lpips_weights: str | None = None  # AlexNet features.* weights; default ZOO_LPIPS_WEIGHTS or download


@define_metric("lpips", "mean LPIPS-alex v0.1 of test images and their reconstructions (IJAE section 5)",
               higher_is_better=False, options=LpipsOptions, spread="per-image std")
def lpips_metric(ctx: EvalContext, opts: LpipsOptions) -> list[MetricResult]:
    """Mean and std over the test images of LPIPS(x, reconstruct(x)); both 8-bit images mapped to [-1, 1]."""
    model = ctx.require_model("lpips", "has_encoder", "an encoder (reconstruct)")
    weights = opts.lpips_weights
    _, record = _network(weights)

    def real_features(images: Tensor, labels: Tensor | None) -> Tensor:
        return _flatten(lpips_features(images.float() / 127.5 - 1, weights))  # map_real gathers on the host

    # The real side of every pair: computed once per (split, n, weights), reused by every checkpoint and later call.
    reference = ctx.reference("lpips-features", {"metric": "lpips", **record, "min_side": MIN_SIDE},
                              lambda: ctx.map_real(real_features, n=ctx.n_real, desc="lpips reference"), n=ctx.n_real)

    def distances(images: Tensor, labels: Tensor | None, rows: slice) -> Tensor:
        x = images.float() / 127.5 - 1
        x_hat = quantize(model.reconstruct(x)).float() / 127.5 - 1  # 8-bit, as a saved reconstruction
        f_hat = lpips_features(x_hat, weights)
        return lpips_from_features(_unflatten(reference[rows].to(x.device), f_hat), f_hat, weights)

    d = ctx.map_real(distances, n=ctx.n_real, desc="lpips", with_rows=True)
    std = d.double().std().item() if len(d) > 1 else 0.0
    return [MetricResult("lpips", d.double().mean().item(), std,
                         ctx.protocol(reference_split=ctx.split, n_real=len(d), **record))]
