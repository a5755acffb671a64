"""Sweep files expand to the paper's grids (Rosca App. K Table 3), fail early on bad keys, and tools/sweep.py runs them."""
from __future__ import annotations

import itertools
import sys

import pytest

from conftest import RECIPES, REPO
from zoo.config import ConfigError
from zoo.sweep import load_sweep

sys.path.insert(0, str(REPO / "tools"))
import sweep as sweep_tool  # noqa: E402

SWEEPS = RECIPES / "sweeps"


def grid_of(runs, recipe: str, *keys: str) -> set[tuple]:
    """The resolved values of `keys` (dotted, into the recipe) over the runs of one recipe."""
    def value(r, key):
        section, *rest = key.split(".")
        node = getattr(r, section)
        for part in rest:
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        return node
    return {tuple(value(run.recipe(), k) for k in keys) for run in runs if run.recipe_path.stem == recipe}


def test_aae_sweep_is_table_3():
    runs = load_sweep(SWEEPS / "aae.yaml")
    assert len(runs) == 27 and len({r.name for r in runs}) == 27
    for dataset in ("color_mnist", "celeba64", "cifar10"):
        assert grid_of(runs, f"aae_{dataset}", "optim.autoencoder.lr", "optim.code_disc.lr") == \
            set(itertools.product([1e-3, 5e-4, 5e-3], [5e-4, 5e-5, 1e-5]))


def test_veegan_sweep_is_table_3_and_the_table_6_widths():
    runs = load_sweep(SWEEPS / "veegan.yaml")
    assert len(runs) == 24
    assert grid_of(runs, "veegan_cifar10", "optim.gen.lr", "optim.disc.lr", "model.joint_width") == \
        set(itertools.product([1e-3, 5e-4], [5e-5, 1e-4], [512, 1024]))


def test_adversarial_vb_sweep_covers_adaptive_contrast():
    runs = load_sweep(SWEEPS / "adversarial_vb.yaml")
    assert len(runs) == 36
    assert {v for (v,) in grid_of(runs, "adversarial_vb_celeba64", "model.adaptive_contrast")} == {False, True}


def test_bad_sweeps_fail_naming_the_problem(tmp_path):
    def sweep(text: str):
        path = tmp_path / "s.yaml"
        path.write_text(text)
        return load_sweep(path)

    with pytest.raises(ConfigError, match=r"grid.optim.nope.lr: tiny_aae.yaml has no optimizer 'nope'; "
                                         r"its optimizers: autoencoder, code_disc"):
        sweep(f"recipes: [{RECIPES / 'tiny_aae.yaml'}]\ngrid: {{optim.nope.lr: [0.1]}}")
    with pytest.raises(ConfigError, match=r"grid.optim.code_disc.lr: got \[\], expected a non-empty list"):
        sweep(f"recipes: [{RECIPES / 'tiny_aae.yaml'}]\ngrid: {{optim.code_disc.lr: []}}")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) grids"):
        sweep(f"recipes: [{RECIPES / 'tiny_aae.yaml'}]\ngrids: {{}}")
    with pytest.raises(ConfigError, match=r"model.latent_dim: got 'big'"):
        sweep(f"recipes: [{RECIPES / 'tiny_aae.yaml'}]\ngrid: {{model.latent_dim: [big]}}")


def test_sweep_tool_prints_and_runs(tmp_path, shared_data, capsys, monkeypatch, one_thread):
    path = tmp_path / "s.yaml"
    path.write_text(f"recipes: [{RECIPES / 'tiny_veegan.yaml'}, {RECIPES / 'tiny_aae.yaml'}]\n"
                    "grid: {model.latent_dim: [4, 6]}\n")
    assert sweep_tool.main([str(path), "train.max_steps=1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all("train.max_steps=1 --out runs/sweeps/tiny_" in line for line in lines)
    assert "model.latent_dim=6 train.max_steps=1 --out runs/sweeps/tiny_aae__latent_dim=6 --resume auto" in lines[3]

    import train as train_tool  # the commands are tools/train.py argv: run them in this process (no interpreter start)
    calls = []
    monkeypatch.setattr(sweep_tool.subprocess, "call", lambda cmd: calls.append(cmd) or train_tool.main(cmd[2:]))
    overrides = ["train.max_steps=1", f"data.root={shared_data}", "train.progress=false", "train.sample_every=0",
                 "train.tensorboard=false"]
    code = sweep_tool.main([str(path), *overrides, "--only", "tiny_aae", "--run", "--out", str(tmp_path / "runs")])
    assert code == 0 and len(calls) == 2
    for latent in (4, 6):
        run = tmp_path / "runs" / f"tiny_aae__latent_dim={latent}"
        assert (run / "checkpoints" / "step_00000001").is_dir()
        assert f"latent_dim: {latent}" in (run / "config.yaml").read_text()

    monkeypatch.setattr(sweep_tool.subprocess, "call", lambda cmd: calls.append(cmd) or 3)  # a failing run
    calls.clear()
    assert sweep_tool.main([str(path), "--run"]) == 3 and len(calls) == 1  # stops at the first failure
    assert sweep_tool.main([str(path), "--only", "nothing"]) == 2
