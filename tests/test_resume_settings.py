"""Issue 21 (round 2), item 6: `zoo train RECIPE --resume auto` continues the run's own config.yaml; only overrides
given now change it (announced, recorded in history.jsonl); the bare recipe file's values never come back."""
from __future__ import annotations

import pytest

from conftest import REPO
from zoo import load_checkpoint
from zoo.training.checkpoint import checkpoint_dirs
from zoo.training.rundir import read_history


@pytest.fixture
def train_main(shared_data, monkeypatch):
    from zoo.commands.train import main
    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    monkeypatch.chdir(REPO)
    return lambda *argv: main(["recipes/tiny_vae.yaml", *argv])


def _steps(run) -> list[int]:
    return [int(p.name.split("_")[-1]) for p in checkpoint_dirs(run)]


def test_a_bare_resume_keeps_the_runs_max_steps_and_an_explicit_override_changes_it(train_main, tmp_path, capsys):
    run = tmp_path / "run"
    quiet = ["train.progress=false", "train.sample_every=0"]
    assert train_main("--out", str(run), "train.max_steps=6", "train.checkpoint_every=3", "train.log_every=3",
                      *quiet) == 0  # tiny_vae.yaml itself says max_steps: 20
    capsys.readouterr()

    assert train_main("--out", str(run), "--resume", "auto", *quiet) == 0  # the recipe's 20 must not come back
    out = capsys.readouterr().out
    assert "zoo: finished 6 steps" in out and _steps(run) == [3, 6]
    (note,) = [line for line in out.splitlines() if line.startswith("zoo: resuming with the run's own settings")]
    assert "train.max_steps 6 -> 20" in note and "train.checkpoint_every 3 -> 10" in note
    assert "train.progress" not in note  # given again now: an override, not a value left out
    assert read_history(run)[-1]["changes"] == {}

    assert train_main("--out", str(run), "--resume", "auto", "train.max_steps=8", *quiet) == 0
    out = capsys.readouterr().out
    assert "zoo: finished 8 steps" in out and "train.max_steps 6 -> 8" in out
    assert _steps(run) == [6, 8] and load_checkpoint(run).recipe.train.max_steps == 8  # keep_last: 2
    assert load_checkpoint(run).recipe.train.checkpoint_every == 3  # the run's, not the recipe file's 10
    assert read_history(run)[-1]["changes"] == {"train.max_steps": [6, 8]}


def test_resuming_with_a_recipe_for_another_model_is_one_error(train_main, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main("--out", str(run), "train.max_steps=2", "train.progress=false", "train.sample_every=0") == 0
    capsys.readouterr()
    from zoo.commands.train import main
    before = sorted(p.relative_to(run) for p in run.rglob("*") if p.name != "run.lock")
    assert main(["recipes/tiny_dcgan.yaml", "--out", str(run), "--resume", "auto"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trains 'vae', but recipes/tiny_dcgan.yaml names 'dcgan'" in err
    assert sorted(p.relative_to(run) for p in run.rglob("*") if p.name != "run.lock") == before
