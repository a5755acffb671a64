#!/usr/bin/env python
"""Train a model from a recipe.

    accelerate launch -m zoo.cli train recipes/tiny_vae.yaml [--out runs/x] [--resume auto|PATH] [train.max_steps=20]

Plain `zoo train ...` works too (one process). The run directory gets config.yaml (the resolved recipe),
metrics.jsonl, tb/ (TensorBoard), samples/ and reconstructions/ (PNG grids) and checkpoints/step_XXXXXXXX/. The run
and its checkpoints are recorded in the registry table (runs/registry.sqlite, or ZOO_REGISTRY; see zoo/catalog.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


from zoo.config import ConfigError
from zoo.factory import load_recipe
from zoo.training.checkpoint import CheckpointError, checkpoint_dirs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="zoo train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="YAML recipe, e.g. recipes/tiny_vae.yaml")
    parser.add_argument("overrides", nargs="*", help="typed overrides KEY=VALUE, e.g. train.max_steps=20")
    parser.add_argument("--out", help="run directory (default: runs/<recipe name>)")
    parser.add_argument("--resume", help="'auto' (latest checkpoint in --out, if any) or a checkpoint / run path")
    return parser.parse_intermixed_args(argv)  # overrides may come before or after the options


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        recipe = load_recipe(args.recipe, args.overrides)
    except ConfigError as err:
        print(f"error: {args.recipe}: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("runs") / Path(args.recipe).stem
    existing = checkpoint_dirs(out)
    if existing and args.resume is None:
        print(f"error: {out} already holds checkpoints (latest {existing[-1].name}); pass --resume auto to continue "
              f"it, or --out to start a new run elsewhere (nothing was overwritten)", file=sys.stderr)
        return 2

    from zoo.factory import create_model
    from zoo.training import NonFiniteLossError, Trainer

    from zoo.data import DatasetNotFoundError

    try:
        trainer = Trainer(create_model(recipe), recipe, out)
    except (ConfigError, DatasetNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from zoo.catalog import record_training
    if trainer.is_main:
        record_training(out, args.recipe)  # the registry table; a failure only warns
    if args.resume is not None:
        source = out if args.resume == "auto" else Path(args.resume)
        if args.resume != "auto" or existing:
            try:
                ckpt = trainer.resume(source)
            except CheckpointError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            if trainer.is_main:
                print(f"zoo: resumed from {ckpt} at step {trainer.step}")
    try:
        final = trainer.train()
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    finally:
        if trainer.is_main:
            record_training(out, args.recipe)  # the checkpoints written, including the last good one
    if trainer.is_main:
        summary = ", ".join(f"{k}={v:.4g}" for k, v in final.items() if not k.startswith("lr/"))
        print(f"zoo: finished {trainer.step} steps in {out}: {summary}")
    return 0
