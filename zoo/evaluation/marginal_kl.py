"""`marginal_kl`: KL[q(z) || p(z)] by Monte Carlo (Rosca et al. Algorithm 2) for models with an encoder, with the
eq. 5 terms beside it: the average posterior KL, the mutual information estimate and its log N bound.

q(z) = (1/N) sum_n q(z|x_n) is the aggregate posterior over the N training images (Rosca section 3 and App. E use the
training set: N = 60,000 for ColorMNIST). Deterministic encoders have no density; pass `--smoothing-std` (metric
option `smoothing_std`) to treat q(z|x) as N(E(x), s^2 I), as `zoo latent_analysis` does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from zoo.evaluation.core import MetricNotApplicable, MetricResult, define_metric
from zoo.evaluation.latent import encode_posteriors, marginal_kl_mc
from zoo.evaluation.sampling import EvalContext


@dataclass
class MarginalKLOptions:
    latent_split: str = "train"  # the N images whose posteriors make q(z)
    smoothing_std: float | None = None  # s of q(z|x) := N(E(x), s^2 I) for a deterministic encoder


@define_metric("marginal_kl", "KL[q(z)||p(z)] by Monte Carlo over the training split (Rosca Alg. 2), nats",
               higher_is_better=False, options=MarginalKLOptions, spread="standard error", avg_posterior_kl=None,
               mutual_information=None,
               lower_bound=None)
def marginal_kl_metric(ctx: EvalContext, opts: MarginalKLOptions) -> list[MetricResult]:
    model = ctx.require_model("marginal_kl", "has_encoder", "an encoder q(z|x)")
    split = opts.latent_split
    index = ctx.indices(split, ctx.n_real)
    images = torch.cat([ctx.real_batch(split, chunk)[0] for chunk in index.split(ctx.batch_size)])
    smoothing = opts.smoothing_std
    mu, logvar = encode_posteriors(model, images, batch_size=ctx.batch_size, smoothing_std=smoothing)
    if logvar is None:
        raise MetricNotApplicable(f"marginal_kl: {ctx.model_name} has a deterministic encoder (q(z|x) is a point "
                                  f"mass); pass the option smoothing_std (e.g. 0.1) to smooth it, see docs/metrics.md")
    num_z = ctx.n(10_000)
    result = marginal_kl_mc(mu, logvar, num_z=num_z, generator=torch.Generator(device=mu.device).manual_seed(ctx.seed),
                            progress=ctx.progress)
    protocol = ctx.protocol(reference_split=split, num_points=result.num_points, num_z=num_z, units="nats",
                            smoothing_std=smoothing, algorithm="Rosca et al. 2018, Algorithm 2; eq. 5 terms")
    return [MetricResult("marginal_kl", result.marginal_kl, result.marginal_kl_stderr, protocol),
            MetricResult("marginal_kl.avg_posterior_kl", result.avg_posterior_kl, None, protocol),
            MetricResult("marginal_kl.mutual_information", result.mutual_information, None, protocol),
            MetricResult("marginal_kl.lower_bound", result.marginal_kl_lower_bound, None, protocol)]
