"""`msssim`: sample diversity as 1 - mean MS-SSIM over random pairs of samples (Odena et al. 2017; Rosca et al. 2018
App. I and Fig. 7, left), reported beside the same quantity on the reference split, which is its yardstick: less
diversity than the test data suggests mode collapse, more suggests failing to capture the data distribution.

Pairs: the n samples are independent, so sample i is paired with sample i + n // 2 (n // 2 disjoint random pairs);
the reference uses the same pairing of min(n, split size) test images in a seeded random order.

Protocols (docs/metrics.md, "msssim"): `tf5` is the 5-scale implementation Odena et al. and Rosca et al. used
(64 px CelebA, exact); on 28-32 px images five scales leave so few pixels that most random pairs have a negative
term, clamped to 0 (diversity exactly 1), so small images use `small3`: 3 scales, a 7-px window and every term mapped
to (t + 1) / 2 (torchmetrics' "simple" normalisation), which clamps nothing. Every result records the fraction of
pairs clamped and the fraction with a negative raw term.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from zoo.evaluation.core import EvaluationError, MetricResult, define_metric
from zoo.evaluation.functional import MS_SSIM_WEIGHTS, combine_ms_ssim_terms, ms_ssim_terms
from zoo.evaluation.sampling import EvalContext

N_SAMPLES = 10_000  # 5,000 pairs
PAIRS_PER_CHUNK = 512  # bounds the memory of the blurred statistics (10 planes of each pair, float64)
SMALL_MAX_SIDE = 63  # images up to this side use `small3` under --msssim-protocol auto


@dataclass(frozen=True)
class MSSSIMProtocol:
    """One MS-SSIM protocol: scales = len(weights), Gaussian window and sigma at the finest scale, the window rule
    (`shrink`: min(window, side) per scale, sigma scaled alike) and the handling of negative terms."""

    name: str
    weights: tuple[float, ...]
    window: int
    sigma: float
    shrink: bool
    normalize: str  # "relu" (clamp negative terms to 0) or "simple" ((t + 1) / 2)

    def record(self) -> dict:
        return {"msssim_protocol": self.name, "scales": len(self.weights), "weights": list(self.weights),
                "window": self.window, "sigma": self.sigma,
                "window_rule": f"min({self.window}, side) per scale" if self.shrink else "fixed",
                "normalize": self.normalize}


PROTOCOLS = {
    # tensorflow/models msssim.py, as Odena et al. 2017 and Rosca et al. 2018 (CelebA 64 px) used it
    "tf5": MSSSIMProtocol("tf5", MS_SSIM_WEIGHTS, 11, 1.5, True, "relu"),
    # small images: the three finest Wang et al. weights renormalised to sum 1, a 7-px window (pytorch-msssim's rule
    # side > (window - 1) 2^(scales - 1) = 24 px holds at 28 and 32 px) and torchmetrics' "simple" term mapping
    "small3": MSSSIMProtocol("small3", tuple(w / sum(MS_SSIM_WEIGHTS[:3]) for w in MS_SSIM_WEIGHTS[:3]), 7, 1.5, True,
                             "simple"),
}


def protocol_for(side: int, choice: str | None = None) -> MSSSIMProtocol:
    """The protocol `choice` ("auto"/None: `small3` up to 63 px, `tf5` from 64 px)."""
    if choice in (None, "", "auto"):
        return PROTOCOLS["small3" if side <= SMALL_MAX_SIDE else "tf5"]
    if choice not in PROTOCOLS:
        raise EvaluationError(f"msssim: unknown protocol {choice!r}; choose one of auto, {', '.join(PROTOCOLS)}")
    return PROTOCOLS[choice]


def pair_diversity(images: Tensor, protocol: MSSSIMProtocol | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """1 - MS-SSIM of the pairs (images[i], images[i + n // 2]) of n uint8 images, (n // 2,), with two (n // 2,)
    flags: the pair's score was clamped to 0, and the pair has a negative raw term."""
    protocol = protocol or protocol_for(images.shape[-1])
    half = images.shape[0] // 2
    first, second = images[:half], images[half:2 * half]
    scores, clamped, negative = [], [], []
    for a, b in zip(first.split(PAIRS_PER_CHUNK), second.split(PAIRS_PER_CHUNK)):
        terms = ms_ssim_terms(a.double(), b.double(), 255.0, protocol.window, protocol.sigma,
                              scales=len(protocol.weights), shrink=protocol.shrink)
        scores.append(1 - combine_ms_ssim_terms(terms, protocol.weights, protocol.normalize))
        negative.append((terms < 0).any(dim=1))
        clamped.append(negative[-1] if protocol.normalize == "relu" else torch.zeros_like(negative[-1]))
    return torch.cat(scores), torch.cat(clamped), torch.cat(negative)


def _diversity(ctx: EvalContext, which: str, n: int, protocol: MSSSIMProtocol) -> tuple[Tensor, Tensor, Tensor, int]:
    keep = lambda images, labels: images  # noqa: E731 - the images themselves, gathered in order
    if which == "samples":
        images, used = ctx.map_samples(keep, n, desc="msssim: samples")
        if used < 2:
            raise EvaluationError(f"msssim needs at least 2 images, got {used}; raise --n-samples")
        return (*pair_diversity(images, protocol), used)
    m = min(n, len(ctx.dataset()))

    def compute() -> Tensor:  # the reference pairs' scores, computed once per (split, protocol) and cached
        images = ctx.map_real(keep, n=m, desc=f"msssim: {ctx.split}")
        if len(images) < 2:
            raise EvaluationError(f"msssim needs at least 2 reference images, got {len(images)}; raise --n-samples")
        return torch.stack([t.double() for t in pair_diversity(images, protocol)])  # (3, pairs)

    d, clamped, negative = ctx.reference("msssim", protocol.record(), compute, n=m)
    return d, clamped.bool(), negative.bool(), m


def _result(name: str, d: Tensor, clamped: Tensor, negative: Tensor, protocol: dict) -> MetricResult:
    protocol = {**protocol, "clamp_rate": clamped.double().mean().item(),
                "negative_term_rate": negative.double().mean().item()}
    return MetricResult(name, d.mean().item(), d.std().item() if len(d) > 1 else 0.0, protocol)


@dataclass
class MSSSIMOptions:
    msssim_protocol: str = "auto"  # auto (small3 up to 63 px, tf5 from 64 px), small3 or tf5


@define_metric("msssim", "sample diversity 1 - mean MS-SSIM of random sample pairs (Odena et al. 2017)",
               higher_is_better=None, options=MSSSIMOptions, spread="per-pair std", reference=None)
def msssim_metric(ctx: EvalContext, opts: MSSSIMOptions) -> list[MetricResult]:
    protocol = protocol_for(ctx.image_shape()[-1], opts.msssim_protocol)
    d, clamped, negative, n = _diversity(ctx, "samples", ctx.n(N_SAMPLES), protocol)
    results = [_result("msssim", d, clamped, negative, ctx.protocol(n_samples=n, pairs=len(d), **protocol.record()))]
    if ctx.model is not None:
        ref, clamped, negative, m = _diversity(ctx, "real", ctx.n(N_SAMPLES), protocol)
        results.append(_result("msssim.reference", ref, clamped, negative,
                               ctx.protocol(reference_split=ctx.split, n_real=m, pairs=len(ref), **protocol.record())))
    return results
