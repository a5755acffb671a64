"""Reconstruction error of models with an encoder: the JS^G VAE paper's Table 1 / Table 2 metric.

Deasy et al. (2020) report the "final model reconstruction error" evaluated "sampling the mean with no variance"
(Fig. 3 caption), as mean squared error (NeurIPS version, section 3.2). The zoo's reading, pinned in
tests/test_jsg_vae.py: per image, the SUM over pixels of (x - x_hat)^2 with intensities in [0, 1], where x_hat is the
decoder mean at the posterior mean (`model.reconstruct`), averaged over the images of the split. On 32 px padded MNIST
the padding pixels are part of the sum (they reconstruct to about 0).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from zoo.data.stream import to_model_range, whole_split
from zoo.evaluation.core import MetricResult, define_metric
from zoo.evaluation.sampling import EvalContext
from zoo.models.base import GenerativeModel


def iterate_images(data: Dataset | Tensor, batch_size: int, limit: int | None = None):
    """Batches of images in [-1, 1] from a uint8 / float tensor or a dataset of (C, H, W) images, in order."""
    images = data if isinstance(data, Tensor) else whole_split(data)
    n = len(images) if images is not None else len(data)
    n = n if limit is None else min(n, limit)
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        batch = images[start:stop] if images is not None else torch.stack([data[i] for i in range(start, stop)])
        yield to_model_range(batch)


@torch.no_grad()
def reconstruction_errors(model: GenerativeModel, data: Dataset | Tensor, *, batch_size: int = 256,
                          limit: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """Per-image summed squared error between x and `model.reconstruct(x)`, in [0, 1] pixel units, shape (N,).

    Args:
        model: a model with an encoder (`has_encoder`); evaluated in eval mode, its mode restored afterwards.
        data: images (uint8 (N, C, H, W), or floats in [-1, 1]) or a dataset of (C, H, W) uint8 images.
        batch_size: images per forward pass.
        limit: only the first `limit` images.
        device: where to run (default: the model's device).
    """
    if not model.has_encoder:
        raise ValueError(f"reconstruction_errors needs a model with an encoder; {type(model).__name__} has none")
    device = torch.device(device) if device is not None else model.device
    was_training = model.training
    model.eval()
    try:
        errors = []
        for x in iterate_images(data, batch_size, limit):
            x = x.to(device)
            x_hat = model.reconstruct(x)  # (B, C, H, W) in [-1, 1]
            errors.append(((x_hat - x) / 2).pow(2).flatten(1).sum(1).cpu())  # [-1, 1] -> [0, 1] units
        return torch.cat(errors)
    finally:
        model.train(was_training)


@define_metric("reconstruction", "summed squared error per image between x and the decoder mean at the posterior mean, "
               "pixels in [0, 1] (Deasy et al. 2020, Tables 1-2)", higher_is_better=False,
               spread="standard error over test images")
def reconstruction_metric(ctx: EvalContext) -> list[MetricResult]:
    """The Table 1-2 number of any checkpoint with an encoder, over the whole reference split (or `n_real` images)."""
    model = ctx.require_model("reconstruction", "has_encoder", "an encoder (reconstruct)")

    def errors(images: Tensor, labels: Tensor | None) -> Tensor:
        return reconstruction_errors(model, images, batch_size=len(images))

    values = ctx.map_real(errors, n=ctx.n_real, desc="reconstruction")
    sem = (values.std() / len(values) ** 0.5).item() if len(values) > 1 else None
    return [MetricResult("reconstruction", values.mean().item(), sem,
                         ctx.protocol(reference_split=ctx.split, n_real=len(values), point="posterior mean",
                                      units="summed squared error per image, pixels in [0, 1]",
                                      std="standard error over test images"))]
