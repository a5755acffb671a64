"""Latent-space analyses of models with an encoder (Rosca et al. 2018, section 3, App. A, App. E).

The aggregate posterior of N encoded data points is the mixture q(z) = (1/N) sum_n q(z|x_n). Functions here work on
the encoded posteriors, `mu` (N, D) and `logvar` (N, D) of diagonal Gaussians q(z|x_n) = N(mu_n, exp(logvar_n)):

- `log_marginal_posterior`: log q(z) at any codes, a log-sum-exp over all N components streamed in (codes x data)
  blocks, so memory is bounded by the block size whatever N is (60k MNIST points: a few MB per block).
- `marginal_kl_mc`: KL[q(z) || p(z)] by Monte Carlo (Algorithm 2), beside the terms of eq. 5,
  E_x KL[q(z|x) || p(z)] = KL[q(z) || p(z)] + I[x; z], with I <= log N.
- `encode_posteriors`: (mu, logvar) of a model over a dataset. Gaussian encoders define `posterior(x) -> (mu,
  logvar)`; a deterministic encoder (`posterior` returning logvar None, or only `encode`) has a point-mass q(z|x),
  for which q(z) is a sum of Dirac deltas and KL[q(z) || p(z)] is infinite. Such encoders are analysed with an
  explicit kernel: q(z|x) := N(E(x), s^2 I) with a user-chosen s (`smoothing_std`), i.e. q(z) becomes a Gaussian
  kernel density estimate whose KL depends on s, so s is reported with every result.
The `marginal_kl` metric (`zoo.evaluation.marginal_kl`) wraps these; the studies built on them (Algorithms 1
and 3) are in `zoo.evaluation.density_ratio` and `zoo.studies.latent_analysis`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from zoo.losses.divergences import kl_normal
from zoo.data.stream import to_model_range

LOG_2PI = math.log(2 * math.pi)
Progress = bool | Callable[[int, int], None]


def check_posteriors(mu: Tensor, logvar: Tensor | None, what: str) -> Tensor:
    if logvar is None:
        raise ValueError(f"{what} needs the log-density of q(z|x), but logvar is None: the encoder is deterministic, "
                         f"q(z|x) is a point mass and KL[q(z) || p(z)] is infinite. Pass smoothing_std=s to "
                         f"encode_posteriors (q(z|x) := N(E(x), s^2 I), reported with the result), or use "
                         f"marginal_kl_density_ratio, which needs samples only")
    if mu.dim() != 2 or logvar.shape != mu.shape:
        raise ValueError(f"{what}: mu and logvar must both be (N, D), got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    return logvar


def log_normal_std(z: Tensor) -> Tensor:
    """log N(z; 0, I) per row of z (M, D), float64."""
    z = z.double()
    return -0.5 * (z.pow(2).sum(1) + z.shape[1] * LOG_2PI)


def log_density_block(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z_i; mu_n, diag exp(logvar_n)) for every pair: z (M, D), mu / logvar (N, D) -> (M, N), float64.

    Expanded as -0.5 (z^2 @ w^T - 2 z @ (mu w)^T + sum(mu^2 w + logvar) + D log 2 pi), w = exp(-logvar), so the
    block costs two matrix products and M x N memory; float64 keeps the cancellation error tiny even for the
    near-zero variances of marginal-matching encoders (AAE, Rosca section 4.2).
    """
    z, mu, logvar = z.double(), mu.double(), logvar.double()
    w = torch.exp(-logvar)  # (N, D) precisions
    const = (mu.pow(2) * w + logvar).sum(1) + z.shape[1] * LOG_2PI  # (N,)
    return -0.5 * (z.pow(2) @ w.T - 2 * z @ (mu * w).T + const)  # (M, N)


def log_density_block_diag(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z_i; mu_i, diag exp(logvar_i)) row by row: (M, D) each -> (M,), float64."""
    z, mu, logvar = z.double(), mu.double(), logvar.double()
    return -0.5 * (((z - mu).pow(2) * torch.exp(-logvar) + logvar).sum(1) + z.shape[1] * LOG_2PI)


def log_marginal_posterior(z: Tensor, mu: Tensor, logvar: Tensor, *, code_chunk: int = 1024,
                           data_chunk: int = 8192, progress: Progress = False) -> Tensor:
    """log q(z_i) = logsumexp_n log q(z_i | x_n) - log N for codes z (M, D); returns (M,) float64.

    The log-sum-exp is accumulated over data blocks (running `logaddexp`), so at most code_chunk x data_chunk
    log-densities exist at a time. `progress`: True for a progress bar, or a callable(done, total) over blocks.
    """
    logvar = check_posteriors(mu, logvar, "log_marginal_posterior")
    if z.dim() != 2 or z.shape[1] != mu.shape[1]:
        raise ValueError(f"log_marginal_posterior: codes must be (M, {mu.shape[1]}), got {tuple(z.shape)}")
    n = mu.shape[0]
    code_blocks, data_blocks = z.split(code_chunk), list(zip(mu.split(data_chunk), logvar.split(data_chunk)))
    total, done = len(code_blocks) * len(data_blocks), 0
    bar = None
    if progress is True:
        bar = tqdm(total=total, desc=f"log q(z) over {n} posteriors", leave=False)
    out = []
    for zc in code_blocks:
        acc = torch.full((zc.shape[0],), -math.inf, dtype=torch.float64, device=z.device)
        for mc, lc in data_blocks:
            acc = torch.logaddexp(acc, torch.logsumexp(log_density_block(zc, mc, lc), dim=1))
            done += 1
            if bar is not None:
                bar.update()
            elif callable(progress):
                progress(done, total)
        out.append(acc - math.log(n))
    if bar is not None:
        bar.close()
    return torch.cat(out)


def randn_on(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Standard normal draws from `generator` (on its own device) moved to `device`."""
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where).to(device)


def sample_posteriors(mu: Tensor, logvar: Tensor | None, n: int, generator: torch.Generator | None = None
                      ) -> tuple[Tensor, Tensor]:
    """n draws of (x_i uniform over the N encoded points, z_i ~ q(z|x_i)); returns (indices (n,), codes (n, D))."""
    where = generator.device if generator is not None else mu.device
    idx = torch.randint(mu.shape[0], (n,), generator=generator, device=where).to(mu.device)
    z = mu[idx]
    if logvar is not None:
        z = z + randn_on(z.shape, generator, mu.device).to(mu.dtype) * torch.exp(0.5 * logvar[idx])
    return idx, z


@dataclass
class MarginalKL:
    """KL[q(z) || p(z)] by Monte Carlo and the eq. 5 decomposition it sits in (all in nats).

    Attributes:
        marginal_kl: the Algorithm 2 estimate, mean of log q(z_i) - log p(z_i).
        marginal_kl_stderr: its Monte-Carlo standard error.
        mutual_information: I[x; z] estimated on the same draws, mean of log q(z_i|x_i) - log q(z_i).
        avg_posterior_kl: E_x KL[q(z|x) || p(z)] in closed form over all N points: the ELBO's KL term,
            = marginal_kl + mutual_information (eq. 5) up to Monte-Carlo error.
        log_n: log N, the upper bound of the mutual information.
        marginal_kl_lower_bound: avg_posterior_kl - log N; marginal_kl cannot be lower (eq. 5, I <= log N).
        num_points, num_z: N and the number of Monte-Carlo draws.
    """

    marginal_kl: float
    marginal_kl_stderr: float
    mutual_information: float
    avg_posterior_kl: float
    log_n: float
    marginal_kl_lower_bound: float
    num_points: int
    num_z: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def marginal_kl_mc(mu: Tensor, logvar: Tensor | None, *, num_z: int = 10_000,
                   generator: torch.Generator | None = None, code_chunk: int = 1024, data_chunk: int = 8192,
                   progress: Progress = False) -> MarginalKL:
    """KL[q(z) || p(z)] by Monte Carlo (Rosca et al. Algorithm 2) with p(z) = N(0, I).

    Draws x_i uniformly from the N encoded points and z_i ~ q(z|x_i), then averages log q(z_i) - log p(z_i) with
    q(z) = (1/N) sum_n q(z|x_n) over all N points. Decision: Algorithm 2, line 9 writes log q(z_i) as the plain
    log-sum-exp; the mixture's 1/N (section 3: "(1/N) sum_n q(z|x_n)") is included here, else the KL is off by log N.
    """
    logvar = check_posteriors(mu, logvar, "marginal_kl_mc")
    if num_z < 2:
        raise ValueError(f"marginal_kl_mc: num_z must be >= 2 for a standard error, got {num_z}")
    idx, z = sample_posteriors(mu, logvar, num_z, generator)
    log_q = log_marginal_posterior(z, mu, logvar, code_chunk=code_chunk, data_chunk=data_chunk, progress=progress)
    log_p = log_normal_std(z)
    log_q_given_x = log_density_block_diag(z, mu[idx], logvar[idx])
    ratio = log_q - log_p
    n = mu.shape[0]
    avg_kl = kl_normal(mu.double(), logvar.double()).mean().item()
    return MarginalKL(marginal_kl=ratio.mean().item(), marginal_kl_stderr=(ratio.std() / math.sqrt(num_z)).item(),
                      mutual_information=(log_q_given_x - log_q).mean().item(), avg_posterior_kl=avg_kl,
                      log_n=math.log(n), marginal_kl_lower_bound=avg_kl - math.log(n), num_points=n, num_z=num_z)


@torch.no_grad()
def encode_posteriors(model: Any, images: Any, *, batch_size: int = 500, smoothing_std: float | None = None,
                      device: str | torch.device | None = None, progress: bool = False
                      ) -> tuple[Tensor, Tensor | None]:
    """(mu, logvar) of q(z|x) for every example of `images` (a dataset or an (N, C, H, W) tensor; uint8 or [-1, 1]).

    Uses `model.posterior(x) -> (mu, logvar)` where the model has it (logvar None: deterministic), else
    `model.encode(x)` as a point mass. `smoothing_std` s turns point masses into N(E(x), s^2 I); it is an error
    for a Gaussian encoder (its variance is part of the model). The model is put in eval mode.
    """


    if not getattr(model, "has_encoder", False):
        raise ValueError(f"{type(model).__name__} has no encoder (has_encoder is False); latent analyses need "
                         f"q(z|x): use a model such as vae, vgh, vgh_plus")
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    loader = images.split(batch_size) if isinstance(images, Tensor) else DataLoader(images, batch_size=batch_size)
    if progress:
        loader = tqdm(loader, desc="encoding", leave=False)
    mus, logvars = [], []
    for x in loader:
        x = to_model_range(x.to(device))
        if hasattr(model, "posterior"):
            mu, logvar = model.posterior(x)
        else:
            mu, logvar = model.encode(x), None
        mus.append(mu.float())
        if logvar is not None:
            logvars.append(logvar.float())
    mu = torch.cat(mus)
    logvar = torch.cat(logvars) if logvars else None
    if smoothing_std is not None:
        if logvar is not None:
            raise ValueError(f"smoothing_std={smoothing_std} is only for deterministic encoders; "
                             f"{type(model).__name__} has a Gaussian q(z|x) whose variance is part of the model")
        if smoothing_std <= 0:
            raise ValueError(f"smoothing_std must be > 0, got {smoothing_std}")
        logvar = torch.full_like(mu, 2 * math.log(smoothing_std))
    return mu, logvar


@dataclass
class ReconstructionTerm:
    """E_x E_q(z|x)[log p(x|z)] over a split (nats per image, one posterior draw per image) and its standard error."""

    mean: float
    stderr: float
    n: int


@torch.no_grad()
def reconstruction_term(model: Any, images: Any, *, batch_size: int = 500,
                        generator: torch.Generator | None = None) -> ReconstructionTerm:
    """The ELBO's reconstruction term of every example of `images` (a dataset or an (N, C, H, W) tensor): one draw
    z ~ q(z|x) each, log p(x|z) from `model.log_px_given_z`; with the average posterior KL it gives the ELBO (eq. 1),
    the number a VAE's marginal KL has to be read against (Rosca et al. App. E print the KL terms only)."""


    model.eval()
    device = next(model.parameters()).device
    loader = images.split(batch_size) if isinstance(images, Tensor) else DataLoader(images, batch_size=batch_size)
    values = []
    for x in loader:
        x = to_model_range(x.to(device))
        mu, logvar = model.posterior(x)
        eps = randn_on(tuple(mu.shape), generator, mu.device)
        values.append(model.log_px_given_z(x, mu + eps * torch.exp(0.5 * logvar)).double().cpu())
    values = torch.cat(values)
    return ReconstructionTerm(values.mean().item(), (values.std() / math.sqrt(len(values))).item(), len(values))


# ---- RealNVP posteriors: KL[q(z) || p(z)] for VAEs with a RealNVP posterior (Rosca et al. 2018, section 3.1, Fig. 1).
# 
# q(z|x_n) is the image of N(mu_n, diag exp(logvar_n)) under a flow f that does not read x (`zoo.nn.flows`), so with
# z = f(z_0) every component shares one Jacobian: log q(z|x_n) = log N(z_0; mu_n, sigma_n^2) - log|det df/dz_0|, and
# the aggregate posterior is log q(z) = log q_0(z_0) - log|det df/dz_0| with q_0 the Gaussian mixture of
# `zoo.evaluation.latent`. Hence one flow pass per code and the Gaussian machinery for the mixture; the mutual
# information I[x; z] is invariant under f (the log-det cancels), while the marginal KL is not.
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
