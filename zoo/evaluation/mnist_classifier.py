"""The MNIST digit classifier the `modes` metric reads stacked-MNIST samples with, trained from
`recipes/classifiers/mnist_classifier.yaml` by `zoo train_mnist_classifier`.

It is an evaluation instrument, kept out of the generative model registry. Network: conv 5x5 (width) -> ReLU ->
max-pool 2 -> conv 5x5 (2 width) -> ReLU -> max-pool 2 -> linear 128 -> ReLU -> linear 10, on 28x28 images in
[-1, 1]. Weights are written as safetensors with the width, steps and test accuracy in the metadata.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from zoo.config import apply_overrides, from_dict, read_yaml
from zoo.data import load_dataset
from zoo.evaluation.core import EvaluationError
from zoo.evaluation.functional import accuracy


@dataclass
class ClassifierRecipe:
    """How the classifier is trained (the YAML schema of recipes/classifiers/*.yaml)."""

    dataset: str = "mnist"
    root: str | None = None  # data root; else ZOO_DATA, else the user cache
    width: int = 32
    batch_size: int = 64
    steps: int = 3000
    lr: float = 1.0e-3
    seed: int = 0
    train_limit: int | None = None  # first n training images (tests)
    test_limit: int | None = None


class MNISTClassifier(nn.Module):
    """(B, 1, H, W) uint8 digits -> (B, 10) logits; other sizes are resized to 28x28."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.width = width
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, w, 14, 14)
            nn.Conv2d(width, 2 * width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 2w, 7, 7)
            nn.Flatten(), nn.Linear(2 * width * 49, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, images: Tensor) -> Tensor:
        x = images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images.float()
        if x.shape[-2:] != (28, 28):
            x = F.interpolate(x, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
        return self.net(x)


def load_classifier_recipe(path: str | Path, overrides: list[str] | None = None) -> ClassifierRecipe:
    return from_dict(ClassifierRecipe, apply_overrides(read_yaml(path), overrides or []))


def _split(recipe: ClassifierRecipe, split: str, limit: int | None) -> tuple[Tensor, Tensor]:
    ds = load_dataset(recipe.dataset, split, recipe.root, limit=limit)
    return ds.as_uint8_tensor(), ds.targets


@torch.no_grad()
def evaluate_classifier(net: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    net.eval()
    logits = torch.cat([net(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    return accuracy(logits, labels)


def train_mnist_classifier(recipe: ClassifierRecipe, out: str | Path | None = None, progress: bool = False
                           ) -> tuple[MNISTClassifier, dict[str, Any]]:
    """Train with Adam and cross-entropy on shuffled batches (a fresh seeded permutation per epoch), report the test
    accuracy, and write safetensors to `out` when given. Returns the network and a summary."""
    torch.manual_seed(recipe.seed)
    images, labels = _split(recipe, "train", recipe.train_limit)
    net = MNISTClassifier(recipe.width)
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    g = torch.Generator().manual_seed(recipe.seed)
    order, position, start = torch.randperm(len(images), generator=g), 0, time.time()
    net.train()
    for _ in tqdm(range(recipe.steps), desc="mnist classifier", disable=not progress):
        if position + recipe.batch_size > len(order):
            order, position = torch.randperm(len(images), generator=g), 0
        idx = order[position:position + recipe.batch_size]
        position += recipe.batch_size
        loss = F.cross_entropy(net(images[idx]), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    test_images, test_labels = _split(recipe, "test", recipe.test_limit)
    summary = {"test_accuracy": evaluate_classifier(net, test_images, test_labels), "steps": recipe.steps,
               "width": recipe.width, "seconds": round(time.time() - start, 1), "recipe": asdict(recipe)}
    if out is not None:
        save_classifier(net, out, summary)
    return net.eval(), summary


def save_classifier(net: MNISTClassifier, path: str | Path, summary: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"width": str(net.width), "test_accuracy": f"{summary['test_accuracy']:.6f}",
            "steps": str(summary["steps"])}
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=meta)


def load_mnist_classifier(path: str | Path) -> tuple[MNISTClassifier, dict[str, str]]:
    """The classifier at `path` (eval mode) and its metadata (width, test_accuracy, steps)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        state = load_file(str(path))
    except Exception as err:  # noqa: BLE001 - safetensors raises several types
        raise EvaluationError(f"cannot read the MNIST classifier {str(path)!r}: {err}; train one with "
                              f"zoo train_mnist_classifier") from None
    net = MNISTClassifier(int(meta.get("width", 32)))
    net.load_state_dict(state, strict=True)
    return net.eval(), meta
