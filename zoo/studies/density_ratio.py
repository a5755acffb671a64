"""The density-ratio trick and the synthetic study of Rosca et al. 2018, App. D.

A classifier D trained to tell samples of p1 (label 1) from samples of p0 (label 0) estimates the log density ratio
by its logit: log p1(x) / p0(x) = log D(x) / (1 - D(x)) (eq. 6). Hence KL(p1 || p0) = E_p1[logit D(x)] and
KL(p0 || p1) = -E_p0[logit D(x)]. Algorithm 3 (`zoo.studies.latent.marginal_kl_density_ratio`) and the App. D
study (`zoo appendix_d`) use the pieces here. Nothing is registered: these are plain functions.

App. D (eq. 13): Gaussians x = W^T z + b with z ~ N(0, I_k), W (k, d), so x ~ N(b, W^T W), k = 10 d. In the
*estimation* setting a classifier separates a fixed target P from a fixed Q0; in the *minimisation* setting the
classifier and Q = (W, b) are trained jointly, Q by the reverse-KL generator loss -log D / (1 - D) = -logit at Q's
samples (D: P real), and the true KL(Q || P) is tracked in closed form.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from zoo.losses.adversarial import discriminator_loss, logit_ratio_loss
from zoo.losses.divergences import kl_mvn
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
    from tqdm.auto import tqdm

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


class AffineGaussian(nn.Module):
    """x = W^T z + b, z ~ N(0, I_k): a Gaussian N(b, W^T W) on R^d with learnable W (k, d) and b (d,) (eq. 13).

    `random(d, k, generator)` draws W with i.i.d. N(0, 1/k) entries (so W^T W is near the identity for any k) and
    b ~ N(0, I_d); the paper does not give its initialisation scale.
    """

    def __init__(self, weight: Tensor, bias: Tensor):
        super().__init__()
        if weight.dim() != 2 or bias.shape != weight.shape[1:] or weight.shape[0] < weight.shape[1]:
            raise ValueError(f"AffineGaussian: need W (k, d) with k >= d (full-rank W^T W) and b (d,), got W "
                             f"{tuple(weight.shape)} and b {tuple(bias.shape)}")
        self.weight, self.bias = nn.Parameter(weight.float()), nn.Parameter(bias.float())

    @classmethod
    def random(cls, dim: int, latent_dim: int, generator: torch.Generator) -> "AffineGaussian":
        weight = torch.randn(latent_dim, dim, generator=generator) / math.sqrt(latent_dim)
        return cls(weight, torch.randn(dim, generator=generator))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n, self.weight.shape[0], generator=generator, device=self.weight.device)  # (n, k)
        return z @ self.weight + self.bias  # (n, d); row-vector form of W^T z + b

    def covariance(self) -> Tensor:
        w = self.weight.detach().double()
        return w.T @ w  # (d, d)

    def kl_to(self, other: "AffineGaussian") -> float:
        """KL(self || other) in closed form (nats)."""
        return kl_mvn(self.bias.detach(), self.covariance(), other.bias.detach(), other.covariance()).item()


def _seeded(seed: int, tag: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 * seed + tag)


def appendix_d_run(dim: int, *, seed: int = 0, gaussian_seed: int = 0, iterations: int = 2000, disc_steps: int = 1,
                   hidden: int = 256, layers: int = 4, disc_lr: float = 1e-4, gen_lr: float = 1e-3,
                   batch_size: int = 64, eval_every: int = 100, eval_samples: int = 10000,
                   progress: bool = False) -> dict:
    """One classifier initialisation of the App. D study in `dim` dimensions (latent k = 10 dim).

    The target P and the initial Q0 depend on `gaussian_seed` only; the classifier initialisation and the sampling
    noise on `seed`. Estimation: `iterations` classifier updates with P and Q0 fixed. Minimisation: `iterations`
    updates of Q (Adam(0.5, 0.9), `gen_lr`), each after `disc_steps` classifier updates (Adam(0.5, 0.9), `disc_lr`).

    Returns:
        {"dim", "seed", "true_kl_init": KL(Q0 || P), "estimation": {"step", "estimated_kl"} with Q0 fixed,
         "minimisation": {"step", "true_kl", "estimated_kl"}}; estimates are -E_Q[logit D] over `eval_samples` fresh
        samples of Q, the classifier's KL(Q || P).
    """
    from tqdm.auto import tqdm

    if min(iterations, disc_steps, eval_every, batch_size) < 1:
        raise ValueError(f"appendix_d_run: iterations, disc_steps, eval_every and batch_size must be >= 1, got "
                         f"{iterations}, {disc_steps}, {eval_every}, {batch_size}")
    k = 10 * dim
    target = AffineGaussian.random(dim, k, _seeded(gaussian_seed, 0)).requires_grad_(False)
    start = AffineGaussian.random(dim, k, _seeded(gaussian_seed, 1))
    noise = _seeded(seed, 2)

    def estimate(classifier: nn.Module, q: AffineGaussian) -> float:
        return -mean_logit(classifier, q.sample(eval_samples, noise).detach())

    def classifier_step(classifier: nn.Module, optimizer: torch.optim.Optimizer, q: AffineGaussian) -> None:
        with torch.no_grad():
            real, fake = target.sample(batch_size, noise), q.sample(batch_size, noise)
        loss = discriminator_loss(classifier(real), classifier(fake))  # P real (label 1), Q fake (label 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def fresh_classifier() -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(seed)  # the same initialisation in both settings
        classifier = ratio_classifier(dim, hidden, layers)
        return classifier, torch.optim.Adam(classifier.parameters(), lr=disc_lr, betas=(0.5, 0.9))

    bar = tqdm(total=2 * iterations, desc=f"App. D d={dim} seed={seed}", disable=not progress, leave=False)
    # --- estimation: both Gaussians fixed, the classifier learns their ratio
    classifier, optimizer = fresh_classifier()
    fixed = AffineGaussian(start.weight.detach().clone(), start.bias.detach().clone()).requires_grad_(False)
    est_steps, est_values = [0], [estimate(classifier, fixed)]
    for it in range(1, iterations + 1):
        classifier_step(classifier, optimizer, fixed)
        if it % eval_every == 0 or it == iterations:
            est_steps.append(it)
            est_values.append(estimate(classifier, fixed))
        bar.update()
    # --- minimisation: classifier and Q trained jointly (a GAN with the reverse-KL generator loss)
    classifier, optimizer = fresh_classifier()
    q = AffineGaussian(start.weight.detach().clone(), start.bias.detach().clone())
    opt_q = torch.optim.Adam(q.parameters(), lr=gen_lr, betas=(0.5, 0.9))
    steps, true_kl, est_kl = [0], [q.kl_to(target)], [estimate(classifier, q)]
    for it in range(1, iterations + 1):
        for _ in range(disc_steps):
            classifier_step(classifier, optimizer, q)
        classifier.requires_grad_(False)
        loss = logit_ratio_loss(classifier(q.sample(batch_size, noise)))  # -log D / (1 - D) at Q's samples
        opt_q.zero_grad(set_to_none=True)
        loss.backward()
        opt_q.step()
        classifier.requires_grad_(True)
        if it % eval_every == 0 or it == iterations:
            steps.append(it)
            true_kl.append(q.kl_to(target))
            est_kl.append(estimate(classifier, q))
        bar.update()
    bar.close()
    return {"dim": dim, "seed": seed, "true_kl_init": fixed.kl_to(target),
            "estimation": {"step": est_steps, "estimated_kl": est_values},
            "minimisation": {"step": steps, "true_kl": true_kl, "estimated_kl": est_kl}}
