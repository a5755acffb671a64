"""The paper recipes of the Rosca et al. hybrids build the App. K networks at full size and run every phase."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import RECIPES, data_shape
from zoo import build_model, load_recipe

PAPER = sorted(p.name for m in ("aae", "adversarial_vb", "veegan") for p in RECIPES.glob(f"{m}_*.yaml"))
SHAPES = {"color_mnist": (3, 28, 28), "celeba64": (3, 64, 64), "cifar10": (3, 32, 32)}


def test_each_model_has_its_three_dataset_recipes():
    for model in ("aae", "adversarial_vb", "veegan"):
        for dataset in SHAPES:
            assert f"{model}_{dataset}.yaml" in PAPER
    assert len(PAPER) == 13  # + the three adaptive-contrast AdversarialVB variants and VEEGAN's Algorithm 1 one


def test_veegan_recipes_train_the_reconstructor_adversarially_but_the_alg1_variant():
    for name in PAPER:
        if name.startswith("veegan_"):
            recipe = load_recipe(RECIPES / name)
            assert recipe.model.config.reconstructor_adversarial is (not name.endswith("_alg1.yaml")), name
    alg1, working = (load_recipe(RECIPES / f"veegan_color_mnist{s}.yaml") for s in ("_alg1", ""))
    assert dataclasses.replace(alg1.model.config, reconstructor_adversarial=True) == working.model.config
    assert alg1.optim == working.optim and alg1.data == working.data and alg1.train == working.train


@pytest.mark.parametrize("name", PAPER)
def test_paper_recipe_builds_and_runs_every_phase(name, one_thread):
    recipe = load_recipe(RECIPES / name)
    assert recipe.data.batch_size == 64 and all(o.betas == (0.5, 0.9) for o in recipe.optim.values())  # App. K
    assert data_shape(recipe) == SHAPES[recipe.data.name]
    assert recipe.train.max_steps == (100000 if recipe.data.name == "color_mnist" else 200000)
    torch.manual_seed(0)
    model = build_model(recipe)
    x = torch.rand(2, *data_shape(recipe)) * 2 - 1
    for phase in model.phases():
        with torch.no_grad():
            out = model.phase_loss(phase.name, x, step=0)
        assert out.loss.shape == () and torch.isfinite(out.loss)
