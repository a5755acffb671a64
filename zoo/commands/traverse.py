#!/usr/bin/env python
"""Latent traversal grid of a trained model with an encoder (Deasy et al. 2020, Fig. 4 and App. G).

    zoo traverse RUN_OR_CHECKPOINT [--out traversal.png] [--index 0 | --prior] [--steps 10] [--span 1.96]

Row d sweeps latent dimension d over `--steps` equidistant values in [-span, span] (default: the prior's central
95 %) while the other dimensions stay at the posterior mean of image `--index` of the recipe's dataset (`--split`),
or at 0 with `--prior`. The first column of the PNG is that reference image when one is used.
"""
from __future__ import annotations

import sys
from pathlib import Path


import torch
from einops import rearrange, repeat

from zoo.arguments import checkpoint_parser, nonnegative_int, open_checkpoint, positive_float, positive_int
from zoo.studies.traversal import PRIOR_95, latent_traversal


def main(argv: list[str] | None = None) -> int:
    parser = checkpoint_parser("zoo traverse", __doc__)
    parser.add_argument("--out", default="traversal.png", help="PNG to write")
    parser.add_argument("--index", type=nonnegative_int, default=0,
                        help="reference image whose posterior mean fixes the code")
    parser.add_argument("--prior", action="store_true", help="fix the other dimensions at the prior mean 0 instead")
    parser.add_argument("--split", default="test", help="split of the recipe's dataset holding the reference image")
    parser.add_argument("--steps", type=positive_int, default=10, help="values per dimension (10 in the paper)")
    parser.add_argument("--span", type=positive_float, default=PRIOR_95, help="sweep [-span, span]")
    parser.add_argument("--data-root", help="data folder (default: the recipe's data.root, else ZOO_DATA)")
    args = parser.parse_args(argv)

    from zoo.data import DatasetNotFoundError, load_dataset
    from zoo.data.stream import to_model_range
    from zoo.training.logging import save_grid

    loaded = open_checkpoint(args)
    if loaded is None:
        return 2
    model, recipe, step, path = loaded
    if not hasattr(model, "decode"):
        print(f"error: {type(model).__name__} has no decode(z); traversals need a VAE-family model", file=sys.stderr)
        return 2
    dim = model.config.latent_dim
    if args.prior:
        z0, reference = torch.zeros(dim), None
    else:
        try:
            data = load_dataset(recipe.data.name, args.split, args.data_root or recipe.data.root,
                                **{k: v for k, v in recipe.data.options.items() if k != "limit"})
        except (DatasetNotFoundError, ValueError) as err:
            print(f"error: {err} (or pass --prior to traverse around the prior mean)", file=sys.stderr)
            return 2
        reference = to_model_range(data[args.index].unsqueeze(0))  # (1, C, H, W)
        with torch.no_grad():
            z0 = model.encode(reference)[0]
    grid = latent_traversal(model, z0, args.steps, args.span)  # (D * steps, C, H, W)
    if reference is not None:  # the reference image at the start of every row
        rows = rearrange(grid, "(d s) c h w -> d s c h w", s=args.steps)
        rows = torch.cat([repeat(reference, "1 c h w -> d 1 c h w", d=dim), rows], 1)
        grid = rearrange(rows, "d s c h w -> (d s) c h w")
    save_grid(grid, Path(args.out), nrow=args.steps + (reference is not None))
    print(f"wrote {args.out}: {dim} latent dimensions x {args.steps} values in [-{args.span:.3g}, {args.span:.3g}] "
          f"({path}, step {step}; fixed code: {'prior mean' if args.prior else f'{args.split} image {args.index}'})")
    return 0
