"""Shared fixtures: the tiny recipes, an in-memory image dataset, and the read-only ../shared inputs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from zoo.config import load_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
SHARED = Path(os.environ.get("ZOO_SHARED", REPO.parent / "shared"))


class RandomImages(torch.utils.data.Dataset):
    """n seeded random uint8 images of `shape`, offered whole like the small real datasets."""

    def __init__(self, n: int, shape: tuple[int, ...], seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.data = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
        self.shape = shape

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.data[i]

    def as_uint8_tensor(self) -> torch.Tensor:
        return self.data


def tiny_recipe(model: str, overrides: list[str] | None = None):
    """The model's tiny CPU recipe with logging, sampling and checkpointing turned off unless overridden."""
    quiet = ["train.progress=false", "train.tensorboard=false", "train.sample_every=0", "train.checkpoint_every=0"]
    return load_recipe(RECIPES / f"tiny_{model}.yaml", quiet + (overrides or []))


def data_shape(recipe) -> tuple[int, int, int]:
    m = recipe.model
    return (m["channels"], m["image_size"], m["image_size"])


@pytest.fixture
def shared_data() -> Path:
    path = SHARED / "data"
    if not (path / "MNIST" / "raw").is_dir():
        pytest.skip(f"the shared offline data is not at {path} (set ZOO_SHARED to the shared/ folder)")
    return path
