#!/usr/bin/env python
"""Rosca et al. 2018, App. D: estimating and minimising KL between affine Gaussians with a classifier.

    zoo appendix_d [--dims 1 10 100 1000] [--seeds 3] [--iterations 2000] [--disc-steps 1]
                                     [--out runs/appendix_d] [--paper]

For each dimension d (latent k = 10 d, eq. 13) and classifier seed: (1) estimation — a classifier separates the
fixed target P from the fixed initial Q0 and its estimate -E_Q0[logit D] is compared with the closed-form
KL(Q0 || P); (2) minimisation — Q = (W, b) is trained with the reverse-KL generator loss -log D / (1 - D) against an
online classifier, tracking the true KL(Q || P) in closed form. Writes results.json (every curve and the protocol)
and appendix_d.png (one panel per d, like Fig. 18: mean true KL over seeds with its min-max band, the online
estimate, and the initial true KL and its classifier estimate as reference lines); prints a summary table.

App. D (eq. 13): Gaussians x = W^T z + b with z ~ N(0, I_k), W (k, d), so x ~ N(b, W^T W), k = 10 d. In the
*estimation* setting a classifier separates a fixed target P from a fixed Q0; in the *minimisation* setting the
classifier and Q = (W, b) are trained jointly, Q by the reverse-KL generator loss -log D / (1 - D) = -logit at Q's
samples (D: P real), and the true KL(Q || P) is tracked in closed form.

Paper protocol (--paper): 10^6 iterations, 10 classifier initialisations, a 4-layer MLP of ~10^8 parameters at
d = 1000 (we default to 4 x 256: the paper's width is not given), Adam(0.5, 0.9), classifier lr 1e-4, Gaussian lr 1e-3.
The defaults reduce iterations and seeds so the study runs on a CPU in minutes for d <= 100.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from zoo.arguments import ArgumentParser, positive_float, positive_int, seed_int
from zoo.evaluation.density_ratio import mean_logit, ratio_classifier
from zoo.figures import Panel, Series, save_line_plots
from zoo.losses.adversarial import discriminator_loss, logit_ratio_loss
from zoo.losses.divergences import kl_mvn



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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="zoo appendix_d", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dims", type=positive_int, nargs="+", default=[1, 10, 100, 1000])
    p.add_argument("--seeds", type=positive_int, default=3, help="classifier initialisations averaged (paper: 10)")
    p.add_argument("--iterations", type=positive_int, default=2000, help="classifier / Q updates (paper: 10^6)")
    p.add_argument("--disc-steps", type=positive_int, default=1, help="classifier updates per Q update (Fig. 20: 5)")
    p.add_argument("--hidden", type=positive_int, default=256, help="classifier width")
    p.add_argument("--layers", type=positive_int, default=4, help="classifier hidden layers (paper: a 4-layer MLP)")
    p.add_argument("--disc-lr", type=positive_float, default=1e-4, help="classifier learning rate (Fig. 19: 1e-3)")
    p.add_argument("--gen-lr", type=positive_float, default=1e-3, help="learning rate of W and b")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--eval-every", type=positive_int, default=None, help="curve resolution (default: iterations / 20)")
    p.add_argument("--eval-samples", type=positive_int, default=10000, help="samples of Q per classifier estimate")
    p.add_argument("--gaussian-seed", type=seed_int, default=0, help="seed of the target P and the initial Q0")
    p.add_argument("--log-y", action="store_true", help="log10 y axis in the PNG")
    p.add_argument("--paper", action="store_true", help="the paper's 10^6 iterations and 10 seeds (days on a CPU)")
    p.add_argument("--out", default="runs/appendix_d")
    return p.parse_args(argv)


def summarise(runs: list[dict]) -> dict:
    """Mean / min / max over seeds of every curve of one dimension (all seeds share the step grid)."""
    def stats(curves: list[list[float]]) -> dict[str, list[float]]:
        cols = list(zip(*curves))
        return {"mean": [statistics.fmean(c) for c in cols], "min": [min(c) for c in cols],
                "max": [max(c) for c in cols]}

    return {"true_kl_init": runs[0]["true_kl_init"],
            "estimation_step": runs[0]["estimation"]["step"],
            "estimation": stats([r["estimation"]["estimated_kl"] for r in runs]),
            "step": runs[0]["minimisation"]["step"],
            "true_kl": stats([r["minimisation"]["true_kl"] for r in runs]),
            "estimated_kl": stats([r["minimisation"]["estimated_kl"] for r in runs])}


def panel(dim: int, s: dict, log_y: bool) -> Panel:
    return Panel(
        title=f"d = {dim}: KL(Q || P) during minimisation",
        series=[Series(s["step"], s["true_kl"]["mean"], "true KL (mean, min-max over seeds)",
                       band=(s["true_kl"]["min"], s["true_kl"]["max"])),
                Series(s["step"], s["estimated_kl"]["mean"], "classifier estimate, online (mean)", dashed=True)],
        hlines={"true KL at initialisation": s["true_kl_init"],
                "density-ratio KL at initialisation": s["estimation"]["mean"][-1]},
        xlabel="iteration", ylabel="KL (nats)", log_y=log_y)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.paper:
        args.iterations, args.seeds = 1_000_000, 10
    eval_every = args.eval_every or max(1, args.iterations // 20)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    protocol = {k: v for k, v in vars(args).items() if k not in ("out", "paper", "log_y")}
    protocol["eval_every"] = eval_every
    results: dict = {"protocol": protocol, "dims": {}}
    print(f"{'d':>5} {'KL(Q0||P)':>10} {'ratio est.':>16} {'final true KL':>14} {'online est.':>12} {'time':>7}")
    for dim in args.dims:
        start = time.time()
        runs = [appendix_d_run(dim, seed=seed, gaussian_seed=args.gaussian_seed, iterations=args.iterations,
                               disc_steps=args.disc_steps, hidden=args.hidden, layers=args.layers,
                               disc_lr=args.disc_lr, gen_lr=args.gen_lr, batch_size=args.batch_size,
                               eval_every=eval_every, eval_samples=args.eval_samples, progress=True)
                for seed in range(args.seeds)]
        s = summarise(runs)
        results["dims"][str(dim)] = {"summary": s, "runs": runs}
        est = [r["estimation"]["estimated_kl"][-1] for r in runs]
        spread = statistics.stdev(est) if len(est) > 1 else 0.0
        print(f"{dim:>5} {s['true_kl_init']:>10.4g} {statistics.fmean(est):>9.4g} +- {spread:<4.2g} "
              f"{s['true_kl']['mean'][-1]:>14.4g} {s['estimated_kl']['mean'][-1]:>12.4g} {time.time() - start:>6.0f}s",
              flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=1))  # after every d: partial results survive
        save_line_plots([panel(int(d), r["summary"], args.log_y) for d, r in results["dims"].items()],
                        out / "appendix_d.png", formats=("pdf",))
    print(f"wrote {out / 'results.json'} and {out / 'appendix_d.png'}")
    return 0
