"""`elbo`: the importance-weighted log-likelihood bound (Burda et al. 2016, eq. 8) of test images, for models with an
explicit likelihood: a Gaussian posterior `posterior(x) -> (mu, logvar)` and `log_px_given_z(x, z)` (the VAE).

L_K(x) = log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x), p(z) = N(0, I). L_1 is the ELBO; L_K grows with K
towards log p(x). Reported in nats per image (higher is better), the mean and std over the test images. Rosca et
al. section 6 warn that hybrids cannot estimate this for implicit parts; it is offered only where it is defined.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from einops import rearrange, repeat
from torch import Tensor

from zoo.evaluation.core import EvaluationError, MetricResult, define_metric
from zoo.evaluation.functional import diagonal_normal_log_prob, importance_weighted_bound, standard_normal_log_prob
from zoo.evaluation.sampling import EvalContext, stream_seed

IW_SAMPLES = 1000  # K; Burda et al. evaluate with K = 5000 (pass --iw-samples 5000 for their protocol)
MAX_DECODES = 4096  # decoder inputs per chunk: bounds memory whatever B and K


@torch.no_grad()
def importance_weighted_log_likelihood(model: Any, x: Tensor, k: int, generator: torch.Generator | None = None,
                                       seeds: Sequence[int] | None = None) -> Tensor:
    """L_K(x) per example (nats), for any model with `posterior(x) -> (mu, logvar)` and `log_px_given_z(x, z)`.

    Args:
        model: the model (eval mode).
        x: (B, ...) data as the model takes it.
        k: importance samples per example.
        generator: makes the posterior draws reproducible.
        seeds: one per example: example i's K draws come from its own generator seeded with seeds[i] (on the CPU),
            so its bound does not depend on the batch it is in or on the examples before it.

    Returns:
        (B,) float64 bounds.
    """
    mu, logvar = model.posterior(x)  # (B, D) each
    b, d = mu.shape
    per_chunk = max(1, MAX_DECODES // b)
    own = None if seeds is None else torch.stack([torch.randn(k, d, generator=torch.Generator().manual_seed(int(s)))
                                                  for s in seeds])  # (B, K, D)
    log_w = []
    for start in range(0, k, per_chunk):
        kc = min(per_chunk, k - start)
        eps = own[:, start:start + kc] if own is not None else torch.randn(
            b, kc, d, generator=generator, device=mu.device if generator is None else generator.device)
        z = mu[:, None] + eps.to(mu.device) * torch.exp(0.5 * logvar)[:, None]  # (B, kc, D)
        x_rep = repeat(x, "b ... -> (b k) ...", k=kc)  # image i's kc draws adjacent
        log_px = rearrange(model.log_px_given_z(x_rep, rearrange(z, "b k d -> (b k) d")), "(b k) -> b k", b=b)
        log_pz = standard_normal_log_prob(z)
        log_qz = diagonal_normal_log_prob(z, mu[:, None], logvar[:, None])
        log_w.append(log_px.double() + log_pz.double() - log_qz.double())  # log p(x, z_k) - log q(z_k|x), eq. 8
    return importance_weighted_bound(torch.cat(log_w, dim=1))


@dataclass
class ElboOptions:
    iw_samples: int = IW_SAMPLES  # importance samples K of the bound L_K


@define_metric("elbo", "importance-weighted log-likelihood bound L_K of test images, nats (Burda et al. 2016)",
               higher_is_better=True, options=ElboOptions, spread="per-image std")
def elbo_metric(ctx: EvalContext, opts: ElboOptions) -> list[MetricResult]:
    if ctx.n_samples is not None and ctx.n_real is None:
        raise EvaluationError("--n-samples does not apply to elbo, which scores test images, not samples: pass "
                              "--n-real N for the number of test images and --iw-samples K for the importance samples")
    model = ctx.require_model("elbo", "log_px_given_z", "an explicit likelihood (posterior and log_px_given_z)")
    k = opts.iw_samples
    index = ctx.indices(ctx.split, ctx.n_real)  # dataset indices, in the order map_real visits them

    def bounds(images: Tensor, labels: Tensor | None, rows: slice) -> Tensor:
        # each image's draws seeded by (seed, its dataset index): the value is the same at any --batch-size
        seeds = [stream_seed("elbo", ctx.seed, int(i)) for i in index[rows]]
        return importance_weighted_log_likelihood(model, images.float() / 127.5 - 1, k, seeds=seeds)

    values = ctx.map_real(bounds, n=ctx.n_real, desc="elbo", with_rows=True)
    std = values.std().item() if len(values) > 1 else 0.0
    return [MetricResult("elbo", values.mean().item(), std,
                         ctx.protocol(reference_split=ctx.split, n_real=len(values), iw_samples=k, units="nats/image",
                                      std="over test images", noise="per image"))]
