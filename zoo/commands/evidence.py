#!/usr/bin/env python
"""Model evidence of a trained VAE-family model: Monte-Carlo log p(x) with a bootstrapped 95 % interval
(Deasy et al. 2020, Fig. 5; protocol in zoo/studies/evidence.py).

    zoo evidence RUN_OR_CHECKPOINT [--split test] [--batches 100] [--samples 100]
                             [--proposal posterior|prior] [--resamples 1000] [--limit N] [--json result.json]

The split is cut into --batches equal batches; each batch's mean estimated log p(x) (nats per image, K = --samples
importance samples from the proposal) is one value, and the interval is the percentile bootstrap of their mean over
--resamples resamples.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from zoo.arguments import checkpoint_parser, open_checkpoint, positive_int, seed_int


def main(argv: list[str] | None = None) -> int:
    parser = checkpoint_parser("zoo evidence", __doc__)
    parser.add_argument("--split", default="test")
    parser.add_argument("--batches", type=positive_int, default=100, help="batches of the split (100 in the paper)")
    parser.add_argument("--samples", type=positive_int, default=100, help="importance samples per image")
    parser.add_argument("--proposal", choices=("posterior", "prior"), default="posterior")
    parser.add_argument("--resamples", type=positive_int, default=1000, help="bootstrap resamples (1000 in the paper)")
    parser.add_argument("--limit", type=positive_int, help="use only the first N images of the split")
    parser.add_argument("--seed", type=seed_int, default=0)
    parser.add_argument("--data-root", help="data folder (default: the recipe's data.root, else ZOO_DATA)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)

    from zoo.data import DatasetNotFoundError, load_dataset
    from zoo.studies.evidence import evidence_estimate

    loaded = open_checkpoint(args)
    if loaded is None:
        return 2
    model, recipe, step, path = loaded
    try:
        data = load_dataset(recipe.data.name, args.split, args.data_root or recipe.data.root,
                            **{k: v for k, v in recipe.data.options.items() if k != "limit"})
    except DatasetNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not (hasattr(model, "posterior") and hasattr(model, "log_px_given_z")):
        print(f"error: {type(model).__name__} has no posterior / log_px_given_z; the evidence estimate needs an "
              f"explicit likelihood (the VAE family)", file=sys.stderr)
        return 2
    try:
        result = evidence_estimate(model, data, n_batches=args.batches, n_samples=args.samples,
                                   proposal=args.proposal, n_resamples=args.resamples, limit=args.limit,
                                   seed=args.seed)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result.update(checkpoint=str(path), step=step, split=args.split)
    print(f"log p(x) = {result['mean']:.2f} nats per image, 95 % interval [{result['low']:.2f}, {result['high']:.2f}] "
          f"({args.split}: {result['n_batches']} batches of {result['batch_size']}, {args.samples} {args.proposal} "
          f"samples per image, {args.resamples} bootstrap resamples; {path}, step {step})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0
