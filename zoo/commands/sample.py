#!/usr/bin/env python
"""Export N samples of a trained model for external metric tools (torch-fidelity, clean-fid).

    zoo sample RUN_OR_CHECKPOINT -n 10000 --out samples/        # 000000.png, 000001.png, ...
    zoo sample RUN_OR_CHECKPOINT -n 10000 --out samples.npz     # arr_0: (N, H, W, 3) uint8
    fidelity --gpu 0 --fid --input1 samples/ --input2 cifar10-train

Seeded (`--seed`): the same checkpoint and seed give the same images. EMA weights are used where the run kept them.
An --out holding an earlier export is refused unless --overwrite, which replaces it whole; files and folders are
written under a temporary name and renamed, so an interrupted export leaves nothing half written at --out.
"""
from __future__ import annotations

import sys

from zoo.arguments import checkpoint_parser, device_name, open_checkpoint, positive_int, seed_int


def main(argv: list[str] | None = None) -> int:
    parser = checkpoint_parser("zoo sample", __doc__)
    parser.add_argument("-n", "--n-samples", type=positive_int, default=10000)
    parser.add_argument("--out", required=True, help="a folder (PNG files) or a .npz file")
    parser.add_argument("--seed", type=seed_int, default=0)
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--device", type=device_name,
                        default="cuda" if __import__("torch").cuda.is_available() else "cpu")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export at --out (whole)")
    args = parser.parse_args(argv)

    from zoo.generate import ExportExistsError, export_samples

    if args.n_samples < 1:
        print(f"error: -n must be >= 1, got {args.n_samples}", file=sys.stderr)
        return 2
    loaded = open_checkpoint(args, device=args.device)
    if loaded is None:
        return 2
    model, _, step, path = loaded
    try:
        out = export_samples(model, args.n_samples, args.out, batch_size=args.batch_size, seed=args.seed,
                             overwrite=args.overwrite)
    except ExportExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.n_samples} samples of {path} (step {step}, seed {args.seed}) to {out}")
    return 0
