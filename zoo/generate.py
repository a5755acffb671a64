"""Using a trained model: latent interpolations (linear and spherical) and sample export for external metric tools.

    from zoo import load_checkpoint
    from zoo.generate import export_samples, interpolate
    model = load_checkpoint("runs/vae").model
    grid = interpolate(model, model.encode(x_a), model.encode(x_b), steps=8, method="slerp")  # (B * 8, C, H, W)
    export_samples(model, 10000, "samples/")        # 000000.png ... (torch-fidelity, clean-fid: a folder)
    export_samples(model, 10000, "samples.npz")     # arr_0: (N, H, W, 3) uint8 (the ADM / clean-fid array layout)

Spherical interpolation follows White (2016, "Sampling generative networks"): under a Gaussian prior, linear paths
pass through codes of atypically small norm (the midpoint of two independent draws has norm ~1/sqrt(2) of theirs);
slerp(z0, z1; t) = sin((1 - t) w) / sin(w) z0 + sin(t w) / sin(w) z1, with w the angle between z0 and z1, keeps
the norm of equal-norm endpoints.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

METHODS = ("lerp", "slerp")


def lerp(z0: Tensor, z1: Tensor, t: Tensor) -> Tensor:
    """(1 - t) z0 + t z1 for codes (B, D) and fractions t (T,): (B, T, D)."""
    t = t.to(z0)[None, :, None]
    return (1 - t) * z0[:, None] + t * z1[:, None]


def slerp(z0: Tensor, z1: Tensor, t: Tensor, eps: float = 1e-7) -> Tensor:
    """Spherical interpolation (White 2016) for codes (B, D) and fractions t (T,): (B, T, D). Pairs at an angle
    below `eps` radians (parallel codes, where sin(w) -> 0) fall back to `lerp`, its limit."""
    cos = torch.nn.functional.cosine_similarity(z0, z1, dim=1).clamp(-1, 1)  # (B,)
    omega = torch.acos(cos)[:, None, None]  # (B, 1, 1)
    t = t.to(z0)[None, :, None]  # (1, T, 1)
    sin = torch.sin(omega)
    safe = sin.abs() > eps
    w0 = torch.where(safe, torch.sin((1 - t) * omega) / sin.where(safe, torch.ones_like(sin)), 1 - t)
    w1 = torch.where(safe, torch.sin(t * omega) / sin.where(safe, torch.ones_like(sin)), t)
    return w0 * z0[:, None] + w1 * z1[:, None]


def interpolation_codes(z0: Tensor, z1: Tensor, steps: int, method: Literal["lerp", "slerp"] = "slerp") -> Tensor:
    """(B, steps, D) codes from z0 to z1 (both (B, D)), endpoints included exactly."""
    if method not in METHODS:
        raise ValueError(f"interpolation method {method!r} is unknown; use one of {', '.join(METHODS)}")
    if steps < 2:
        raise ValueError(f"interpolation needs steps >= 2 (both endpoints), got {steps}")
    if z0.shape != z1.shape or z0.dim() != 2:
        raise ValueError(f"interpolation endpoints must both be (B, D) codes, got {tuple(z0.shape)} and "
                         f"{tuple(z1.shape)}")
    codes = (lerp if method == "lerp" else slerp)(z0, z1, torch.linspace(0, 1, steps))
    codes[:, 0], codes[:, -1] = z0, z1  # exactly the endpoints, free of rounding in the weights
    return codes


@torch.no_grad()
def interpolate(model: Any, z0: Tensor, z1: Tensor, steps: int = 8, method: Literal["lerp", "slerp"] = "slerp",
                batch_size: int = 256) -> Tensor:
    """Decoded interpolation grid (B * steps, C, H, W) in [-1, 1], row b going from z0[b] to z1[b]. `model` needs
    `decode(z)` (models with an encoder: codes from `model.encode(x)`) or a generator called on codes."""
    decode = getattr(model, "decode", None) or model.players["generator"]
    codes = interpolation_codes(z0, z1, steps, method).flatten(0, 1)  # (B * steps, D)
    was_training = model.training
    model.eval()
    try:
        return torch.cat([decode(chunk) for chunk in codes.split(batch_size)])
    finally:
        model.train(was_training)


def to_uint8(images: Tensor) -> np.ndarray:
    """Images in [-1, 1] (B, C, H, W) -> uint8 (B, H, W, C), rounded as torchvision's save_image rounds."""
    return rearrange(images.detach().float().cpu().add(1).mul(127.5).add(0.5).clamp(0, 255).to(torch.uint8),
                     "b c h w -> b h w c").numpy()


class ExportExistsError(FileExistsError):
    """The export target holds an earlier export; mixing the two would give a metric tool a blend of checkpoints."""


@torch.no_grad()
def export_samples(model: Any, n: int, out: str | Path, *, batch_size: int = 256, seed: int = 0,
                   overwrite: bool = False) -> Path:
    """Write `n` samples of `model` for external tools: a `.npz` path gets one array `arr_0` (n, H, W, 3) uint8 (grey
    images repeated to RGB, the layout of the ADM evaluator and clean-fid's array inputs); any other path is a folder
    of `000000.png`, ... (torch-fidelity's and clean-fid's folder inputs). Seeded: the same seed, the same images.

    Both are written under a temporary name beside `out` and renamed into place, so `out` is either the whole new
    export or absent, never part of one. An existing non-empty `out` is refused (ExportExistsError) unless
    `overwrite`, which replaces it whole: files of an earlier, larger export never mix with the new ones.
    """
    if n < 1:
        raise ValueError(f"export_samples: n must be >= 1, got {n}")
    out = Path(out)
    if not overwrite and (out.is_file() or (out.is_dir() and any(out.iterdir()))):
        raise ExportExistsError(f"{str(out)!r} holds an earlier export; pass --overwrite (overwrite=True) to replace "
                                f"it, or choose another --out")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        arrays = [to_uint8(model.sample(min(batch_size, n - i), generator=generator)) for i in range(0, n, batch_size)]
    finally:
        model.train(was_training)
    images = np.concatenate(arrays)  # (n, H, W, C)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp.npz", dir=out.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, arr_0=np.repeat(images, 3, axis=3) if images.shape[3] == 1 else images)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return out
    from PIL import Image

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        width = max(6, int(math.log10(n)) + 1)
        for i, image in enumerate(images):
            Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(tmp / f"{i:0{width}d}.png")
        old = out.with_name(f".{out.name}.old-{os.getpid()}") if out.exists() else None
        if old is not None:
            os.rename(out, old)  # aside first: a folder cannot be renamed over a non-empty one
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    return out
