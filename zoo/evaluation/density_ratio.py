"""The density-ratio trick (Rosca et al. 2018, eq. 6): a classifier's logit as a log density ratio.

A classifier D trained to tell samples of p1 (label 1) from samples of p0 (label 0) estimates the log density ratio
by its logit: log p1(x) / p0(x) = log D(x) / (1 - D(x)) (eq. 6). Hence KL(p1 || p0) = E_p1[logit D(x)] and
KL(p0 || p1) = -E_p0[logit D(x)]. Algorithm 3 (`zoo.studies.latent_analysis.marginal_kl_density_ratio`) and
the App. D study (`zoo.studies.appendix_d`) use the pieces here. Nothing is registered: these are plain functions.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from zoo.losses.adversarial import discriminator_loss
from zoo.nn.mlp import mlp_discriminator

Sampler = Callable[[int], Tensor]


def ratio_classifier(dim: int, hidden: int, layers: int) -> nn.Module:
    """An MLP classifier with LeakyReLU(0.2) hidden layers and one logit (`mlp.discriminator`), (B, dim) -> (B,)."""
    return mlp_discriminator(in_dim=dim, hidden=hidden, layers=layers)


def train_ratio_classifier(classifier: nn.Module, sample_p1: Sampler, sample_p0: Sampler, *, steps: int,
                           batch_size: int = 64, lr: float = 1e-4, betas: tuple[float, float] = (0.5, 0.9),
                           progress: bool = False, desc: str = "ratio classifier", window: int | None = None,
                           tol: float = 1e-3) -> list[float]:
    """Train `classifier` by cross-entropy, p1 labelled 1 and p0 labelled 0, on fresh samples every step.

    With `window`, train to convergence: stop (at most `steps` steps) once the mean loss of the last `window` steps
    improves on the window before it by less than `tol` nats; without it, exactly `steps` steps.

    Returns:
        The loss of every step (nats); log 4 = 1.386 is chance level.
    """

    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr, betas=betas)
    losses: list[float] = []
    for step in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        loss = discriminator_loss(classifier(sample_p1(batch_size)), classifier(sample_p0(batch_size)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if window and (step + 1) % window == 0 and converged(losses, window, tol):
            break
    return losses


def converged(losses: list[float], window: int, tol: float) -> bool:
    """The mean of the last `window` losses improves on the window before it by less than `tol`."""
    if len(losses) < 2 * window:
        return False
    last, before = losses[-window:], losses[-2 * window:-window]
    return sum(before) / window - sum(last) / window < tol


@torch.no_grad()
def mean_logit(classifier: nn.Module, samples: Tensor, batch_size: int = 4096) -> float:
    """E[logit D(x)] over `samples` (N, dim): the ratio estimate of KL(p1 || p0) when the samples come from p1."""
    return torch.cat([classifier(chunk) for chunk in samples.split(batch_size)]).double().mean().item()
