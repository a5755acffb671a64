"""Command-line arguments shared by the commands and the paper studies (below both, so neither imports the other).

Checked argparse types: a value out of range is one argparse error line naming the option and its valid range
(exit 2), never a traceback or a nonsense run.

    p.add_argument("--batch-size", type=positive_int)  # "zoo sample: error: argument --batch-size: got 0, expected
                                                       #  an integer >= 1"
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from typing import Any

SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed takes at most a signed 64-bit value; seeds stay in [0, 2^63 - 1]


def _int(text: str, expected: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected {expected}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, batch sizes, steps)."""
    value = _int(text, "an integer >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"got {value}, expected an integer >= 1")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (an index, or a count where 0 means 'none' / 'auto')."""
    value = _int(text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"got {value}, expected an integer >= 0")
    return value


def seed_int(text: str) -> int:
    """A random seed in [0, 2^63 - 1]."""
    value = _int(text, f"an integer seed in [0, {SEED_MAX}]")
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"got {value}, expected an integer seed in [0, {SEED_MAX}] (2^63 - 1)")
    return value


def seed_list(text: str) -> list[int]:
    """Comma-separated seeds, each in [0, 2^63 - 1] (`seed_int`)."""
    try:
        return [seed_int(v.strip()) for v in text.split(",") if v.strip()]
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"{err} (comma-separated seeds such as 0,1,2)") from None


def finite_float(text: str) -> float:
    """A finite number (no inf, no nan)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a finite number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"got {text}, expected a finite number")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (a learning rate, a width, a time budget)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"got {text}, expected a finite number > 0")
    return value


_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


def device_name(text: str) -> str:
    """A torch device this machine has: cpu, cuda, cuda:N (N below the GPU count) or mps."""
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"got {text!r}, expected cpu, cuda, cuda:N or mps")
    if text.startswith("cuda"):
        import torch
        count = torch.cuda.device_count()
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= count:
            have = f"{count} CUDA device(s) (cuda:0..cuda:{count - 1})" if count else "no CUDA device"
            raise argparse.ArgumentTypeError(f"got {text!r}, but this machine has {have}; use cpu")
    if text == "mps":
        import torch
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError("got 'mps', but MPS is not available on this machine; use cpu")
    return text


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error: `zoo sample: error: argument --batch-size: got 0, expected an integer >= 1
    (zoo sample --help shows the options)`, exit 2; the usage block argparse prints first buried that line."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help shows the options)\n")

# ---- the preamble of the commands that load one run folder (sample, traverse, interpolate, evidence, latent_analysis):
# its `checkpoint` argument, the `--trust-imports` switch, and loading it with one error line instead of a traceback.
# A run folder's config.yaml may list modules to import (a model defined outside the package); importing them runs
# their code, so a command imports them only when told to (see zoo/imports.py). `zoo evaluate` takes several sources
# and uses `add_trust_imports` alone.


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
    from zoo.factory import load_checkpoint  # after parsing: a usage error or --help needs no torch
    from zoo.training.checkpoint import CheckpointError

    try:
        return load_checkpoint(args.checkpoint, trust_imports=args.trust_imports,
                               **({"device": device} if device is not None else {}))
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
