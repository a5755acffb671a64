"""Latent traversals: decode a code while one latent dimension sweeps equidistant values and the others stay fixed.

Deasy et al. (2020, section 3.2, Fig. 4, App. G): "We sample each latent dimension at 10 equi-spaced points, while
keeping the other 9 dimensions fixed". The paper gives neither the range nor the fixed code; the zoo sweeps the prior's
central 95 % interval, [-1.96, 1.96] (span = Phi^-1(0.975)), and fixes the other dimensions at the posterior mean of
a reference image (or at the prior mean 0). Row d of the grid is dimension d.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

PRIOR_95 = 1.959963984540054  # Phi^-1(0.975)


def traversal_codes(z0: Tensor, steps: int = 10, span: float = PRIOR_95) -> Tensor:
    """(D * steps, D) codes: row block d is z0 with dimension d replaced by linspace(-span, span, steps)."""
    if z0.dim() != 1 or steps < 2 or span <= 0:
        raise ValueError(f"traversal_codes: expected one code (D,), steps >= 2 and span > 0, got shape "
                         f"{tuple(z0.shape)}, steps {steps}, span {span}")
    d = z0.shape[0]
    values = torch.linspace(-span, span, steps, dtype=z0.dtype, device=z0.device)  # (steps,)
    codes = z0.repeat(d, steps, 1)  # (D, steps, D)
    dims = torch.arange(d, device=z0.device)
    codes[dims, :, dims] = values  # dimension d of block d sweeps the values
    return codes.reshape(d * steps, d)


@torch.no_grad()
def latent_traversal(model: Any, z0: Tensor, steps: int = 10, span: float = PRIOR_95,
                     batch_size: int = 256) -> Tensor:
    """Decoded traversal grid (D * steps, C, H, W) in [-1, 1], row-major: row d sweeps dimension d.

    Args:
        model: a model with `decode(z)` (the VAE family).
        z0: the fixed code (D,), e.g. `model.encode(x)[0]`, or zeros for the prior mean.
        steps: values per dimension (10 in the paper).
        span: sweep [-span, span].
        batch_size: codes decoded per call.
    """
    codes = traversal_codes(z0, steps, span)
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model.decode(chunk) for chunk in codes.split(batch_size)])
    finally:
        model.train(was_training)
