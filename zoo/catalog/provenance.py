"""Where a result came from: the code's commit, the checkpoint's weights hash, and the run's recipe and training
seed (read from its resolved config)."""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from zoo import yaml_limits


def git_commit(repo: str | Path | None = None) -> str | None:
    """HEAD of the checkout holding `repo` (default: this package), with "-dirty" when files differ; None without
    git."""
    cwd = Path(repo) if repo else Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True,
                               text=True, timeout=10)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def checkpoint_sha256(ckpt: str | Path) -> str:
    """sha256 over the checkpoint's weights: model.safetensors, then ema.safetensors when present."""
    from zoo.training.checkpoint import EMA_WEIGHTS, WEIGHTS  # here: the catalog commands need no torch
    digest = hashlib.sha256()
    for name in (WEIGHTS, EMA_WEIGHTS):
        path = Path(ckpt) / name
        if path.is_file():
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def recipe_key(config: str | None) -> str | None:
    """A hash of a run's resolved config without `train.seed` and the `eval` section: runs of one recipe that differ
    only in seed share it (the eval section names what to measure, not what was trained: an older run folder's config
    with the former eval keys, or none, still groups with today's runs of its recipe)."""
    if not config:
        return None
    tree = yaml_limits.load(config) or {}
    (tree.get("train") or {}).pop("seed", None)
    tree.pop("eval", None)
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:12]


def train_seed(config: str | None) -> int | None:
    seed = ((yaml_limits.load(config) or {}).get("train") or {}).get("seed") if config else None
    return None if seed is None else int(seed)
