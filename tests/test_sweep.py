"""tools/sweep.py: one run per value of the swept keys, validated up front, finished runs skipped on a re-run."""
from __future__ import annotations

import importlib.util
import re
import sys

import pytest
import yaml

from conftest import RECIPES, REPO
from zoo import load_checkpoint, load_recipe
from zoo.training.checkpoint import checkpoint_dirs

_spec = importlib.util.spec_from_file_location("zoo_tools_sweep", REPO / "tools" / "sweep.py")
sweep = sys.modules["zoo_tools_sweep"] = importlib.util.module_from_spec(_spec)  # dataclasses need the module
_spec.loader.exec_module(sweep)


def test_ijae_lambda_sweep_expands_to_one_run_per_value():
    recipe, runs = sweep.expand(RECIPES / "sweeps" / "ijae_cifar10_lambda.yaml")
    assert recipe == (RECIPES / "ijae_cifar10.yaml").resolve()
    lams = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert [r.name for r in runs] == [f"lam_{v}" for v in lams]
    assert [str(r.out) for r in runs] == [f"runs/ijae_cifar10_lambda/lam_{v}" for v in lams]
    assert [load_recipe(recipe, r.overrides).model["lam"] for r in runs] == lams
    _, grid = sweep.expand(RECIPES / "sweeps" / "ijae_cifar10_ablations_lambda.yaml", ["train.max_steps=5"])
    assert len(grid) == 18 and grid[9].name == "likelihood_l2-lam_0.1"
    resolved = load_recipe(recipe, grid[9].overrides)
    assert (resolved.model["likelihood"], resolved.model["lam"], resolved.train.max_steps) == ("l2", 0.1, 5)


def test_sweep_trains_each_run_and_skips_finished_ones(tmp_path, shared_data, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    spec = tmp_path / "lam.yaml"
    spec.write_text(yaml.safe_dump({"recipe": str(RECIPES / "tiny_ijae.yaml"), "out": str(tmp_path / "runs"),
                                    "sweep": {"model.lam": [0.2, 0.8]}}))
    quiet = ["train.max_steps=1", "train.progress=false", "train.tensorboard=false", "train.sample_every=0",
             "train.checkpoint_every=0", "data.options.limit=64", "data.batch_size=8"]
    assert sweep.main([str(spec), *quiet]) == 0
    for lam in (0.2, 0.8):
        run = tmp_path / "runs" / f"lam_{lam}"
        assert [p.name for p in checkpoint_dirs(run)] == ["step_00000001"]
        ckpt = load_checkpoint(run)
        assert ckpt.recipe.model["lam"] == lam and ckpt.model.config.lam == lam
    stamp = (tmp_path / "runs" / "lam_0.2" / "checkpoints" / "step_00000001").stat().st_mtime_ns
    capsys.readouterr()
    assert sweep.main([str(spec), *quiet]) == 0
    assert capsys.readouterr().out.count("(finished)") == 2
    assert (tmp_path / "runs" / "lam_0.2" / "checkpoints" / "step_00000001").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("tree,message", [
    ({"recipe": "x.yaml", "out": "o"}, "missing \\['sweep'\\]"),
    ({"recipe": str(RECIPES / "tiny_ijae.yaml"), "out": "o", "sweep": {"model.lam": []}}, "non-empty lists"),
    ({"recipe": str(RECIPES / "tiny_ijae.yaml"), "out": "o", "sweep": {"model.lamda": [0.1]}}, "did you mean 'lam'"),
])
def test_bad_sweep_files_exit_2_naming_the_problem(tmp_path, capsys, tree, message):
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(tree))
    assert sweep.main([str(spec), "--dry-run"]) == 2
    assert re.search(message, capsys.readouterr().err)
