#!/usr/bin/env python
"""Expand a sweep file (recipes/sweeps/*.yaml) into training runs: print the commands, or run them one by one.

    zoo sweep recipes/sweeps/vgh_rosca_app_k.yaml [--match vgh_plus_color] [--out-root runs/sweeps]
                          [--run] [key=value ...]

Each grid point is validated before anything is printed or run. Extra key=value overrides apply to every run (e.g.
train.max_steps=1000 for a short pass). With --run, runs that already hold checkpoints are resumed (--resume auto).
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path


from zoo.config import ConfigError
from zoo.factory import expand_sweep

TRAIN = ("-m", "zoo.cli", "train")  # `python -m zoo.cli train`: the `zoo train` of this interpreter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zoo sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="sweep file, e.g. recipes/sweeps/vgh_rosca_app_k.yaml")
    parser.add_argument("overrides", nargs="*", help="overrides applied to every run, e.g. train.max_steps=1000")
    parser.add_argument("--match", default="", help="keep only runs whose name contains this text")
    parser.add_argument("--out-root", default="runs/sweeps", help="run directories go to OUT_ROOT/<run name>")
    parser.add_argument("--run", action="store_true", help="run the commands in sequence instead of printing them")
    args = parser.parse_intermixed_args(argv)
    try:
        points = [p for p in expand_sweep(args.sweep) if args.match in p.name]
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not points:
        print(f"error: no run of {args.sweep} matches --match {args.match!r}", file=sys.stderr)
        return 2
    for point in points:
        out = Path(args.out_root) / point.name.replace("/", "-", 1)
        cmd = [sys.executable, *TRAIN, str(point.recipe), "--out", str(out), *point.overrides, *args.overrides]
        if not args.run:
            print(shlex.join(cmd))
            continue
        print(f"zoo sweep: {point.name}", flush=True)
        code = subprocess.call([*cmd, "--resume", "auto"])
        if code:
            print(f"error: run {point.name} exited with {code}; the sweep stopped (rerun to resume)", file=sys.stderr)
            return code
    if not args.run:
        print(f"# {len(points)} runs", file=sys.stderr)
    return 0
