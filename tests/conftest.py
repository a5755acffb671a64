"""Shared fixtures: the tiny recipes, an in-memory image dataset, and the read-only ../shared inputs."""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest
import torch

import procs
from zoo.data import TensorImages
from zoo.factory import load_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
BENCHMARKS = REPO / "benchmarks"
SHARED = Path(os.environ.get("ZOO_SHARED", REPO.parent / "shared"))
# `python LAUNCH_TWO ...` runs a script as two processes. accelerate's `--cpu --num_processes 2` starts one unless an
# MPI hostfile is configured; the torchrun launcher (--multi_gpu) starts two, which the trainer turns into a gloo CPU
# job when there is no CUDA.
LAUNCH_TWO = ("-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a tool started as a subprocess: this one, plus the checkout on PYTHONPATH (an editable
    install does not need it; a bare checkout does, since the tools add nothing to sys.path) and `extra`."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def benchmark(name: str):
    """A script of benchmarks/ as a module. They import each other as siblings (as `python benchmarks/X.py` does), so
    their folder goes on sys.path; the zoo package never imports them."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def RandomImages(n: int, shape: tuple[int, ...], seed: int = 0) -> TensorImages:
    """n seeded random uint8 images of `shape`, offered whole like the small real datasets."""
    g = torch.Generator().manual_seed(seed)
    return TensorImages(torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8), name="random")


def tiny_recipe(model: str, overrides: list[str] | None = None):
    """The model's tiny CPU recipe with logging, sampling and checkpointing turned off unless overridden."""
    quiet = ["train.progress=false", "train.tensorboard=false", "train.sample_every=0", "train.checkpoint_every=0"]
    return load_recipe(RECIPES / f"tiny_{model}.yaml", quiet + (overrides or []))


def train_until(trainer, measure, reached, *, every: int, max_steps: int):
    """Train in chunks of `every` steps until `reached(measure())` holds or `max_steps` are done; returns (steps,
    last measurement). Quality tests assert a property that every build reaches within a generous cap (a
    convergence criterion), not the value one torch build happens to have after a fixed number of steps: kernels
    and initialisation order differ between releases."""
    trainer.begin()
    value = measure()
    while not reached(value) and trainer.step < max_steps:
        for _ in range(min(every, max_steps - trainer.step)):
            trainer.train_step()
        value = measure()
    return trainer.step, value


def data_shape(recipe) -> tuple[int, int, int]:
    m = recipe.model.config
    return (m.channels, m.image_size, m.image_size)


@pytest.fixture(autouse=True)
def _no_orphans():
    """Every process a test started through `procs` is killed, with its group, when the test ends (also on failure
    and Ctrl-C)."""
    yield
    procs.kill_all()


@pytest.fixture(autouse=True)
def _own_catalog(tmp_path, monkeypatch):
    """Every test (and every tool it starts) records runs in its own catalog, never in runs/catalog.sqlite; the
    deprecated ZOO_REGISTRY is unset so that it cannot stand in."""
    monkeypatch.setenv("ZOO_CATALOG", str(tmp_path / "catalog.sqlite"))
    monkeypatch.delenv("ZOO_REGISTRY", raising=False)


@pytest.fixture(autouse=True)
def _own_eval_cache(tmp_path, monkeypatch):
    """Every test caches reference statistics in its own folder and starts with an empty in-process cache."""
    from zoo.evaluation import sampling
    monkeypatch.setenv("ZOO_EVAL_CACHE", str(tmp_path / "eval-cache"))
    monkeypatch.setattr(sampling, "_REFERENCES", {})


@pytest.fixture
def shared_data() -> Path:
    path = SHARED / "data"
    if not (path / "MNIST" / "raw").is_dir():
        pytest.skip(f"the shared offline data is not at {path} (set ZOO_SHARED to the shared/ folder)")
    return path


@pytest.fixture
def one_thread():
    """One intra-op thread for a training-heavy test: on a shared 2-core machine torch's two threads spin against each
    other and other processes (a tiny AAE step measured 0.02 s CPU with one thread, 1.2 s with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
