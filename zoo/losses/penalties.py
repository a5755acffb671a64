"""Gradient penalties, always computed in fp32: bf16 gradients of gradients are too coarse for a norm near 1."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def interpolate(real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x_hat = eps * x + (1 - eps) * x_tilde with eps ~ U[0, 1] per example (Gulrajani et al. 2017, Alg. 1 l. 6-8)."""
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, generator=generator)
    return eps * real + (1 - eps) * fake


def _eager(critic: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """The uncompiled call of a critic compiled in place (`train.compile`): torch.compile's autograd does not
    support the double backward a penalty needs, and `Module.compile` leaves `forward` eager."""
    if isinstance(critic, torch.nn.Module) and getattr(critic, "_compiled_call_impl", None) is not None:
        return critic.forward
    return critic


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    """E[(||grad_x_hat D(x_hat)||_2 - 1)^2] on random interpolates (Gulrajani et al. 2017, eq. 3), in fp32.

    `fake` is detached: the penalty trains the critic only.
    """
    with torch.autocast(device_type=real.device.type, enabled=False):
        x_hat = interpolate(real.float(), fake.detach().float(), generator).requires_grad_(True)
        scores = _eager(critic)(x_hat).float()
        (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
        return (grad.flatten(1).norm(2, dim=1) - 1.0).pow(2).mean()
