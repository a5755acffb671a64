"""Evaluation speed: each metric's shared work through the zoo against the reference library doing the same work on
the same images, timed alternately in the same process; seconds per 1,000 images and the ratio zoo / reference.

    python benchmarks/bench_eval.py [--metrics inception,fid,lpips,msssim,is_cifar,critic] [--n 200] [--rounds 3]
        [--device cpu|cuda] [--inception-weights PATH] [--lpips-weights PATH] [--cifar-classifier PATH]

What is compared (the target is a ratio <= 1.1 for the shared work):
- inception: `zoo.evaluation.inception.inception_features` over a data source (sampling context, sharding, caches)
  against torch-fidelity's FeatureExtractorInceptionV3 called on the same uint8 batches. Without --inception-weights
  both use one file of random weights of the right shapes (the timing does not depend on the values).
- fid: `functional.frechet_distance` on 2048-d features against torch-fidelity's `fid_statistics_to_metric` (scipy
  sqrtm) on the same features (per call, not per 1,000 images).
- lpips: `zoo.evaluation.lpips_distance` against `lpips.LPIPS(net="alex")` called directly.
- msssim: the zoo's small3 pair scores against torchmetrics' multiscale SSIM (3 betas, 7-px kernel, "simple"
  normalisation) on the same pairs; and the tf5 protocol at 64 px with the separable blur against the former
  one-pass 2-D window (the speed-up of the 1-D passes).
- is_cifar: the registered metric over a data source against the bare ResNet forward + `inception_score`.
- critic: seconds per independent-critic step (no reference library; the default budget is 2,000 steps).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from zoo.arguments import ArgumentParser, device_name, positive_int
from zoo.config import DataConfig
from zoo.data import TensorImages
from zoo.evaluation import EvalContext
from zoo.factory import discover
from zoo.registry import METRICS


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare(name: str, ours: Callable[[], object], theirs: Callable[[], object], rounds: int, device: torch.device,
            per: float, unit: str = "s / 1000 images") -> tuple[str, float, float, float]:
    """Alternate the two, one warm-up each; median seconds scaled by `per` and the median of per-round ratios."""
    ours(), theirs()
    a, b = [], []
    for _ in range(rounds):
        a.append(timed(ours, device))
        b.append(timed(theirs, device))
    ratio = statistics.median(x / y for x, y in zip(a, b))
    print(f"{name:<34} zoo {statistics.median(a) * per:9.3f}  reference {statistics.median(b) * per:9.3f} {unit}"
          f"  ratio {ratio:6.3f}", flush=True)
    return name, statistics.median(a) * per, statistics.median(b) * per, ratio


def images(n: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) * 255).round().to(torch.uint8)


def data_context(x: torch.Tensor, device: torch.device, batch_size: int, **options) -> EvalContext:
    return EvalContext(None, DataConfig(name="tensor"), source="data:tensor:test", datasets={"test": TensorImages(x)},
                       batch_size=batch_size, device=device, options=options, cache_dir=False)


def bench_inception(args, device, out: list) -> None:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from zoo.evaluation import inception
    weights = args.inception_weights
    if weights is None:  # the real file's shapes, random values: the timing does not depend on them
        weights = str(inception.random_inception_weights(Path(tempfile.mkdtemp()) / "inception-random.pth"))
    x = images(args.n, (3, 32, 32))
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["logits_unbiased", "2048"],
                                      feature_extractor_weights_path=weights).to(device).eval()

    def ours():
        ctx = data_context(x, device, args.batch_size, inception_weights=weights)
        ctx.cache[("inception", str(inception.inception_weights(weights)))] = (net, {"weights": "w",
                                                                                     "weights_sha256": "0"})
        inception.inception_features(ctx, "samples")

    @torch.no_grad()
    def theirs():
        for chunk in x.split(args.batch_size):
            net(chunk.to(device))

    out.append(compare("inception features (is/fid/kid)", ours, theirs, args.rounds, device, 1000 / args.n))

    from torch_fidelity.metric_fid import fid_statistics_to_metric
    from zoo.evaluation.functional import frechet_distance
    f1, f2 = torch.randn(2000, 2048, dtype=torch.float64), torch.randn(2000, 2048, dtype=torch.float64) + 0.1

    def stats(f):
        return {"mu": f.mean(0).numpy(), "sigma": torch.cov(f.T).numpy()}

    out.append(compare("fid from 2048-d features", lambda: frechet_distance(f1, f2),
                       lambda: fid_statistics_to_metric(stats(f1), stats(f2), False), 1, torch.device("cpu"), 1.0,
                       "s / call"))


def bench_lpips(args, device, out: list) -> None:
    import lpips

    from zoo.evaluation.perceptual import build_lpips, lpips_distance
    x, y = (images(args.n, (3, 32, 32), s).float() / 127.5 - 1 for s in (1, 2))
    net, _ = build_lpips(args.lpips_weights)  # the same weights file; the zoo builds its own copy in the warm-up
    reference = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    reference.load_state_dict(net.state_dict())
    reference = reference.to(device).eval()

    @torch.no_grad()
    def theirs():
        for a, b in zip(x.split(args.batch_size), y.split(args.batch_size)):
            reference(a.to(device), b.to(device))

    def ours():
        for a, b in zip(x.split(args.batch_size), y.split(args.batch_size)):
            lpips_distance(a.to(device), b.to(device), args.lpips_weights)

    out.append(compare("lpips (32 px pairs)", ours, theirs, args.rounds, device, 1000 / args.n))


def _ms_ssim_2d(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The former implementation: one 2-D window convolution per statistic (for the separable speed-up)."""
    from zoo.evaluation.functional import MS_SSIM_WEIGHTS, downsample2, gaussian_window
    x, y = x.double(), y.double()
    result = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
    for level, weight in enumerate(MS_SSIM_WEIGHTS):
        b, c, h, w = x.shape
        size = min(11, h, w)
        kernel = gaussian_window(size, size * 1.5 / 11).to(x.device)[None, None]
        stack = torch.cat([x, y, x * x, y * y, x * y], dim=1).reshape(b * 5 * c, 1, h, w)
        mu_x, mu_y, e_xx, e_yy, e_xy = F.conv2d(stack, kernel).reshape(b, 5, c, h - size + 1, -1).unbind(1)
        var_x, var_y, cov = e_xx - mu_x**2, e_yy - mu_y**2, e_xy - mu_x * mu_y
        cs = ((2 * cov + 58.5225) / (var_x + var_y + 58.5225))
        ssim = (2 * mu_x * mu_y + 6.5025) / (mu_x**2 + mu_y**2 + 6.5025) * cs
        last = level == len(MS_SSIM_WEIGHTS) - 1
        result = result * (ssim if last else cs).mean(dim=(1, 2, 3)).clamp(min=0) ** weight
        if not last:
            x, y = downsample2(x), downsample2(y)
    return result


def bench_msssim(args, device, out: list) -> None:
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as tm_ms_ssim

    from zoo.evaluation import msssim
    small = msssim.PROTOCOLS["small3"]
    x = images(2 * args.n, (3, 32, 32)).to(device)
    half = args.n

    def theirs():
        for a, b in zip(x[:half].split(msssim.PAIRS_PER_CHUNK), x[half:].split(msssim.PAIRS_PER_CHUNK)):
            tm_ms_ssim(a.double(), b.double(), sigma=0.9, kernel_size=7, betas=small.weights, data_range=255.0,
                       normalize="simple", reduction="none")

    out.append(compare("msssim small3 (32 px pairs)", lambda: msssim.pair_diversity(x, small), theirs, args.rounds,
                       device, 1000 / half, "s / 1000 pairs"))
    big = images(2 * max(2, args.n // 4), (3, 64, 64)).to(device)
    half64 = big.shape[0] // 2
    tf5 = msssim.PROTOCOLS["tf5"]

    def former():
        for a, b in zip(big[:half64].split(msssim.PAIRS_PER_CHUNK), big[half64:].split(msssim.PAIRS_PER_CHUNK)):
            _ms_ssim_2d(a, b)

    out.append(compare("msssim tf5 64 px vs former 2-D window", lambda: msssim.pair_diversity(big, tf5), former,
                       args.rounds, device, 1000 / half64, "s / 1000 pairs"))


def bench_is_cifar(args, device, out: list) -> None:
    from zoo.evaluation.cifar_resnet import load_cifar_resnet
    from zoo.evaluation.functional import inception_score
    path = args.cifar_classifier
    x = images(args.n, (3, 32, 32))
    net = load_cifar_resnet(path).to(device)

    def ours():
        METRICS.get("is_cifar")(data_context(x, device, args.batch_size, cifar_classifier=path, splits=10))

    @torch.no_grad()
    def theirs():
        inception_score(torch.cat([net(chunk.to(device)) for chunk in x.split(args.batch_size)]), 10)

    out.append(compare("is_cifar (resnet forward + IS)", ours, theirs, args.rounds, device, 1000 / args.n))


def bench_critic(args, device, out: list) -> None:
    from torch import nn

    class Noise(nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = nn.Parameter(torch.zeros(1))

        def sample(self, n, *, generator=None):
            return torch.rand(n, 3, 32, 32, generator=generator, device=generator.device) * 2 - 1

    steps = 20
    ctx = EvalContext(Noise(), DataConfig(name="tensor"), datasets={"test": TensorImages(images(512, (3, 32, 32)))},
                      device=device, options={"critic_steps": steps}, cache_dir=False)
    seconds = timed(lambda: METRICS.get("wcritic")(ctx), device)
    print(f"{'wcritic (dcgan critic, 32 px)':<34} {seconds / steps:.3f} s / critic step (incl. scoring), "
          f"x 2,000 default steps = {seconds / steps * 2000 / 60:.1f} min", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python benchmarks/bench_eval.py", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--metrics", default="inception,lpips,msssim,is_cifar,critic")
    p.add_argument("--n", type=positive_int, default=200, help="images per timed call (results are scaled to 1,000)")
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument("--rounds", type=positive_int, default=3)
    p.add_argument("--device", type=device_name, default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--inception-weights", help="torch-fidelity's Inception file (default: random weights)")
    shared = Path.cwd().parent / "shared" / "weights"  # the checkout's ../shared
    p.add_argument("--lpips-weights", default=str(shared / "lpips" / "alexnet_features.pth"))
    p.add_argument("--cifar-classifier", default=str(shared / "cifar10_resnet" / "resnet56-4bfd9763.th"))
    args = p.parse_args(argv)
    discover()
    device = torch.device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, {args.n} images per call, {args.rounds} rounds")
    out: list = []
    runners = {"inception": bench_inception, "lpips": bench_lpips, "msssim": bench_msssim,
               "is_cifar": bench_is_cifar, "critic": bench_critic}
    for name in args.metrics.split(","):
        runners[name](args, device, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
