"""Trainer overhead and speed switches: one training step through `zoo.Trainer` against a plain hand-written PyTorch
loop for the same networks, losses, optimizers, precision and data, timed alternately in the same process, with each
speed switch (train.tf32, channels_last, fused_adam, compile) off, on alone, and all on.

    python benchmarks/bench.py [--models vae,dcgan,wgan_gp,ijae] [--configs off,all] [--device cpu|cuda] [--json PATH]

Models: `vae` and `dcgan` (Rosca App. K MNIST networks, 3 x 28 px), `wgan_gp` (the Gulrajani et al. CIFAR ResNet,
3 x 32 px, n_critic 5), `ijae` (lambda-IJAE App. D ResNets, 3 x 32 px). The plain loops of vae, dcgan and wgan_gp
write their losses by hand; ijae's calls the model's `phase_loss` from a bare loop (zero_grad, backward, step), so its
ratio is exactly the trainer's own cost. Both sides run under the same autocast (bf16 on CUDA) and the same switches.
Prints ms/step, images/s (real images drawn per second) and the median ratio trainer/plain; the target is <= 1.03.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from zoo.arguments import ArgumentParser, device_name, nonnegative_int, positive_int
from zoo.data import TensorImages
from zoo.factory import build_model, load_recipe
from zoo.losses.adversarial import (critic_loss_wasserstein, discriminator_loss, generator_loss_nonsaturating,
                                    generator_loss_wasserstein)
from zoo.losses.divergences import kl_normal
from zoo.losses.penalties import gradient_penalty
from zoo.training import Trainer
from zoo.training.speed import SpeedPlan, adam, prepare_players, to_memory_format

SWITCHES = ("tf32", "channels_last", "fused_adam", "compile")
# off: every switch off; a switch's name: that one alone; default: the recipe defaults ("auto": on CUDA everything
# but compile); all: every switch on
CONFIGS = ("off", *SWITCHES, "default", "all")
MODELS = {  # name -> model section; widths are the papers' unless --width says otherwise
    "vae": {"backbone": "rosca_mnist", "channels": 3, "image_size": 28, "latent_dim": 50, "width": 32},
    "dcgan": {"backbone": "rosca_mnist", "channels": 3, "image_size": 28, "latent_dim": 50, "width": 32},
    "wgan_gp": {"backbone": "resnet", "channels": 3, "image_size": 32, "latent_dim": 128, "width": 128,
                "n_critic": 5},
    "ijae": {"channels": 3, "image_size": 32, "latent_dim": 128, "width": 128, "noise_dim": 128},
}


def switches_of(config: str) -> dict[str, bool]:
    if config not in CONFIGS:
        raise SystemExit(f"--configs: unknown {config!r}; choose from {', '.join(CONFIGS)}")
    if config == "default":
        return {}
    return {s: config == "all" or config == s for s in SWITCHES}


def recipe_for(name: str, config: str, args: argparse.Namespace):
    if name not in MODELS:
        raise SystemExit(f"--models: unknown {name!r}; benchmarked models: {', '.join(MODELS)}")
    section = {"name": name, **MODELS[name], **({"width": args.width} if args.width else {})}
    compile_options = {k: v for k, v in (("backend", args.compile_backend), ("mode", args.compile_mode)) if v}
    return load_recipe({"model": section, "data": {"batch_size": args.batch_size},
                        "train": {"progress": False, "tensorboard": False, "max_steps": 10**9,
                                  "log_every": args.log_every, "compile_options": compile_options,
                                  "mixed_precision": args.precision, **switches_of(config)}})


def plain_step_fn(name: str, model, recipe, data: torch.Tensor, plan: SpeedPlan,
                  dtype: torch.dtype | None) -> Callable[[], None]:
    """A hand-written training step for `model`'s networks: what a user would write without the zoo."""
    device, batch_size = data.device, recipe.data.batch_size
    optimizers = {k: adam([p for n in cfg.players for p in model.players[n].parameters()], cfg, plan)
                  for k, cfg in recipe.optim.items()}
    players = model.players
    n = len(data)
    cursor = {"i": 0, "perm": torch.randperm(n, device=device), "step": 0}

    def batch() -> torch.Tensor:
        if cursor["i"] + batch_size > n:
            cursor["i"], cursor["perm"] = 0, torch.randperm(n, device=device)
        idx = cursor["perm"][cursor["i"]:cursor["i"] + batch_size]
        cursor["i"] += batch_size
        return to_memory_format(data[idx].float().div_(127.5).sub_(1.0), plan)

    def autocast():
        return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def update(opt, loss) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if name == "vae":
        enc, dec, opt = players["encoder"], players["decoder"], optimizers["vae"]

        def vae_step() -> None:
            x = batch()
            with autocast():
                mu, logvar = enc(x).float().chunk(2, dim=1)
                z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
                loss = (-dec.likelihood.log_prob((x + 1) / 2, dec(z).float()) + kl_normal(mu, logvar)).mean()
            update(opt, loss)
        return vae_step

    if name in ("dcgan", "wgan_gp"):
        G = players["generator"]
        D = players["discriminator"] if name == "dcgan" else players["critic"]
        d_opt = optimizers["disc" if name == "dcgan" else "critic"]
        latent, n_critic = model.config.latent_dim, getattr(model.config, "n_critic", 1)

        def gan_step() -> None:
            for _ in range(n_critic):
                x = batch()
                with autocast():
                    with torch.no_grad():
                        fake = G(torch.randn(x.shape[0], latent, device=device))
                    if name == "dcgan":
                        d_loss = discriminator_loss(D(x).float(), D(fake).float())
                    else:
                        d_loss = critic_loss_wasserstein(D(x).float(), D(fake).float()) \
                            + 10.0 * gradient_penalty(D, x, fake)
                update(d_opt, d_loss)
            x = batch()
            with autocast():
                scores = D(G(torch.randn(x.shape[0], latent, device=device))).float()
                g_loss = generator_loss_nonsaturating(scores) if name == "dcgan" else generator_loss_wasserstein(scores)
            update(optimizers["gen"], g_loss)
        return gan_step

    phases = model.phases()

    def phase_loss_step() -> None:  # any model: its own losses, a bare loop
        step = cursor["step"]
        for phase in phases:
            if step % phase.every:
                continue
            trained = set(phase.players or recipe.optim[phase.optimizer].players)
            for pname, player in players.items():
                player.requires_grad_(pname in trained)
            for _ in range(phase.repeats):
                with autocast():
                    loss = model.phase_loss(phase.name, batch(), step).loss
                update(optimizers[phase.optimizer], loss)
        cursor["step"] += 1
    return phase_loss_step


def batches_per_step(model) -> int:
    return sum(p.repeats for p in model.phases() if p.every == 1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Seconds per call of `step` over `steps` calls (the device drained before and after); 0 for no calls (an
    empty warm-up)."""
    if steps == 0:
        return 0.0
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps


def build(name: str, config: str, args: argparse.Namespace) -> tuple[Trainer, Callable[[], None]]:
    """The trainer and the plain step for one model and switch configuration, from the same initial weights."""
    device = torch.device(args.device)
    recipe = recipe_for(name, config, args)
    m = recipe.model.config
    shape = (m.channels, m.image_size, m.image_size)
    data = torch.randint(0, 256, (args.batch_size * 64, *shape), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    trainer = Trainer(build_model(recipe), recipe, dataset=TensorImages(data))
    torch.manual_seed(0)
    plain_model = build_model(recipe).to(device).train()
    prepare_players(plain_model.players.values(), trainer.speed)
    plain = plain_step_fn(name, plain_model, recipe, data.to(device), trainer.speed, trainer.autocast_dtype)
    return trainer, plain


def bench(name: str, config: str, args: argparse.Namespace) -> dict[str, Any]:
    """One row: medians over alternating rounds of `args.steps` steps per side."""
    device = torch.device(args.device)
    start = time.perf_counter()
    trainer, plain = build(name, config, args)
    time_steps(trainer.train_step, args.warmup, device)  # compilation, cuDNN autotuning, allocator warm-up
    time_steps(plain, args.warmup, device)
    warm_s = time.perf_counter() - start
    ours, theirs, ratios = [], [], []
    for r in range(args.rounds):  # alternate, so drift in machine speed hits both alike
        first, second = (trainer.train_step, plain) if r % 2 == 0 else (plain, trainer.train_step)
        a = time_steps(first, args.steps, device)
        b = time_steps(second, args.steps, device)
        t, p = (a, b) if r % 2 == 0 else (b, a)
        ours.append(t)
        theirs.append(p)
        ratios.append(t / p)
    images = args.batch_size * batches_per_step(trainer.model)
    t, p = statistics.median(ours), statistics.median(theirs)
    return {"model": name, "config": config, "switches": trainer.speed.summary(),
            "trainer_ms": t * 1e3, "plain_ms": p * 1e3, "trainer_img_s": images / t, "plain_img_s": images / p,
            "ratio": statistics.median(ratios), "ratios": ratios, "setup_warmup_s": warm_s}


def time_generator_steps(name: str, config: str, steps: int, args: argparse.Namespace) -> dict[str, Any]:
    """Wall time of `steps` steps of `Trainer.train` (for WGAN-GP one step = n_critic critic updates + 1 generator
    update), logging every args.log_every steps as a real run would, after `args.warmup` warm-up steps."""
    device = torch.device(args.device)
    trainer, _ = build(name, config, args)
    time_steps(trainer.train_step, args.warmup, device)
    trainer.recipe.train.max_steps = trainer.step + steps
    sync(device)
    start = time.perf_counter()
    trainer.train()  # the real loop: logging steps read the losses (and check them) every train.log_every steps
    sync(device)
    return {"model": name, "config": config, "switches": trainer.speed.summary(), "steps": steps,
            "seconds": time.perf_counter() - start}


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'model':<8} {'config':<14} {'trainer ms':>10} {'plain ms':>9} {'trainer img/s':>13} "
             f"{'plain img/s':>11} {'ratio':>6}  ratios per round"]
    for r in rows:
        lines.append(f"{r['model']:<8} {r['config']:<14} {r['trainer_ms']:>10.2f} {r['plain_ms']:>9.2f} "
                     f"{r['trainer_img_s']:>13.0f} {r['plain_img_s']:>11.0f} {r['ratio']:>6.3f}  "
                     + " ".join(f"{x:.3f}" for x in r["ratios"]))
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python benchmarks/bench.py", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="vae,dcgan,wgan_gp,ijae")
    p.add_argument("--configs", default="off,all", help=f"comma-separated, from {', '.join(CONFIGS)}")
    p.add_argument("--steps", type=positive_int, default=20, help="steps per timed block")
    p.add_argument("--rounds", type=positive_int, default=5, help="alternating blocks per side")
    p.add_argument("--warmup", type=nonnegative_int, default=5)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--width", type=nonnegative_int, default=0,
                   help="network width for every model (0: each model's default)")
    p.add_argument("--log-every", type=positive_int, default=50)
    p.add_argument("--precision", default="auto", choices=("auto", "no", "bf16"))
    p.add_argument("--compile-backend", default="", help="torch.compile backend (default inductor)")
    p.add_argument("--compile-mode", default="", help="torch.compile mode (default, reduce-overhead, ...)")
    p.add_argument("--device", type=device_name, default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=nonnegative_int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--gen-steps", type=nonnegative_int, default=0,
                   help="also time this many WGAN-GP steps of Trainer.train")
    p.add_argument("--gen-config", default="all", help="switch configuration of the --gen-steps run")
    p.add_argument("--json", default="", help="write the rows here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"batch={args.batch_size} steps={args.steps} rounds={args.rounds}", flush=True)
    rows = []
    for name in args.models.split(","):
        for config in args.configs.split(","):
            rows.append(bench(name, config, args))
            print(format_rows(rows[-1:]).splitlines()[-1], flush=True)
    print(format_rows(rows))
    out: dict[str, Any] = {"rows": rows}
    if args.gen_steps:
        out["generator_steps"] = time_generator_steps("wgan_gp", args.gen_config, args.gen_steps, args)
        g = out["generator_steps"]
        print(f"wgan_gp: {g['steps']} generator steps in {g['seconds']:.1f} s ({g['switches']})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
