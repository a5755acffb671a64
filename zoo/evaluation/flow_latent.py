"""KL[q(z) || p(z)] for VAEs with a RealNVP posterior (Rosca et al. 2018, section 3.1, Fig. 1).

q(z|x_n) is the image of N(mu_n, diag exp(logvar_n)) under a flow f that does not read x (`zoo.nn.flows`), so with
z = f(z_0) every component shares one Jacobian: log q(z|x_n) = log N(z_0; mu_n, sigma_n^2) - log|det df/dz_0|, and
the aggregate posterior is log q(z) = log q_0(z_0) - log|det df/dz_0| with q_0 the Gaussian mixture of
`zoo.evaluation.latent`. Hence one flow pass per code and the Gaussian machinery for the mixture; the mutual
information I[x; z] is invariant under f (the log-det cancels), while the marginal KL is not.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from zoo.evaluation.latent import (
    MarginalKL, log_density_block_diag, log_marginal_posterior, log_normal_std, sample_posteriors,
)


@torch.no_grad()
def marginal_kl_mc_flow(mu: Tensor, logvar: Tensor, flow: nn.Module, *, num_z: int = 10_000,
                        generator: torch.Generator | None = None, code_chunk: int = 1024,
                        data_chunk: int = 8192) -> MarginalKL:
    """Rosca Algorithm 2 for a flow posterior: draws x_i uniformly, z_i = f(z_0), z_0 ~ N(mu_i, sigma_i^2).

    Args:
        mu, logvar: (N, D) base-Gaussian parameters of the N encoded points (`VAE.base_posterior`).
        flow: the model's `flow` player, z_0 (B, D) -> (z (B, D), log|det df/dz_0| (B,)).
    Returns:
        MarginalKL; `avg_posterior_kl` (E_x KL[q(z|x) || p(z)], no closed form for a flow) is estimated on the same
        draws, so marginal_kl + mutual_information = avg_posterior_kl holds exactly.
    """
    if num_z < 2:
        raise ValueError(f"marginal_kl_mc_flow: num_z must be >= 2 for a standard error, got {num_z}")
    idx, z0 = sample_posteriors(mu, logvar, num_z, generator)
    z, logdet = zip(*(flow(c) for c in z0.split(code_chunk)))
    z, logdet = torch.cat(z).double(), torch.cat(logdet).double()
    log_q = log_marginal_posterior(z0, mu, logvar, code_chunk=code_chunk, data_chunk=data_chunk) - logdet
    log_q_given_x = log_density_block_diag(z0, mu[idx], logvar[idx]) - logdet
    log_p = log_normal_std(z)
    ratio = log_q - log_p
    n = mu.shape[0]
    avg_kl = (log_q_given_x - log_p).mean().item()
    return MarginalKL(marginal_kl=ratio.mean().item(), marginal_kl_stderr=(ratio.std() / math.sqrt(num_z)).item(),
                      mutual_information=(log_q_given_x - log_q).mean().item(), avg_posterior_kl=avg_kl,
                      log_n=math.log(n), marginal_kl_lower_bound=avg_kl - math.log(n), num_points=n, num_z=num_z)
