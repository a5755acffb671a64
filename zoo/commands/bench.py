#!/usr/bin/env python
"""Trainer overhead: one training step through `zoo.Trainer` against a plain hand-written PyTorch loop for the
same networks, losses, optimizers and data, timed alternately in the same process.

    zoo bench [--models vae,dcgan,wgan_gp] [--steps 30] [--rounds 5] [--device cpu|cuda]

Prints ms/step for both and the ratio trainer/plain (median over rounds); the target is a ratio <= 1.03.
"""
from __future__ import annotations

import argparse
import statistics
import time


import torch

from zoo.factory import create_model, load_recipe
from zoo.data import TensorImages
from zoo.losses.adversarial import (critic_loss_wasserstein, discriminator_loss,
                                    generator_loss_nonsaturating, generator_loss_wasserstein)
from zoo.losses.divergences import kl_normal
from zoo.losses.penalties import gradient_penalty
from zoo.training import Trainer


def plain_step_fn(name: str, model, optimizers: dict, data: torch.Tensor, batch_size: int, device: torch.device):
    """A hand-written training step for `model`'s networks: what a user would write without the zoo."""
    players = model.players
    n = len(data)
    cursor = {"i": 0, "perm": torch.randperm(n, device=device)}

    def batch() -> torch.Tensor:
        if cursor["i"] + batch_size > n:
            cursor["i"], cursor["perm"] = 0, torch.randperm(n, device=device)
        idx = cursor["perm"][cursor["i"]:cursor["i"] + batch_size]
        cursor["i"] += batch_size
        return data[idx].float().div_(127.5).sub_(1.0)

    latent = model.config.latent_dim
    if name == "vae":
        enc, dec, opt = players["encoder"], players["decoder"], optimizers["vae"]

        def step() -> None:
            x = batch()
            mu, logvar = enc(x).chunk(2, dim=1)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            loss = (-dec.likelihood.log_prob((x + 1) / 2, dec(z)) + kl_normal(mu, logvar)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    G = players["generator"]
    D = players["discriminator"] if "discriminator" in players else players["critic"]
    d_opt, g_opt = (optimizers["disc"], optimizers["gen"]) if name == "dcgan" else (optimizers["critic"],
                                                                                     optimizers["gen"])
    n_critic = getattr(model.config, "n_critic", 1)

    def step() -> None:
        for _ in range(n_critic):
            x = batch()
            with torch.no_grad():
                fake = G(torch.randn(x.shape[0], latent, device=device))
            if name == "dcgan":
                d_loss = discriminator_loss(D(x), D(fake))
            else:
                d_loss = critic_loss_wasserstein(D(x), D(fake)) + 10.0 * gradient_penalty(D, x, fake)
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
        x = batch()
        scores = D(G(torch.randn(x.shape[0], latent, device=device)))
        g_loss = generator_loss_nonsaturating(scores) if name == "dcgan" else generator_loss_wasserstein(scores)
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
    return step


def recipe_for(name: str, width: int, batch_size: int):
    backbone = {"vae": "rosca_mnist", "dcgan": "rosca_mnist", "wgan_gp": "dcgan"}[name]
    size = 28 if backbone == "rosca_mnist" else 32
    return load_recipe({"model": {"name": name, "backbone": backbone, "channels": 3, "image_size": size,
                                  "latent_dim": 50, "width": width},
                        "data": {"batch_size": batch_size},
                        "train": {"progress": False, "tensorboard": False, "max_steps": 10**9}})


def time_steps(step, steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def bench(name: str, args: argparse.Namespace) -> tuple[float, float, list[float]]:
    device = torch.device(args.device)
    recipe = recipe_for(name, args.width, args.batch_size)
    c = recipe.model.config
    shape = (c.channels, c.image_size, c.image_size)
    data = torch.randint(0, 256, (args.batch_size * 64, *shape), dtype=torch.uint8)

    torch.manual_seed(0)
    trainer = Trainer(create_model(recipe), recipe, dataset=TensorImages(data))
    torch.manual_seed(0)
    plain_model = create_model(recipe).to(device).train()
    optimizers = {k: torch.optim.Adam([p for n in cfg.players for p in plain_model.players[n].parameters()],
                                      lr=cfg.lr, betas=cfg.betas) for k, cfg in recipe.optim.items()}
    plain = plain_step_fn(name, plain_model, optimizers, data.to(device), args.batch_size, device)

    time_steps(trainer.train_step, args.warmup, device)
    time_steps(plain, args.warmup, device)
    ours, theirs, ratios = [], [], []
    for r in range(args.rounds):  # alternate, so drift in machine speed hits both alike
        first, second = (trainer.train_step, plain) if r % 2 == 0 else (plain, trainer.train_step)
        a = time_steps(first, args.steps, device)
        b = time_steps(second, args.steps, device)
        t, p = (a, b) if r % 2 == 0 else (b, a)
        ours.append(t)
        theirs.append(p)
        ratios.append(t / p)
    return statistics.median(ours), statistics.median(theirs), ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zoo bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vae,dcgan,wgan_gp")
    parser.add_argument("--steps", type=int, default=30, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per side")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"batch={args.batch_size} width={args.width} steps={args.steps} rounds={args.rounds}")
    print(f"{'model':<9} {'trainer ms/step':>16} {'plain ms/step':>14} {'ratio (median)':>15}  ratios per round")
    for name in args.models.split(","):
        ours, theirs, ratios = bench(name, args)
        print(f"{name:<9} {ours * 1e3:>16.2f} {theirs * 1e3:>14.2f} {statistics.median(ratios):>15.3f}  "
              + " ".join(f"{r:.3f}" for r in ratios), flush=True)
    return 0
