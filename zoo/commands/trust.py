"""The preamble of every command that loads one run folder (sample, traverse, interpolate, evidence, latent_analysis):
its `checkpoint` argument, the `--trust-imports` switch, and loading it with one error line instead of a traceback.

A run folder's config.yaml may list modules to import (a model defined outside the package); importing them runs
their code, so a command imports them only when told to (see zoo/imports.py). `zoo evaluate` takes several sources
and uses `add_trust_imports` alone.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from zoo.commands.argtypes import ArgumentParser


def add_trust_imports(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-imports", action="store_true",
                        help="import the modules the run's config.yaml lists under `imports:` (a model defined "
                             "outside the package). Their code runs: use it for run folders you trust only. Modules "
                             "imported already (the zoo's, installed plugins, --import) need no trust")


def checkpoint_parser(prog: str, doc: str | None) -> ArgumentParser:
    """A command's parser with its run folder argument and --trust-imports already added."""
    parser = ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a run directory (its latest checkpoint) or a checkpoint directory")
    add_trust_imports(parser)
    return parser


def open_checkpoint(args: argparse.Namespace, device: Any = None) -> Any | None:
    """`load_checkpoint(args.checkpoint)` as the command's user asked (trust, device); None after printing the one
    error line when the folder cannot be loaded (the command then returns 2)."""
    from zoo.factory import load_checkpoint
    from zoo.training.checkpoint import CheckpointError

    try:
        return load_checkpoint(args.checkpoint, trust_imports=args.trust_imports,
                               **({"device": device} if device is not None else {}))
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
