"""`--trust-imports`, the one switch of every command that loads a run folder (sample, evaluate, traverse, ...).

A run folder's config.yaml may list modules to import (a model defined outside the package); importing them runs
their code, so a command imports them only when told to (see zoo/imports.py).
"""
from __future__ import annotations

import argparse


def add_trust_imports(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-imports", action="store_true",
                        help="import the modules the run's config.yaml lists under `imports:` (a model defined "
                             "outside the package). Their code runs: use it for run folders you trust only. Modules "
                             "imported already (the zoo's, installed plugins, --import) need no trust")
