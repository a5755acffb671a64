"""Trackers checked before a run directory is made: `train.loggers=[wandb]` without a W&B login logs offline.

Without an API key, `wandb.init` asks for one interactively, or (no terminal) fails with a long traceback, after
`zoo train` has already claimed the run directory: a stub run folder and no training. The zoo decides beforehand,
without touching the network: a key in WANDB_API_KEY or in the netrc file (where `wandb login` keeps it) means
online, as does an explicit WANDB_MODE; otherwise the run logs offline (WANDB_MODE=offline) and says so in one line.
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

DEFAULT_HOST = "https://api.wandb.ai"


class TrackerError(RuntimeError):
    """A tracker named in train.loggers cannot be used (not installed)."""


def wandb_key_found() -> bool:
    """Whether wandb would find an API key: WANDB_API_KEY, or the netrc entry of WANDB_BASE_URL's host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_HOST).netloc
    try:
        return bool(host and netrc.netrc(str(path)).authenticators(host))
    except (OSError, netrc.NetrcParseError):
        return False


def prepare_wandb(loggers: Sequence[str]) -> str | None:
    """Make a W&B run possible before anything is written; returns a note to print, or None.

    Raises TrackerError when wandb is named but not installed. Sets WANDB_MODE=offline in this process (and so in
    the processes it starts) when no login is found and WANDB_MODE is unset.
    """
    if "wandb" not in loggers:
        return None
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise TrackerError("train.loggers names wandb, which is not installed: pip install 'zoo[wandb]' (or wandb), "
                           "or drop wandb from train.loggers") from None
    if os.environ.get("WANDB_MODE") or wandb_key_found():
        return None
    os.environ["WANDB_MODE"] = "offline"
    return ("wandb: no login found (no WANDB_API_KEY, no netrc entry from `wandb login`): logging offline to "
            "<run>/wandb (WANDB_MODE=offline); upload later with `wandb sync`, or set WANDB_MODE=disabled to skip it")
