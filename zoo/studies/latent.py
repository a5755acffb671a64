"""Latent-space studies of Rosca et al. 2018 (section 3, App. E) on encoded posteriors `mu`, `logvar` (N, D):

- `marginal_kl_density_ratio`: KL[q(z) || p(z)] from a classifier between q(z) and p(z) codes (Algorithm 3); it
  needs only samples and works with point-mass posteriors directly.
- `low_posterior_codes`: prior codes with the lowest q(z) (Algorithm 1), to decode into "low posterior samples".

The Monte-Carlo marginal KL (Algorithm 2) and the encoding are metric code: `zoo.evaluation.latent`.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from zoo.evaluation.latent import Progress, check_posteriors, log_marginal_posterior, randn_on, sample_posteriors
from zoo.studies.density_ratio import converged, mean_logit, ratio_classifier, train_ratio_classifier


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


def low_posterior_codes(mu: Tensor, logvar: Tensor | None, n: int, *, num_z: int = 10_000,
                        generator: torch.Generator | None = None, code_chunk: int = 1024, data_chunk: int = 8192,
                        progress: Progress = False) -> tuple[Tensor, Tensor]:
    """The n of `num_z` prior codes z ~ p(z) with the lowest log q(z) (Rosca et al. Algorithm 1).

    Returns:
        (codes (n, D) float32, their log q(z) (n,) float64), lowest first.
    """
    logvar = check_posteriors(mu, logvar, "low_posterior_codes")
    if not 1 <= n <= num_z:
        raise ValueError(f"low_posterior_codes: need 1 <= n <= num_z, got n={n}, num_z={num_z}")
    z = randn_on((num_z, mu.shape[1]), generator, mu.device)
    log_q = log_marginal_posterior(z, mu, logvar, code_chunk=code_chunk, data_chunk=data_chunk, progress=progress)
    order = torch.argsort(log_q)[:n]
    return z[order].float(), log_q[order]
