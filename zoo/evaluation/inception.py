"""`is`, `fid` and `kid`: torch-fidelity's port of the TF Inception-v3 (2015-12-05) as the feature network.

One pass of the network gives both feature sets: the 1008 unbiased logits (IS, as torch-fidelity and the original TF
code) and the 2048-d pool features (FID, KID). They are computed once per source and shared between the three
metrics. FID is `functional.frechet_distance` (torch-fidelity's computation, in torch; tested against it); KID is
torch-fidelity's own. Weights: `--inception-weights PATH`, else ZOO_INCEPTION_WEIGHTS, else torch-fidelity's file in
the torch hub cache, else torch-fidelity's download; offline without the file, the error names the file and how to
supply it.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import Tensor, nn

from zoo.evaluation.core import (MetricResult, define_metric, load_state_dict_file, resolve_weights, to_rgb,
                                 weights_record)
from zoo.evaluation.functional import frechet_distance, inception_score
from zoo.evaluation.sampling import EvalContext

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_ENV = "ZOO_INCEPTION_WEIGHTS"
BACKBONE = "inception-v3-compat (torch-fidelity TF-Inception port)"
N_SAMPLES = 50_000  # Salimans et al. 2016; Rosca App. I; IJAE section 5
N_SPLITS = 10


def _download() -> str | None:
    """torch-fidelity's usual source: the torch hub cache, else its release URL (stored in the hub cache)."""
    from torch.hub import get_dir, load_state_dict_from_url
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    cached = Path(get_dir()) / "checkpoints" / INCEPTION_FILE
    if not cached.is_file():
        load_state_dict_from_url(URL_INCEPTION_V3, progress=True, map_location="cpu")
    return str(cached) if cached.is_file() else None


def inception_weights(option: str | None) -> Path:
    """The local Inception weights file (see the module docstring for the search order)."""
    return resolve_weights(option, INCEPTION_ENV, f"the TF-Inception weights {INCEPTION_FILE} (torch-fidelity, "
                           f"~92 MB, released at github.com/toshas/torch-fidelity v0.2.0)", "--inception-weights",
                           _download)


def build_extractor(path: Path) -> nn.Module:
    """torch-fidelity's FeatureExtractorInceptionV3 with the weights at `path`, returning (logits_unbiased, 2048)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    load_state_dict_file(path, "Inception weights")  # refuse anything that is not plain tensors before torch-fidelity
    return FeatureExtractorInceptionV3("inception-v3-compat", ["logits_unbiased", "2048"],
                                       feature_extractor_weights_path=str(path))


@dataclass
class InceptionOptions:
    """Options of is, fid and kid."""

    inception_weights: str | None = None  # torch-fidelity's Inception file; default ZOO_INCEPTION_WEIGHTS or download
    splits: int = N_SPLITS  # IS splits (is only)


def _extractor(ctx: EvalContext, weights: str | None) -> tuple[nn.Module, dict[str, str]]:
    path = inception_weights(weights)
    key = ("inception", str(path))
    if key not in ctx.cache:
        ctx.cache[key] = (build_extractor(path).to(ctx.device).eval(), weights_record(path))
    return ctx.cache[key]


def inception_features(ctx: EvalContext, which: str, weights: str | None = None
                       ) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """(logits (N, 1008), pool features (N, 2048), protocol) of the samples (`which="samples"`) or the reference
    split (`"real"`), computed once per context; `weights` as `InceptionOptions.inception_weights`."""
    net, record = _extractor(ctx, weights)
    key = ("inception-features", which, record["weights_sha256"], ctx.n(N_SAMPLES), ctx.n_real)
    if key not in ctx.cache:
        def features(images: Tensor, labels: Tensor | None) -> Tensor:
            logits, pool = net(to_rgb(images))
            return torch.cat([logits, pool], dim=1)

        if which == "samples":
            out, n = ctx.map_samples(features, ctx.n(N_SAMPLES), desc="inception: samples")
            info = {"n_samples": n}
        else:  # the reference split's features: once per (split, weights), cached across checkpoints and calls
            out = ctx.reference("inception", {"backbone": BACKBONE, **record},
                                lambda: ctx.map_real(features, n=ctx.n_real, desc=f"inception: {ctx.split}"),
                                n=ctx.n_real)
            info = {"reference_split": ctx.split, "n_real": len(out)}
        ctx.cache[key] = (out[:, :1008], out[:, 1008:], {**info, "backbone": BACKBONE, **record})
    return ctx.cache[key]


@define_metric("is", "Inception Score of samples (TF-Inception, 1008 unbiased logits)", higher_is_better=True,
               options=InceptionOptions, spread="split std")
def inception_score_metric(ctx: EvalContext, opts: InceptionOptions) -> list[MetricResult]:
    splits = opts.splits
    logits, _, info = inception_features(ctx, "samples", opts.inception_weights)
    mean, std, _ = inception_score(logits, splits)
    return [MetricResult("is", mean, std, ctx.protocol(**info, splits=splits, feature="logits_unbiased"))]


def kernel_inception_distance(features_1: Tensor, features_2: Tensor, subsets: int = 100, subset_size: int = 1000,
                              seed: int | None = None) -> tuple[float, float]:
    """KID (Binkowski et al. 2018; cubic polynomial kernel, unbiased MMD^2) over random subsets, via torch-fidelity;
    the subset size is capped at the smaller feature set. The subsets are drawn with torch-fidelity's default seed
    (2020) unless `seed` is given, so equal features give torch-fidelity's own number. Returns (mean, std)."""
    from torch_fidelity.defaults import DEFAULTS
    from torch_fidelity.metric_kid import kid_features_to_metric

    seed = DEFAULTS["rng_seed"] if seed is None else seed
    size = min(subset_size, len(features_1), len(features_2))
    out = kid_features_to_metric(features_1.double().cpu(), features_2.double().cpu(), kid_subsets=subsets,
                                 kid_subset_size=size, rng_seed=seed, verbose=False)
    return float(out["kernel_inception_distance_mean"]), float(out["kernel_inception_distance_std"])


def _paired_protocol(ctx: EvalContext, weights: str | None) -> tuple[Tensor, Tensor, dict[str, Any]]:
    _, fake, info = inception_features(ctx, "samples", weights)
    _, real, real_info = inception_features(ctx, "real", weights)
    return fake, real, ctx.protocol(**{**info, **real_info}, feature="pool 2048")


@define_metric("fid", "Frechet Inception Distance of samples to the reference split", higher_is_better=False,
               options=InceptionOptions)
def fid_metric(ctx: EvalContext, opts: InceptionOptions) -> list[MetricResult]:
    fake, real, protocol = _paired_protocol(ctx, opts.inception_weights)
    return [MetricResult("fid", frechet_distance(fake, real), None, protocol)]


@define_metric("kid", "Kernel Inception Distance of samples to the reference split", higher_is_better=False,
               options=InceptionOptions, spread="subset std")
def kid_metric(ctx: EvalContext, opts: InceptionOptions) -> list[MetricResult]:
    fake, real, protocol = _paired_protocol(ctx, opts.inception_weights)
    subset = min(1000, len(fake), len(real))
    mean, std = kernel_inception_distance(fake, real, subsets=100, subset_size=subset)  # torch-fidelity's seed
    return [MetricResult("kid", mean, std, {**protocol, "kid_subsets": 100, "kid_subset_size": subset,
                                            "kid_subset_seed": "torch-fidelity default"})]


def random_inception_weights(path: str | Path) -> Path:
    """A weights file of torch-fidelity's FeatureExtractorInceptionV3 with its exact shapes and random He-initialised
    values (features neither vanish nor explode): offline pipeline tests and timings, never scores."""

    import torch_fidelity.feature_extractor_inceptionv3 as fe
    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: None), \
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["logits_unbiased", "2048"])
    g = torch.Generator().manual_seed(0)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.data = torch.randn(module.weight.shape, generator=g) * math.sqrt(2 / module.weight[0].numel())
    net.fc.weight.data = torch.randn(net.fc.weight.shape, generator=g) * 4 / math.sqrt(2048)
    torch.save(net.state_dict(), path)
    return Path(path)
