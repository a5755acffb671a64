"""The AAE, AdversarialVB and VEEGAN sweep files expand to Rosca App. K's grids (Table 3, Table 6, latent sizes)."""
from __future__ import annotations

import itertools
from collections import Counter

from conftest import RECIPES
from zoo import load_recipe
from zoo.factory import expand_sweep

SWEEPS = RECIPES / "sweeps"


def resolved(name: str, *keys: str) -> dict[str, set[tuple]]:
    """Per recipe stem, the set of resolved values of the dotted `keys` over the sweep's points."""
    out: dict[str, set[tuple]] = {}
    for point in expand_sweep(SWEEPS / name):
        recipe = load_recipe(point.recipe, list(point.overrides))
        values = []
        for key in keys:
            section, *path = key.split(".")
            node = recipe.model.config if section == "model" else recipe.optim
            for part in path:
                node = node[part] if isinstance(node, dict) else getattr(node, part)
            values.append(node)
        out.setdefault(point.recipe.stem, set()).add(tuple(values))
    return out


def test_aae_sweep_is_table_3():
    points = expand_sweep(SWEEPS / "aae.yaml")
    assert Counter(p.recipe.stem for p in points) == {"aae_color_mnist": 27, "aae_celeba64": 9, "aae_cifar10": 9}
    assert len({p.name for p in points}) == len(points)
    grid = resolved("aae.yaml", "optim.autoencoder.lr", "optim.code_disc.lr", "model.latent_dim")
    lrs = set(itertools.product([1e-3, 5e-4, 5e-3], [5e-4, 5e-5, 1e-5]))
    assert grid["aae_color_mnist"] == {(*lr, d) for lr in lrs for d in (10, 50, 75)}
    assert grid["aae_cifar10"] == {(*lr, 100) for lr in lrs}


def test_veegan_sweep_is_table_3_and_the_table_6_widths_with_and_without_the_adversarial_reconstructor():
    grid = resolved("veegan.yaml", "optim.gen.lr", "optim.disc.lr", "model.joint_width",
                    "model.reconstructor_adversarial")
    expected = set(itertools.product([1e-3, 5e-4], [5e-5, 1e-4], [512, 1024], [True, False]))
    assert grid["veegan_celeba64"] == expected and grid["veegan_color_mnist"] == expected
    assert len(expand_sweep(SWEEPS / "veegan.yaml")) == 48 + 16 + 16


def test_adversarial_vb_sweep_covers_adaptive_contrast():
    grid = resolved("adversarial_vb.yaml", "optim.vae.lr", "optim.disc.lr", "model.adaptive_contrast")
    assert grid["adversarial_vb_cifar10"] == set(itertools.product([1e-3, 5e-4, 5e-3], [5e-5, 1e-4], [False, True]))
    assert len(expand_sweep(SWEEPS / "adversarial_vb.yaml")) == 36 + 12 + 12
