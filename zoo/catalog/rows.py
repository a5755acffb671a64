"""What reads of the catalog return: a Result (one stored result, long format) and a Row (one checkpoint with one
result per metric, wide format)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class CheckpointFields:
    """The checkpoint a Result or a Row is about, and its run: the fields both begin with, in this order."""

    checkpoint_id: int
    run: str
    model: str | None
    dataset: str | None
    step: int
    path: str
    sha256: str | None


@dataclass
class Result(CheckpointFields):
    """One stored result with its checkpoint and run (long format; tools/registry.py exports these)."""

    run_commit: str | None
    recipe_key: str | None  # the run's resolved config without train.seed: runs that differ only in seed share it
    train_seed: int | None
    metric: str
    value: float
    std: float | None
    spread: str | None
    n: int | None
    seed: int | None  # the evaluation seed
    protocol: dict[str, Any]
    protocol_id: str
    code_commit: str | None
    zoo_version: str | None
    complete: bool
    created_at: str
    metadata: dict[str, Any]
    n_seeds: int = 1  # > 1 for a mean over training seeds (`aggregate_seeds`)
    runs: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "std": self.std, "spread": self.spread, "n": self.n, "seed": self.seed,
                "n_seeds": self.n_seeds, "protocol_id": self.protocol_id, "protocol": self.protocol,
                "code_commit": self.code_commit, "zoo_version": self.zoo_version, "complete": self.complete,
                "created_at": self.created_at}


@dataclass
class Row(CheckpointFields):
    """One checkpoint (or a mean over training seeds) with one result per metric, each under one protocol."""

    git_commit: str | None
    results: dict[str, dict[str, Any]]  # metric -> Result.as_dict(): value, std, spread, protocol_id, protocol, ...
    n_seeds: int = 1

    def value(self, metric: str) -> float | None:
        return self.results[metric]["value"] if metric in self.results else None

    def protocol_id(self, metric: str) -> str | None:
        return self.results[metric]["protocol_id"] if metric in self.results else None
