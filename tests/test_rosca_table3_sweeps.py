"""The VAE, DCGAN and WGAN-GP sweep files expand to Rosca et al. 2018 App. K Table 3 grids (latent sizes 10 / 50 / 75
on ColorMNIST) and the section-3 VAE study, every point a valid recipe."""
from __future__ import annotations

import itertools
from collections import Counter

import pytest

from conftest import RECIPES
from test_hybrid_sweeps import resolved
from zoo.factory import expand_sweep

SWEEPS = RECIPES / "sweeps"
VAE_LRS = [1e-3, 5e-4, 5e-3]  # Table 3, VAE column
GAN_LRS = [1e-4, 2e-4, 3e-4]  # Table 3, "DCGAN WGAN-GP" column, both rows
LATENTS = (10, 50, 75)  # App. K, ColorMNIST


def test_vae_sweep_is_table_3():
    points = expand_sweep(SWEEPS / "vae.yaml")
    assert Counter(p.recipe.stem for p in points) == {"vae_color_mnist": 9, "vae_celeba64": 3, "vae_cifar10": 3}
    assert len({p.name for p in points}) == len(points)
    grid = resolved("vae.yaml", "optim.vae.lr", "model.latent_dim")
    assert grid["vae_color_mnist"] == set(itertools.product(VAE_LRS, LATENTS))
    assert grid["vae_celeba64"] == grid["vae_cifar10"] == {(lr, 100) for lr in VAE_LRS}


@pytest.mark.parametrize("model,disc", [("dcgan", "disc"), ("wgan_gp", "critic")])
def test_gan_sweeps_are_table_3(model, disc):
    points = expand_sweep(SWEEPS / f"{model}.yaml")
    assert Counter(p.recipe.stem for p in points) == {f"{model}_color_mnist": 27, f"{model}_celeba64": 9,
                                                      f"{model}_cifar10": 9}
    assert len({p.name for p in points}) == len(points)
    grid = resolved(f"{model}.yaml", "optim.gen.lr", f"optim.{disc}.lr", "model.latent_dim")
    lrs = set(itertools.product(GAN_LRS, GAN_LRS))
    assert grid[f"{model}_color_mnist"] == {(*lr, d) for lr in lrs for d in LATENTS}
    assert grid[f"{model}_cifar10"] == grid[f"{model}_celeba64"] == {(*lr, 100) for lr in lrs}
    if model == "wgan_gp":  # App. K: 5 critic updates per generator update, penalty 10, in every run
        assert resolved("wgan_gp.yaml", "model.n_critic", "model.gp_weight")["wgan_gp_cifar10"] == {(5, 10.0)}


def test_section3_vae_sweep():
    grid = resolved("vae_rosca_section3.yaml", "optim.vae.lr", "model.latent_dim", "model.posterior",
                    "model.likelihood")
    assert len(expand_sweep(SWEEPS / "vae_rosca_section3.yaml")) == 24
    assert set(grid) == {f"vae_{d}_160{v}" for d in ("color_mnist", "celeba64", "cifar10") for v in ("", "_realnvp")} \
        | {"vae_cifar10_160_quantized_normal", "vae_cifar10_160_categorical"}
    assert grid["vae_celeba64_160_realnvp"] == {(lr, 160, "realnvp", "bernoulli") for lr in VAE_LRS}
    assert grid["vae_cifar10_160_categorical"] == {(lr, 160, "gaussian", "categorical") for lr in VAE_LRS}
