#!/usr/bin/env python
"""Latent interpolation grids of a trained model (linear or spherical; see zoo/generate.py).

    zoo interpolate RUN_OR_CHECKPOINT [--out interpolation.png] [--method slerp|lerp] [--steps 8] [--pairs 4]
        [--prior] [--seed 0] [--split test]

Row b goes from code z_a to code z_b in `--steps` steps, both ends included. Models with an encoder interpolate
between the posterior means of test images 2b and 2b + 1 of the recipe's dataset, shown at both ends of the row;
`--prior` (and models without an encoder) interpolate between seeded prior draws.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from einops import rearrange

from zoo.arguments import checkpoint_parser, open_checkpoint, positive_int, seed_int
from zoo.generate import METHODS, interpolate


def main(argv: list[str] | None = None) -> int:
    parser = checkpoint_parser("zoo interpolate", __doc__)
    parser.add_argument("--out", default="interpolation.png", help="PNG grid to write")
    parser.add_argument("--method", choices=METHODS, default="slerp")
    parser.add_argument("--steps", type=positive_int, default=8, help="codes per row, both endpoints included")
    parser.add_argument("--pairs", type=positive_int, default=4, help="rows")
    parser.add_argument("--prior", action="store_true", help="endpoints drawn from the prior, not encoded images")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the prior draws")
    parser.add_argument("--split", default="test", help="split of the recipe's dataset holding the endpoint images")
    parser.add_argument("--data-root", help="data folder (default: the recipe's data.root, else ZOO_DATA)")
    args = parser.parse_args(argv)

    from zoo.data import DatasetNotFoundError, load_dataset
    from zoo.data.stream import to_model_range
    from zoo.training.logging import save_grid

    loaded = open_checkpoint(args)
    if loaded is None:
        return 2
    model, recipe, step, path = loaded
    if args.steps < 2 or args.pairs < 1:
        print(f"error: --steps must be >= 2 and --pairs >= 1, got {args.steps} and {args.pairs}", file=sys.stderr)
        return 2
    ends = None
    if model.has_encoder and not args.prior:
        try:
            data = load_dataset(recipe.data.name, args.split, args.data_root or recipe.data.root,
                                **{k: v for k, v in recipe.data.options.items() if k != "limit"})
        except (DatasetNotFoundError, ValueError) as err:
            print(f"error: {err} (or pass --prior to interpolate between prior draws)", file=sys.stderr)
            return 2
        x = to_model_range(torch.stack([data[i] for i in range(2 * args.pairs)]))  # (2P, C, H, W)
        with torch.no_grad():
            z = model.encode(x)
        z0, z1, ends = z[0::2], z[1::2], (x[0::2], x[1::2])
    else:
        generator = torch.Generator().manual_seed(args.seed)
        z0, z1 = (model.prior(args.pairs, model.config.latent_dim, generator) for _ in range(2))
    grid = interpolate(model, z0, z1, args.steps, args.method)
    grid = rearrange(grid, "(p s) c h w -> p s c h w", p=args.pairs)
    if ends is not None:  # the real images beside the decoded endpoints
        grid = torch.cat([ends[0][:, None], grid, ends[1][:, None]], 1)
    save_grid(rearrange(grid, "p s c h w -> (p s) c h w"), Path(args.out), nrow=grid.shape[1])
    what = f"{args.split} images" if ends is not None else f"prior draws (seed {args.seed})"
    print(f"wrote {args.out}: {args.pairs} {args.method} interpolations x {args.steps} steps between {what} "
          f"({path}, step {step})")
    return 0

