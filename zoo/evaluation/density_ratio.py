"""The density-ratio trick (Rosca et al. 2018, eq. 6) and Algorithm 3's marginal-KL estimate built on it.

A classifier D trained to tell samples of p1 (label 1) from samples of p0 (label 0) estimates the log density ratio
by its logit: log p1(x) / p0(x) = log D(x) / (1 - D(x)) (eq. 6). Hence KL(p1 || p0) = E_p1[logit D(x)] and
KL(p0 || p1) = -E_p0[logit D(x)]. Algorithm 3 (`marginal_kl_density_ratio`, below) and the App. D
study (`zoo.studies.appendix_d`) use the pieces here. Nothing is registered: these are plain functions.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from zoo.evaluation.latent import randn_on, sample_posteriors
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


def marginal_kl_density_ratio(mu: Tensor, logvar: Tensor | None, *, steps: int = 5000, batch_size: int = 64,
                              hidden: int = 1000, layers: int = 3, lr: float = 5e-4,
                              betas: tuple[float, float] = (0.9, 0.9), num_z: int = 10_000,
                              generator: torch.Generator | None = None, progress: bool = False,
                              window: int | None = None, tol: float = 1e-3) -> dict[str, Any]:
    """KL[q(z) || p(z)] by the density-ratio trick (Rosca et al. Algorithm 3).

    A LeakyReLU(0.2) MLP C is trained `steps` times to label codes z ~ q(z|x), x uniform over the data, 1 and prior
    codes 0; then KL = mean logit C(z_i) over `num_z` fresh codes from q (eq. 6). App. E.2 defaults: Adam with
    beta1 = beta2 = 0.9 (as printed), lr 5e-4 (Tables 1-2), 3 hidden layers; hidden 1000 is the App. K code
    discriminator (Tables 1-2 use 5000) and `steps` is far below the paper's 5 * 10^5 (printed "5 * 10 * 5").
    Works for point-mass posteriors (logvar None). Call `torch.manual_seed` first for a reproducible classifier.
    With `window`, the classifier trains to convergence (`train_ratio_classifier`), `steps` at most.

    Returns:
        {"marginal_kl", "final_loss" (mean of the last 100 classifier losses; log 4 = chance), "steps" (trained),
         "converged", "hidden", "layers", "lr", "num_z"}.
    """
    dim = mu.shape[1]
    classifier = ratio_classifier(dim, hidden, layers).to(mu.device)
    sample_q = lambda n: sample_posteriors(mu, logvar, n, generator)[1].float()  # noqa: E731
    sample_p = lambda n: randn_on((n, dim), generator, mu.device)  # noqa: E731
    losses = train_ratio_classifier(classifier, sample_q, sample_p, steps=steps, batch_size=batch_size, lr=lr,
                                    betas=betas, progress=progress, desc="Algorithm 3 classifier", window=window,
                                    tol=tol)
    classifier.eval()
    kl = mean_logit(classifier, sample_q(num_z))
    return {"marginal_kl": kl, "final_loss": sum(losses[-100:]) / len(losses[-100:]), "steps": len(losses),
            "converged": bool(window) and converged(losses, window, tol),
            "hidden": hidden, "layers": layers, "lr": lr, "num_z": num_z}
