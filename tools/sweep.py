#!/usr/bin/env python
"""Expand a sweep file to its training runs: print one command per run, or run them one after the other.

    python tools/sweep.py recipes/sweeps/aae.yaml                      # list the commands (for a job scheduler)
    python tools/sweep.py recipes/sweeps/aae.yaml --only aae_color_mnist --run --out runs/sweeps
    python tools/sweep.py recipes/sweeps/veegan.yaml --launcher "accelerate launch --multi_gpu --num_processes 2"

Each run trains into <out>/<run name> and resumes there (`--resume auto`), so an interrupted sweep restarted with
the same arguments continues where it stopped. Sweep file format: zoo/sweep.py.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from zoo.config import ConfigError  # noqa: E402
from zoo.sweep import load_sweep  # noqa: E402

TRAIN = Path(__file__).resolve().parent / "train.py"


def commands(sweep: str, out: str, launcher: str, only: str | None, extra: list[str]) -> list[list[str]]:
    """One argv per run of `sweep` (restricted to recipes whose stem is `only`), with `extra` overrides last."""
    runs = [r for r in load_sweep(sweep) if only is None or r.recipe_path.stem == only]
    if not runs:
        raise ConfigError(f"{sweep}: no run uses a recipe named {only!r}")
    return [[*shlex.split(launcher), str(TRAIN), str(r.recipe_path), *r.overrides, *extra,
             "--out", str(Path(out) / r.name), "--resume", "auto"] for r in runs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="sweep file, e.g. recipes/sweeps/aae.yaml")
    parser.add_argument("overrides", nargs="*", help="overrides added to every run, e.g. train.max_steps=1000")
    parser.add_argument("--out", default="runs/sweeps", help="parent folder of the run directories")
    parser.add_argument("--launcher", default=sys.executable, help="command that runs tools/train.py")
    parser.add_argument("--only", help="only the runs of this recipe (file stem, e.g. aae_color_mnist)")
    parser.add_argument("--run", action="store_true", help="run the commands one after the other, stop on a failure")
    args = parser.parse_intermixed_args(argv)
    try:
        argvs = commands(args.sweep, args.out, args.launcher, args.only, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for i, cmd in enumerate(argvs, 1):
        print(shlex.join(cmd), flush=True)
        if args.run:
            code = subprocess.call(cmd)
            if code:
                print(f"error: run {i}/{len(argvs)} exited with {code}; later runs were not started", file=sys.stderr)
                return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
