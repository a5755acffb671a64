#!/usr/bin/env python
"""Rosca et al. 2018, section 3 and App. E, in one place: latent-space analyses of a trained model with an encoder.

The study's pieces: `marginal_kl_density_ratio` (Algorithm 3), `low_posterior_codes` (Algorithm 1),
`appendix_e_table1` (Table 1's numbers, which `zoo reproduce` measures) and the command below. Algorithm 2 and the
encoding are the registered `marginal_kl` metric's code (`zoo.evaluation.latent`); the density-ratio trick is
`zoo.evaluation.density_ratio`, shared with App. D.

    zoo latent_analysis CHECKPOINT [--split train] [--limit N] [--num-z 10000] [--smoothing-std S]
                                    [--ratio-steps 5000] [--low-posterior 64] [--out DIR]

CHECKPOINT is a run directory (its latest checkpoint) or one checkpoint. The data are the recipe's dataset (override
with --data / --split / --root / --limit). Encodes every example, then reports:
- KL[q(z) || p(z)] by Monte Carlo (Algorithm 2) beside eq. 5: the average posterior KL, the mutual information, log N
  and the lower bound avg KL - log N;
- the density-ratio estimate of the same KL with a trained classifier (Algorithm 3; --ratio-steps 0 skips it);
- low-posterior samples (Algorithm 1): the --low-posterior prior codes of lowest q(z) among --low-posterior-pool,
  decoded, in a grid left of as many ordinary samples (right), as in Fig. 9.
Deterministic encoders have a point-mass q(z|x), for which the Monte-Carlo KL is infinite: pass --smoothing-std S to
use q(z|x) = N(E(x), S^2 I) (reported with the results), or rely on the density-ratio estimate alone.
Writes latent.json and low_posterior.png to --out (default <run>/latent/<checkpoint name>).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any


import torch
from torch import Tensor

from zoo.arguments import (checkpoint_parser, device_name, nonnegative_int, open_checkpoint, positive_float,
                           positive_int, seed_int)
from zoo.data import DatasetNotFoundError, load_dataset
from zoo.evaluation import latent
from zoo.evaluation.density_ratio import (ClassifierState, converged, mean_logit, ratio_classifier,
                                         train_ratio_classifier)
from zoo.evaluation.latent import Progress, check_posteriors, log_marginal_posterior, randn_on, sample_posteriors



def marginal_kl_density_ratio(mu: Tensor, logvar: Tensor | None, *, steps: int = 5000, batch_size: int = 64,
                              hidden: int = 1000, layers: int = 3, lr: float = 5e-4,
                              betas: tuple[float, float] = (0.9, 0.9), num_z: int = 10_000,
                              generator: torch.Generator | None = None, progress: bool = False,
                              window: int | None = None, tol: float = 1e-3, state_path: Path | None = None,
                              state_every: int = 2000, desc: str = "Algorithm 3 classifier") -> dict[str, Any]:
    """KL[q(z) || p(z)] by the density-ratio trick (Rosca et al. Algorithm 3).

    A LeakyReLU(0.2) MLP C is trained `steps` times to label codes z ~ q(z|x), x uniform over the data, 1 and prior
    codes 0; then KL = mean logit C(z_i) over `num_z` fresh codes from q (eq. 6). App. E.2 defaults: Adam with
    beta1 = beta2 = 0.9 (as printed), lr 5e-4 (Tables 1-2), 3 hidden layers; hidden 1000 is the App. K code
    discriminator (Tables 1-2 use 5000) and `steps` is far below the paper's 5 * 10^5 (printed "5 * 10 * 5").
    Works for point-mass posteriors (logvar None). Call `torch.manual_seed` first for a reproducible classifier.
    With `window`, the classifier trains to convergence (`train_ratio_classifier`), `steps` at most. With
    `state_path`, its training is saved there every `state_every` steps and a rerun resumes it exactly (the file is
    keyed by these settings, the posteriors and `torch.initial_seed()`, so other settings never reuse it).

    Returns:
        {"marginal_kl", "final_loss" (mean of the last 100 classifier losses; log 4 = chance), "steps" (trained),
         "converged", "hidden", "layers", "lr", "num_z"}.
    """
    dim = mu.shape[1]
    classifier = ratio_classifier(dim, hidden, layers).to(mu.device)
    sample_q = lambda n: sample_posteriors(mu, logvar, n, generator)[1].float()  # noqa: E731
    sample_p = lambda n: randn_on((n, dim), generator, mu.device)  # noqa: E731
    state = None
    if state_path is not None:
        identity = {"steps": steps, "batch_size": batch_size, "hidden": hidden, "layers": layers, "lr": lr,
                    "betas": list(betas), "window": window, "tol": tol, "init_seed": torch.initial_seed(),
                    "generator_seed": generator.initial_seed() if generator is not None else None,
                    "posteriors": posterior_fingerprint(mu, logvar)}
        state = ClassifierState(Path(state_path), identity, generator=generator, every=state_every)
    losses = train_ratio_classifier(classifier, sample_q, sample_p, steps=steps, batch_size=batch_size, lr=lr,
                                    betas=betas, progress=progress, desc=desc, window=window, tol=tol, state=state)
    classifier.eval()
    kl = mean_logit(classifier, sample_q(num_z))
    return {"marginal_kl": kl, "final_loss": sum(losses[-100:]) / len(losses[-100:]), "steps": len(losses),
            "converged": bool(window) and converged(losses, window, tol),
            "hidden": hidden, "layers": layers, "lr": lr, "num_z": num_z}


def posterior_fingerprint(mu: Tensor, logvar: Tensor | None) -> str:
    """A SHA-256 prefix of the posteriors' bytes: a saved classifier state is reused only for the same q(z|x)."""
    digest = hashlib.sha256()
    for t in (mu, logvar):
        if t is not None:
            digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def appendix_e_table1(model: Any, data: Any, *, num_z: int = 10_000, seed: int = 0,
                      ratio: list[dict[str, Any]] = (), state_dir: Path | None = None,
                      progress: bool = False) -> tuple[dict[str, float], dict[str, Any]]:
    """Rosca et al. App. E Table 1 for one model over `data`: KL[q(z)||p(z)] by Monte Carlo (Algorithm 2) with the
    eq. 5 terms, the reconstruction term and ELBO (models with an explicit likelihood), and by the density-ratio trick
    (Algorithm 3) for each classifier of `ratio` ({name, layers, hidden, steps, lr, seeds, window, tol}: `seeds`
    classifiers from as many initialisations, each trained to convergence when `window` is given, `steps` at most).
    With `state_dir`, every classifier keeps its training state there (`<name>-seed<k>.pt`), so a stopped measurement
    rerun resumes each classifier where it stopped and skips finished ones, with the same numbers as one that never
    stopped (each classifier's initialisation and codes have their own seeds).

    Returns:
        (values: metric name -> number, with `<name>_seed_std` / `<name>_stderr` over classifier seeds and the
         classifiers' mean final loss `<name>_final_loss`, seeds converged `<name>_converged`, mean `<name>_steps`;
         details: num_points and every classifier's settings and per-seed outcome).
    """
    generator = torch.Generator().manual_seed(seed)
    mu, logvar = latent.encode_posteriors(model, data, batch_size=500)
    mc = latent.marginal_kl_mc(mu, logvar, num_z=num_z, generator=generator)
    values = {"marginal_kl": mc.marginal_kl, "marginal_kl_stderr": mc.marginal_kl_stderr,
              "avg_posterior_kl": mc.avg_posterior_kl, "mutual_information": mc.mutual_information,
              "log_n": mc.log_n, "marginal_kl_lower_bound": mc.marginal_kl_lower_bound,
              "marginal_kl_lower_bound_stderr": 0.0,  # exact: closed-form posterior KLs over the whole split
              "bound_margin": mc.marginal_kl - mc.marginal_kl_lower_bound}
    if hasattr(model, "log_px_given_z"):
        recon = latent.reconstruction_term(model, data, generator=torch.Generator().manual_seed(seed))
        values |= {"reconstruction_term": recon.mean, "reconstruction_term_stderr": recon.stderr,
                   "elbo": recon.mean - mc.avg_posterior_kl}
    classifiers = []
    for cfg in ratio:
        kw = {k: cfg[k] for k in ("layers", "hidden", "steps", "lr", "window", "tol") if k in cfg}
        runs = []
        for k in range(int(cfg.get("seeds", 1))):  # classifier initialisations (and their code draws)
            torch.manual_seed(seed + k)
            path = Path(state_dir) / f"{cfg['name']}-seed{k}.pt" if state_dir is not None else None
            runs.append(marginal_kl_density_ratio(mu, logvar, num_z=num_z,
                                                  generator=torch.Generator().manual_seed(seed + 1000 + k),
                                                  state_path=path, progress=progress,
                                                  desc=f"{cfg['name']} classifier {k + 1}/{cfg.get('seeds', 1)}",
                                                  **kw))
        estimates = torch.tensor([r["marginal_kl"] for r in runs], dtype=torch.float64)
        values[cfg["name"]] = estimates.mean().item()
        # how far the classifiers got: a loss near chance (log 4) makes any estimate near 0, whatever the true KL
        values[f"{cfg['name']}_final_loss"] = sum(r["final_loss"] for r in runs) / len(runs)
        values[f"{cfg['name']}_converged"] = float(sum(r["converged"] for r in runs))
        values[f"{cfg['name']}_steps"] = sum(r["steps"] for r in runs) / len(runs)
        if len(runs) > 1:  # the spread over classifier seeds, and the standard error of their mean
            values[f"{cfg['name']}_seed_std"] = estimates.std().item()
            values[f"{cfg['name']}_stderr"] = (estimates.std() / len(runs) ** 0.5).item()
        classifiers.append({"name": cfg["name"], **{k: runs[0][k] for k in ("hidden", "layers", "lr")},
                            "seeds": [{k: r[k] for k in ("marginal_kl", "final_loss", "steps", "converged")}
                                      for r in runs]})
    return values, {"num_points": len(mu), "classifiers": classifiers}


def low_posterior_codes(mu: Tensor, logvar: Tensor | None, n: int, *, num_z: int = 10_000,
                        generator: torch.Generator | None = None, code_chunk: int = 1024, data_chunk: int = 8192,
                        progress: Progress = False) -> tuple[Tensor, Tensor]:
    """The n of `num_z` prior codes z ~ p(z) with the lowest log q(z) (Rosca et al. Algorithm 1).

    Returns:
        (codes (n, D) float32, their log q(z) (n,) float64), lowest first.
    """
    logvar = check_posteriors(mu, logvar, "low_posterior_codes")
    if not 1 <= n <= num_z:
        raise ValueError(f"low_posterior_codes: need 1 <= n <= num_z, got n={n}, num_z={num_z}")
    z = randn_on((num_z, mu.shape[1]), generator, mu.device)
    log_q = log_marginal_posterior(z, mu, logvar, code_chunk=code_chunk, data_chunk=data_chunk, progress=progress)
    order = torch.argsort(log_q)[:n]
    return z[order].float(), log_q[order]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = checkpoint_parser("zoo latent_analysis", __doc__)
    p.add_argument("--data", help="dataset name (default: the recipe's)")
    p.add_argument("--split", default=None, help="split (default: the recipe's, i.e. the training split)")
    p.add_argument("--root", default=None, help="data root (default: the recipe's, else ZOO_DATA)")
    p.add_argument("--limit", type=positive_int, default=None, help="use the first N examples only")
    p.add_argument("--batch-size", type=positive_int, default=500, help="encoding batch size")
    p.add_argument("--num-z", type=positive_int, default=10_000, help="Monte-Carlo codes for Algorithm 2")
    p.add_argument("--smoothing-std", type=positive_float, default=None,
                   help="deterministic encoders: q(z|x) = N(E(x), S^2 I)")
    p.add_argument("--ratio-steps", type=nonnegative_int, default=5000, help="Algorithm 3 classifier steps (0: skip)")
    p.add_argument("--ratio-hidden", type=positive_int, default=1000)
    p.add_argument("--ratio-layers", type=positive_int, default=3)
    p.add_argument("--ratio-lr", type=positive_float, default=5e-4)
    p.add_argument("--low-posterior", type=nonnegative_int, default=64, help="low-posterior samples to draw (0: skip)")
    p.add_argument("--low-posterior-pool", type=positive_int, default=10_000, help="prior codes ranked (num_z, Alg. 1)")
    p.add_argument("--code-chunk", type=positive_int, default=1024, help="codes per log-sum-exp block")
    p.add_argument("--data-chunk", type=positive_int, default=8192, help="posteriors per log-sum-exp block")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--device", type=device_name, default="cpu")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def side_by_side(left: torch.Tensor, right: torch.Tensor, path: Path) -> None:
    """Two image grids (B, C, H, W) in [-1, 1] next to each other with a white gap, saved as one PNG."""
    from torchvision.utils import make_grid, save_image

    nrow = max(1, int(math.sqrt(left.shape[0])))
    a, b = (make_grid(t.float().cpu().add(1).div(2).clamp(0, 1), nrow=nrow, padding=1) for t in (left, right))
    gap = torch.ones(a.shape[0], a.shape[1], 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(torch.cat([a, gap, b], dim=2), str(path))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    loaded = open_checkpoint(args, device=args.device)
    if loaded is None:
        return 2
    model, recipe, step, ckpt = loaded
    if not model.has_encoder:
        print(f"error: {recipe.model.name} has no encoder; latent analyses need q(z|x)", file=sys.stderr)
        return 2
    options = dict(recipe.data.options)
    if args.data:
        options = {}
    if args.limit is not None:
        options["limit"] = args.limit
    name, split = args.data or recipe.data.name, args.split or recipe.data.split
    try:
        dataset = load_dataset(name, split, args.root or recipe.data.root, **options)
    except DatasetNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else ckpt.parent.parent / "latent" / ckpt.name
    generator = torch.Generator().manual_seed(args.seed)
    start = time.time()
    try:
        mu, logvar = latent.encode_posteriors(model, dataset, batch_size=args.batch_size,
                                              smoothing_std=args.smoothing_std, progress=True)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    kind = ("gaussian" if args.smoothing_std is None else f"point mass smoothed by N(0, {args.smoothing_std}^2 I)") \
        if logvar is not None else "point mass (deterministic encoder)"
    report: dict = {"checkpoint": str(ckpt), "step": step, "model": recipe.model.name,
                    "data": {"name": name, "split": split, "options": options, "num_points": len(mu)},
                    "posterior": kind, "smoothing_std": args.smoothing_std, "seed": args.seed}
    print(f"encoded {len(mu)} examples of {name}/{split} with {recipe.model.name} (step {step}); q(z|x): {kind}")
    if logvar is None:
        report["monte_carlo"] = report["low_posterior"] = \
            "skipped: q(z|x) is a point mass, KL[q(z) || p(z)] is infinite; pass --smoothing-std"
        print(report["monte_carlo"])
    else:
        mc = latent.marginal_kl_mc(mu, logvar, num_z=args.num_z, generator=generator, code_chunk=args.code_chunk,
                                   data_chunk=args.data_chunk, progress=True)
        report["monte_carlo"] = mc.as_dict()
        print(f"Algorithm 2: KL[q(z)||p(z)] = {mc.marginal_kl:.3f} +- {mc.marginal_kl_stderr:.3f} nats "
              f"(num_z {mc.num_z}, N {mc.num_points}); eq. 5: E_x KL[q(z|x)||p(z)] = {mc.avg_posterior_kl:.3f} = "
              f"marginal KL + I, I = {mc.mutual_information:.3f} <= log N = {mc.log_n:.3f}, so KL >= "
              f"{mc.marginal_kl_lower_bound:.3f}")
    if args.ratio_steps > 0:
        torch.manual_seed(args.seed)
        ratio = marginal_kl_density_ratio(mu, logvar, steps=args.ratio_steps, hidden=args.ratio_hidden,
                                          layers=args.ratio_layers, lr=args.ratio_lr, num_z=args.num_z,
                                          generator=generator, progress=True)
        report["density_ratio"] = ratio
        print(f"Algorithm 3: KL[q(z)||p(z)] = {ratio['marginal_kl']:.3f} nats (classifier {args.ratio_layers} x "
              f"{args.ratio_hidden}, {args.ratio_steps} steps, final loss {ratio['final_loss']:.3f}; log 4 = chance)")
    if args.low_posterior > 0 and logvar is not None:
        if not hasattr(model, "decode"):
            print(f"error: {recipe.model.name} has no decode(z); low-posterior samples need one", file=sys.stderr)
            return 2
        z_low, log_q = low_posterior_codes(mu, logvar, args.low_posterior, num_z=args.low_posterior_pool,
                                           generator=generator, code_chunk=args.code_chunk,
                                           data_chunk=args.data_chunk, progress=True)
        with torch.no_grad():
            low = model.decode(z_low.to(args.device))
            ordinary = model.sample(args.low_posterior, generator=torch.Generator().manual_seed(args.seed + 1))
        side_by_side(low, ordinary, out / "low_posterior.png")
        report["low_posterior"] = {"n": args.low_posterior, "pool": args.low_posterior_pool,
                                   "log_q_max": log_q.max().item(), "log_q_min": log_q.min().item(),
                                   "png": str(out / "low_posterior.png"),
                                   "layout": "left: low-posterior samples (lowest q(z) first), right: samples"}
        print(f"Algorithm 1: {args.low_posterior} lowest-q(z) codes of {args.low_posterior_pool} (log q(z) from "
              f"{log_q.min().item():.1f} to {log_q.max().item():.1f}) -> {out / 'low_posterior.png'}")
    report["seconds"] = round(time.time() - start, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latent.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {out / 'latent.json'}")
    return 0
