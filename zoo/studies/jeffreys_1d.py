#!/usr/bin/env python
"""The 1-D study of IJAE App. B / Figure 1: fit an equiprobable mixture of two Gaussians to a 4-Gaussian target by
forward KL, reverse KL, JSD and lambda-Jeffreys, print the fitted parameters and write the Figure 1 plots.

    zoo jeffreys_1d [--out runs/jeffreys_1d] [--iterations 10000] [--batch 1000] [--restarts 50] [--lam 0.5]

Target p*(x) = 0.15 N(-8, 0.2^2) + 0.35 N(-3, 0.8^2) + 0.3 N(3, 1) + 0.2 N(8, 0.2^2); model
p_theta(x) = 0.5 N(mu_1, s_1^2) + 0.5 N(mu_2, s_2^2) with learnable locations and log-scales. Each divergence is
minimised by stochastic gradients of a Monte-Carlo estimate (batch 1,000, 10,000 iterations, the paper's settings),
from `restarts` random initialisations in parallel; the restart with the lowest estimate on 100,000 fresh samples
wins. Both densities are exact, so no discriminator is involved:
- forward KL(p* || p_theta) = E_p*[log p* - log p_theta];
- reverse KL(p_theta || p*) = E_p_theta[log p_theta - log p*], reparameterised samples;
- JSD = 1/2 KL(p_theta || m) + 1/2 KL(p* || m), m = (p_theta + p*) / 2;
- J_lambda = lambda KL(p* || p_theta) + (1 - lambda) KL(p_theta || p*) (section 4).
Writes <out>/figure1_log_densities.png (a-c: lambda-Jeffreys against each other fit), <out>/figure1_densities.png (d)
and <out>/fits.json. Choices the paper leaves open are in docs/models.md.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor


from zoo.data.synthetic import IJAE_MEANS, IJAE_STDS, IJAE_WEIGHTS
from zoo.figures import Panel, Series, save_line_plots

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd", "jeffreys")
LABELS = {"forward_kl": "Forward KL", "reverse_kl": "Reverse KL", "jsd": "JSD", "jeffreys": "lambda-Jeffreys"}
COLORS = {"forward_kl": "blue", "reverse_kl": "green", "jsd": "orange", "jeffreys": "red"}
PANEL_SIZE = (540, 394)  # pixels per panel of the figures, margins included
LOG_HALF = math.log(0.5)


def normal_log_prob(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return -0.5 * ((x - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)


@dataclass
class Mixture:
    """A 1-D Gaussian mixture with K components; parameter tensors are (..., K) and broadcast against points."""

    weights: Tensor
    means: Tensor
    stds: Tensor

    def log_prob(self, x: Tensor) -> Tensor:
        """log-density of points x (..., N) -> (..., N)."""
        comps = normal_log_prob(x[..., None], self.means[..., None, :], self.stds[..., None, :])  # (..., N, K)
        return torch.logsumexp(self.weights.log()[..., None, :] + comps, dim=-1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """n draws (n,) of a mixture with unbatched parameters (K,)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        return self.means[k] + self.stds[k] * torch.randn(n, generator=generator, dtype=self.means.dtype)


def ijae_target() -> Mixture:
    """p*(x) of App. B (the `mixture_1d` dataset's default), in float64."""
    return Mixture(*(torch.tensor(v, dtype=torch.float64) for v in (IJAE_WEIGHTS, IJAE_MEANS, IJAE_STDS)))


def two_gaussians(theta: Tensor) -> Mixture:
    """The model: theta (..., 4) = (mu_1, log s_1, mu_2, log s_2), equal weights."""
    means, log_stds = theta[..., 0::2], theta[..., 1::2]  # (..., 2) each
    return Mixture(torch.full_like(means, 0.5), means, log_stds.exp())


def model_samples(theta: Tensor, eps: Tensor) -> Tensor:
    """Reparameterised draws of the model, stratified: half the noise eps (..., N) for each equiprobable component,
    so that the batch mean is an unbiased estimate of E_p_theta with pathwise gradients."""
    half = eps.shape[-1] // 2
    mu, std = theta[..., 0::2], theta[..., 1::2].exp()  # (..., 2)
    return torch.cat([mu[..., :1] + std[..., :1] * eps[..., :half], mu[..., 1:] + std[..., 1:] * eps[..., half:]], -1)


def estimate(kind: str, theta: Tensor, target: Mixture, x_target: Tensor, eps: Tensor, lam: float = 0.5) -> Tensor:
    """Monte-Carlo estimate of a divergence between p_theta and p*, differentiable in theta.

    Args:
        kind: one of `DIVERGENCES`.
        theta: (R, 4) model parameters (R restarts).
        target: p*.
        x_target: (N,) or (R, N) draws of p*.
        eps: (N,) or (R, N) standard normal noise for the model's draws (N even).
        lam: lambda of J_lambda.

    Returns:
        (R,) estimates.
    """
    model = two_gaussians(theta)
    if kind in ("reverse_kl", "jsd", "jeffreys"):
        x_model = model_samples(theta, eps)  # (R, N)
        lp_model, lt_model = model.log_prob(x_model), target.log_prob(x_model)
    if kind in ("forward_kl", "jsd", "jeffreys"):
        x_t = x_target.expand(theta.shape[0], -1)
        lp_target, lt_target = model.log_prob(x_t), target.log_prob(x_t)
    if kind == "forward_kl":
        return (lt_target - lp_target).mean(-1)
    if kind == "reverse_kl":
        return (lp_model - lt_model).mean(-1)
    if kind == "jsd":
        log_m_model = torch.logaddexp(lp_model, lt_model) + LOG_HALF  # log (p_theta + p*) / 2 at model draws
        log_m_target = torch.logaddexp(lp_target, lt_target) + LOG_HALF
        return 0.5 * (lp_model - log_m_model).mean(-1) + 0.5 * (lt_target - log_m_target).mean(-1)
    if kind == "jeffreys":
        return lam * (lt_target - lp_target).mean(-1) + (1 - lam) * (lp_model - lt_model).mean(-1)
    raise ValueError(f"unknown divergence {kind!r}; choose one of {', '.join(DIVERGENCES)}")


def exact(theta: Tensor, lam: float = 0.5, lo: float = -40.0, hi: float = 40.0, points: int = 400_001
          ) -> dict[str, float]:
    """All four divergences of one parameter vector theta (4,) by quadrature on a grid (the densities are known):
    a check on the Monte-Carlo estimates, accurate to ~1e-6 for the scales that occur here (>= 0.05)."""
    x = torch.linspace(lo, hi, points, dtype=torch.float64)
    dx = (hi - lo) / (points - 1)
    lp, lt = two_gaussians(theta.detach().double()).log_prob(x), ijae_target().log_prob(x)
    p, pt = lp.exp(), lt.exp()
    lm = torch.logaddexp(lp, lt) + LOG_HALF
    fwd, rev = (pt * (lt - lp)).sum() * dx, (p * (lp - lt)).sum() * dx
    jsd = 0.5 * (p * (lp - lm)).sum() * dx + 0.5 * (pt * (lt - lm)).sum() * dx
    return {"forward_kl": fwd.item(), "reverse_kl": rev.item(), "jsd": jsd.item(),
            "jeffreys": (lam * fwd + (1 - lam) * rev).item()}


@dataclass
class Fit:
    """The best restart of one divergence: parameters, its Monte-Carlo estimate on `eval_samples` fresh draws, every
    restart's estimate, and all four divergences of the fit by quadrature."""

    divergence: str
    means: list[float]
    stds: list[float]
    estimate: float
    restart_estimates: list[float]
    exact: dict[str, float]

    @property
    def theta(self) -> Tensor:
        return torch.tensor([self.means[0], math.log(self.stds[0]), self.means[1], math.log(self.stds[1])],
                            dtype=torch.float64)


def initial_parameters(restarts: int, generator: torch.Generator) -> Tensor:
    """Locations uniform on [-10, 10] (the target's support and beyond), scales log-uniform on [0.3, 3]."""
    mu = torch.rand(restarts, 2, generator=generator, dtype=torch.float64) * 20 - 10
    log_s = torch.rand(restarts, 2, generator=generator, dtype=torch.float64) * math.log(10) + math.log(0.3)
    return torch.stack([mu[:, 0], log_s[:, 0], mu[:, 1], log_s[:, 1]], dim=1)


def fit(kind: str, iterations: int = 10_000, batch: int = 1000, restarts: int = 50, eval_samples: int = 100_000,
        lr: float = 0.01, lam: float = 0.5, seed: int = 0) -> Fit:
    """Minimise one divergence from `restarts` random starts with Adam on fresh Monte-Carlo batches; keep the best."""
    if batch % 2 or eval_samples % 2:
        raise ValueError(f"batch and eval_samples must be even (half the model draws per component), got {batch} and "
                         f"{eval_samples}")
    target, g = ijae_target(), torch.Generator().manual_seed(seed)
    theta = initial_parameters(restarts, g).requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, iterations, eta_min=lr / 100)
    for _ in range(iterations):
        x_target = target.sample(batch, g)  # (N,), shared by the restarts
        eps = torch.randn(restarts, batch, generator=g, dtype=torch.float64)
        loss = estimate(kind, theta, target, x_target, eps, lam).sum()  # restarts are independent: sum their losses
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():  # common random numbers: every restart is judged on the same draws
        final = estimate(kind, theta, target, target.sample(eval_samples, g),
                         torch.randn(eval_samples, generator=g, dtype=torch.float64), lam)
    finite = torch.where(torch.isfinite(final), final, torch.full_like(final, math.inf))
    best = int(finite.argmin())
    order = theta[best, 0::2].argsort()  # report components left to right
    return Fit(kind, theta[best, 0::2][order].tolist(), theta[best, 1::2][order].exp().tolist(), final[best].item(),
               final.tolist(), exact(theta[best], lam))


def plot(fits: dict[str, Fit], out: Path, lam: float) -> list[Path]:
    """Figure 1: a)-c) log-densities of lambda-Jeffreys against reverse KL, forward KL and JSD; d) all densities."""
    x = torch.linspace(-12, 12, 1201, dtype=torch.float64)
    target = ijae_target().log_prob(x)
    curves = {k: two_gaussians(f.theta).log_prob(x) for k, f in fits.items()}
    label = {**LABELS, "jeffreys": f"{lam:g}-Jeffreys"}
    truth = Series(x.tolist(), target.tolist(), "target p*", "black", dashed=True)
    log_panels = []
    for tag, other in zip("abc", ("reverse_kl", "forward_kl", "jsd")):
        series = [truth] + [Series(x.tolist(), curves[k].tolist(), label[k], COLORS[k]) for k in ("jeffreys", other)
                            if k in curves]
        log_panels.append(Panel(f"{tag}) log-density: {label['jeffreys']} vs {label[other]}", series, xlabel="x",
                                ylim=(-30, 1), legend="lower center"))
    dens = [Series(x.tolist(), target.exp().tolist(), "target p*", "black", dashed=True)]
    dens += [Series(x.tolist(), curves[k].exp().tolist(), label[k], COLORS[k]) for k in DIVERGENCES if k in curves]
    densities = Panel("d) densities", dens, xlabel="x", legend="upper left")
    return [save_line_plots(log_panels, out / "figure1_log_densities.png", columns=len(log_panels), size=PANEL_SIZE,
                            formats=("pdf",)),
            save_line_plots([densities], out / "figure1_densities.png", size=PANEL_SIZE, formats=("pdf",))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zoo jeffreys_1d", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/jeffreys_1d", help="folder for the PNGs and fits.json")
    parser.add_argument("--iterations", type=int, default=10_000, help="SGD iterations (App. B: 10,000)")
    parser.add_argument("--batch", type=int, default=1000, help="Monte-Carlo batch (App. B: 1,000)")
    parser.add_argument("--restarts", type=int, default=50, help="independent runs per divergence (App. B: 50)")
    parser.add_argument("--eval-samples", type=int, default=100_000, help="samples to pick the best run (App. B)")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (cosine-decayed to lr / 100)")
    parser.add_argument("--lam", type=float, default=0.5, help="lambda of the lambda-Jeffreys divergence")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--divergences", nargs="+", default=list(DIVERGENCES), choices=DIVERGENCES)
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors of a few thousand numbers: threads only add overhead
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    fits = {}
    print(f"best of {args.restarts} runs each; 'estimate' on {args.eval_samples} draws, then the fit's exact "
          f"divergences (quadrature)")
    print(f"{'fitted by':<16}{'mu_1':>8}{'s_1':>7}{'mu_2':>8}{'s_2':>7}{'estimate':>10} |" +
          "".join(f"{LABELS[k]:>16}" for k in DIVERGENCES))
    for kind in args.divergences:
        f = fit(kind, args.iterations, args.batch, args.restarts, args.eval_samples, args.lr, args.lam, args.seed)
        fits[kind] = f
        params = f"{f.means[0]:8.3f}{f.stds[0]:7.3f}{f.means[1]:8.3f}{f.stds[1]:7.3f}"
        print(f"{LABELS[kind]:<16}{params}{f.estimate:10.4f} |" + "".join(f"{f.exact[k]:16.4f}" for k in DIVERGENCES),
              flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fits.json").write_text(json.dumps({"settings": vars(args), "fits": [asdict(f) for f in fits.values()]},
                                              indent=1))
    for path in plot(fits, out, args.lam):
        print(f"wrote {path}")
    return 0
