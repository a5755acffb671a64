"""`msssim`: sample diversity as 1 - mean MS-SSIM over random pairs of samples (Odena et al. 2017; Rosca et al. 2018
App. I and Fig. 7, left), reported beside the same quantity on the reference split, which is its yardstick: less
diversity than the test data suggests mode collapse, more suggests failing to capture the data distribution.

Pairs: the n samples are independent, so sample i is paired with sample i + n // 2 (n // 2 disjoint random pairs);
the reference uses the same pairing of min(n, split size) test images in a seeded random order. MS-SSIM is
`zoo.evaluation.functional.ms_ssim` on the 8-bit images (5 scales, shrinking Gaussian windows; docs/metrics.md).
"""
from __future__ import annotations

import torch
from torch import Tensor

from zoo.evaluation.core import EvaluationError, MetricResult, define_metric
from zoo.evaluation.functional import MS_SSIM_WEIGHTS, ms_ssim
from zoo.evaluation.sampling import EvalContext

N_SAMPLES = 10_000  # 5,000 pairs
PAIRS_PER_CHUNK = 256  # the window convolution unfolds its input: all 5,000 pairs at once need over 20 GB


def pair_diversity(images: Tensor) -> Tensor:
    """1 - MS-SSIM of the pairs (images[i], images[i + n // 2]) of n uint8 images; (n // 2,)."""
    half = images.shape[0] // 2
    first, second = images[:half], images[half:2 * half]
    return 1 - torch.cat([ms_ssim(a.double(), b.double(), max_val=255.0)
                          for a, b in zip(first.split(PAIRS_PER_CHUNK), second.split(PAIRS_PER_CHUNK))])


def _diversity(ctx: EvalContext, which: str, n: int) -> tuple[Tensor, int]:
    keep = lambda images, labels: images  # noqa: E731 - the images themselves, gathered in order
    if which == "samples":
        images, used = ctx.map_samples(keep, n, desc="msssim: samples")
    else:
        images = ctx.map_real(keep, n=min(n, len(ctx.dataset())), desc=f"msssim: {ctx.split}")
        used = len(images)
    if used < 2:
        raise EvaluationError(f"msssim needs at least 2 images, got {used}; raise --n-samples")
    return pair_diversity(images), used


@define_metric("msssim", "sample diversity 1 - mean MS-SSIM of random sample pairs (Odena et al. 2017)",
               higher_is_better=None, reference=None)
def msssim_metric(ctx: EvalContext) -> list[MetricResult]:
    scales = {"scales": len(MS_SSIM_WEIGHTS), "window": 11, "sigma": 1.5, "window_rule": "min(11, side) per scale"}
    d, n = _diversity(ctx, "samples", ctx.n(N_SAMPLES))
    results = [MetricResult("msssim", d.mean().item(), d.std().item() if len(d) > 1 else 0.0,
                            ctx.protocol(n_samples=n, pairs=len(d), **scales))]
    if ctx.model is not None:
        ref, m = _diversity(ctx, "real", ctx.n(N_SAMPLES))
        results.append(MetricResult("msssim.reference", ref.mean().item(), ref.std().item() if len(ref) > 1 else 0.0,
                                    ctx.protocol(reference_split=ctx.split, n_real=m, pairs=len(ref), **scales)))
    return results
