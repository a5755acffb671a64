"""Sweep files expand to the App. K grids, validate every point, and tools/sweep.py prints one command per run."""
from __future__ import annotations

import shlex
from collections import Counter

import pytest

from conftest import RECIPES
from zoo import load_recipe
from zoo.config import ConfigError
from zoo.factory import expand_sweep

VGH_SWEEP = RECIPES / "sweeps" / "vgh_rosca_app_k.yaml"


def test_vgh_sweep_is_the_app_k_grid():
    points = expand_sweep(VGH_SWEEP)
    per_recipe = Counter(p.recipe.stem for p in points)
    assert per_recipe == {"vgh_color_mnist": 96, "vgh_plus_color_mnist": 96, "vgh_celeba64": 32,
                          "vgh_plus_celeba64": 32, "vgh_cifar10": 32, "vgh_plus_cifar10": 32}
    assert len({p.name for p in points}) == len(points), "run names must be unique"
    seen = set()
    for p in points:
        if p.recipe.stem != "vgh_plus_color_mnist":
            continue
        r = load_recipe(p.recipe, list(p.overrides))
        assert r.optim["encoder"].lr == r.optim["generator"].lr  # Table 3: one generator / encoder value
        assert r.optim["disc"].lr == r.optim["code_disc"].lr == 5e-4
        seen.add((r.optim["encoder"].lr, r.model.config.encoder_recon_weight, r.model.config.generator_recon_weight,
                  r.model.config.latent_dim))
    assert seen == {(lr, e, g, k) for lr in (1e-4, 5e-4) for e in (1.0, 5.0, 10.0, 50.0)
                    for g in (1.0, 5.0, 10.0, 50.0) for k in (10, 50, 75)}


def test_sweep_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"blocks:\n  - recipes: [{RECIPES / 'tiny_vgh.yaml'}]\n    grid: {{model.encoder_recon_wieght: [1]}}\n")
    with pytest.raises(ConfigError, match="encoder_recon_wieght.*did you mean 'encoder_recon_weight'"):
        expand_sweep(bad)
    bad.write_text("blocks: []\n")
    with pytest.raises(ConfigError, match="non-empty list under 'blocks'"):
        expand_sweep(bad)


def test_sweep_tool_prints_one_command_per_run(capsys):
    from zoo.commands import sweep as tool
    assert tool.main([str(VGH_SWEEP), "--match", "vgh_cifar10/", "train.max_steps=10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 32
    args = shlex.split(lines[0])
    assert args[1:4] == ["-m", "zoo.cli", "train"]
    assert args[4].endswith("recipes/vgh_cifar10.yaml") and args[-1] == "train.max_steps=10"
    assert "optim.encoder.lr=0.0001" in args and "optim.generator.lr=0.0001" in args
    assert tool.main([str(VGH_SWEEP), "--match", "nothing-matches"]) == 2


def test_ijae_lambda_sweeps_expand_to_one_run_per_value():
    lams = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    points = expand_sweep(RECIPES / "sweeps" / "ijae_cifar10_lambda.yaml")
    assert [load_recipe(p.recipe, list(p.overrides)).model.config.lam for p in points] == lams
    assert len({p.name for p in points}) == 9
    grid = expand_sweep(RECIPES / "sweeps" / "ijae_cifar10_ablations_lambda.yaml")
    resolved = [load_recipe(p.recipe, list(p.overrides)).model.config for p in grid]
    assert [(m.likelihood, m.lam) for m in resolved] == [(k, v) for k in ("l1", "l2") for v in lams]


@pytest.mark.slow  # ~60 s on 2 cores: submitit's job processes, each starting a training process
def test_submit_through_submitit_local_executor_skips_finished_and_reports_failed(tmp_path, capsys, shared_data,
                                                                                 monkeypatch):
    pytest.importorskip("submitit", reason="submitit is the optional extra zoo[cluster] (in zoo[dev])")
    from conftest import subprocess_env
    from zoo.commands import sweep as tool
    from zoo.training.checkpoint import checkpoint_dirs
    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    monkeypatch.setenv("PYTHONPATH", subprocess_env()["PYTHONPATH"])  # the jobs' processes import this checkout
    sweep = tmp_path / "tiny.yaml"  # a 2-point sweep; limit 0 fails when the data loads, after validation
    sweep.write_text(f"blocks:\n  - recipes: [{RECIPES / 'tiny_vae.yaml'}]\n    grid: {{data.options.limit: [64, 0]}}\n")
    args = [str(sweep), "--submit", "--executor", "local", "--out-root", str(tmp_path / "runs"), "train.max_steps=4",
            "train.progress=false", "train.tensorboard=false", "train.sample_every=0", "train.checkpoint_every=0"]
    assert tool.main(args) == 1
    out, err = capsys.readouterr()
    assert out.count("submitted as job") == 2 and "(local)" in out and "1 of 2 submitted runs finished, 1 failed" in out
    assert "error: run tiny_vae/limit=0 failed" in err and "zoo train exit status 1" in err
    assert "limit must be an integer >= 1 or None, got 0" in err
    ok, bad = tmp_path / "runs" / "tiny_vae-limit=64", tmp_path / "runs" / "tiny_vae-limit=0"
    assert [p.name for p in checkpoint_dirs(ok)] == ["step_00000004"] and not checkpoint_dirs(bad)

    sweep.write_text(f"blocks:\n  - recipes: [{RECIPES / 'tiny_vae.yaml'}]\n    grid: {{data.options.limit: [64]}}\n")
    assert tool.main(args) == 0  # resumption: the finished run is skipped, nothing is submitted
    out, _ = capsys.readouterr()
    assert "tiny_vae/limit=64: finished, skipped" in out and "submitted" not in out
