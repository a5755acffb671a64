"""Issue 15: no silent loss or divergence on resume, one-line errors for what users cause, sane settings only.

In-process and cheap: the trainer on RandomImages, and `tools/train.py main()` called in this process for the error
paths (they end before any training).
"""
from __future__ import annotations

import json
import stat

import pytest
import torch

from conftest import REPO, RandomImages, data_shape, tiny_recipe
from zoo import build_model, load_checkpoint
from zoo.config import ConfigError
from zoo.factory import load_recipe
from zoo.training import NonFiniteLossError, Trainer
from zoo.training import trainer as trainer_module
from zoo.training.checkpoint import CheckpointError, checkpoint_dirs, read_trainer_state, write_checkpoint
from zoo.training.logging import read_metrics
from zoo.training.rundir import RunDirError, read_history


def _trainer(out, overrides=(), model="vae", dataset=None):
    recipe = tiny_recipe(model, ["train.log_every=1", *overrides])
    return Trainer(build_model(recipe), recipe, out, dataset=dataset or RandomImages(128, data_shape(recipe)))


def _steps(out) -> list[int]:
    return [int(p.name.split("_")[-1]) for p in checkpoint_dirs(out)]


def test_resume_from_an_earlier_checkpoint_replaces_the_later_ones_and_applies_a_changed_lr(tmp_path, capsys):
    run = tmp_path / "run"
    _trainer(run, ["train.max_steps=4", "train.checkpoint_every=1", "train.keep_last=0"]).train()
    old = {s: (run / "checkpoints" / f"step_{s:08d}" / "model.safetensors").read_bytes() for s in (3, 4)}

    second = _trainer(run, ["train.max_steps=4", "train.checkpoint_every=1", "train.keep_last=0", "optim.vae.lr=1e-5"])
    second.resume(run / "checkpoints" / "step_00000002")
    assert [g["lr"] for g in second.optimizers["vae"].param_groups] == [1e-5]  # not the checkpoint's 5e-4
    second.train()
    said = capsys.readouterr().out
    assert "continues from step 2" in said and "optim.vae.lr 0.0005 -> 1e-05" in said
    assert _steps(run) == [1, 2, 3, 4]
    for s in (3, 4):  # the new branch's checkpoints, not the abandoned ones
        assert (run / "checkpoints" / f"step_{s:08d}" / "model.safetensors").read_bytes() != old[s]
    (moved,) = (run / "abandoned").iterdir()
    assert sorted(p.name for p in moved.iterdir()) == ["metrics.jsonl", "step_00000003", "step_00000004"]
    assert {s: (moved / f"step_{s:08d}" / "model.safetensors").read_bytes() for s in (3, 4)} == old
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4]  # no duplicate steps
    assert [r["lr/vae"] for r in read_metrics(run)][2:] == [1e-5, 1e-5]
    assert [r["step"] for r in map(json.loads, (moved / "metrics.jsonl").read_text().splitlines())] == [3, 4]
    history = read_history(run)
    assert [h["event"] for h in history] == ["start", "resume"]
    assert history[1]["step"] == 2 and history[1]["changes"] == {"optim.vae.lr": [5e-4, 1e-5]}
    assert load_recipe(run / "config.yaml").optim["vae"].lr == 1e-5  # config.yaml states what runs
    assert load_checkpoint(run).step == 4


def test_a_changed_lr_reaches_a_phase_with_its_own_optimizer_state(tmp_path):
    """AAE's enc_adv phase steps its own Adam state ("autoencoder/enc_adv") built from optim.autoencoder: a changed
    lr at resume must reach both states, and resuming must not trip over the extra key."""
    run = tmp_path / "run"
    _trainer(run, ["train.max_steps=2", "train.checkpoint_every=1"], model="aae").train()
    second = _trainer(run, ["train.max_steps=3", "optim.autoencoder.lr=1e-5"], model="aae")
    second.resume(run)
    assert set(second.optimizers) >= {"autoencoder", "autoencoder/enc_adv"}
    for key in ("autoencoder", "autoencoder/enc_adv"):
        assert [g["lr"] for g in second.optimizers[key].param_groups] == [1e-5]


def test_a_changed_max_steps_reschedules_the_lr_from_the_resumed_step(tmp_path):
    run = tmp_path / "run"
    sched = "optim.vae.schedule={name: linear, final_factor: 0.0}"
    _trainer(run, ["train.max_steps=4", sched]).train()
    second = _trainer(run, ["train.max_steps=8", sched])
    second.resume(run)
    assert second.schedulers["vae"].get_last_lr() == [pytest.approx(5e-4 * (1 - 4 / 8))]  # not 0 (the old end)


@pytest.mark.parametrize("model, overrides, named", [
    ("vgh_plus", [], "model.name: 'vgh' in the checkpoint, 'vgh_plus' now"),
    ("vgh", ["data.batch_size=16"], "data.batch_size: 32 in the checkpoint, 16 now"),
    ("vgh", ["optim.encoder.players=[generator]", "optim.generator.players=[encoder]"], "optim.encoder.players"),
    ("vgh", ["train.seed=5"], "train.seed"),
    ("vgh", ["data.options={limit: 256}"], "data.options.limit: 512 in the checkpoint, 256 now"),
])
def test_resume_refuses_changed_settings_that_define_the_run(tmp_path, model, overrides, named):
    run = tmp_path / "run"
    _trainer(run, ["train.max_steps=1"], model="vgh").train()
    recipe = tiny_recipe(model, ["train.max_steps=2", *overrides])
    later = Trainer(build_model(recipe), recipe, run, dataset=RandomImages(128, data_shape(recipe)))
    with pytest.raises(ConfigError, match="cannot change within a run") as err:
        later.resume(run)
    assert named in str(err.value)


def test_the_python_api_refuses_a_second_run_in_one_directory_and_restarts_a_run_without_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    _trainer(run, ["train.max_steps=2"]).train()
    with pytest.raises(RunDirError, match="already holds a run"):
        _trainer(run, ["train.max_steps=2"]).train()
    # a run killed before its first checkpoint: config.yaml and metrics but no checkpoint
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.yaml").write_text("x: 1\n")
    (partial / "metrics.jsonl").write_text('{"step": 5}\n')
    with pytest.raises(RunDirError, match=r"already holds a run \(config.yaml, metrics.jsonl\)"):
        _trainer(partial, ["train.max_steps=2"]).train()
    again = _trainer(partial, ["train.max_steps=2"])
    assert again.resume(partial, missing_ok=True) is None
    again.train()
    assert "restarting it from step 0" in capsys.readouterr().out
    assert [r["step"] for r in read_metrics(partial)] == [1, 2]
    (moved,) = (partial / "abandoned").iterdir()
    assert (moved / "metrics.jsonl").read_text() == '{"step": 5}\n'


def test_leftover_temporaries_are_removed_and_checkpoints_are_group_readable(tmp_path):
    run = tmp_path / "run"
    stale = run / "checkpoints" / ".tmp-step_00000003-abc"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    trainer = _trainer(run, ["train.max_steps=1"])
    trainer.resume(run, missing_ok=True)
    trainer.train()
    assert not stale.exists() and _steps(run) == [1]
    mode = (run / "checkpoints" / "step_00000001").stat().st_mode
    assert mode & stat.S_IRGRP and mode & stat.S_IXGRP


def test_nan_weights_are_never_saved_and_the_message_names_the_real_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    trainer = _trainer(run, ["train.max_steps=3"])
    trainer.train_step()
    with torch.no_grad():
        next(trainer.players["decoder"].parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="hold NaN/inf at step 1 .*no checkpoint of this run was saved"):
        trainer.save_checkpoint()
    assert checkpoint_dirs(run) == []

    fresh = _trainer(tmp_path / "ok", ["train.max_steps=1"])
    fresh.train()
    with torch.no_grad():
        next(fresh.players["encoder"].parameters()).fill_(float("inf"))
    fresh.step += 1
    with pytest.raises(NonFiniteLossError, match=r"the last checkpoint, .*step_00000001, is intact"):
        fresh.save_checkpoint()


def test_run_folders_saved_with_the_old_eval_keys_load_resume_and_say_what_a_changed_one_means(tmp_path):
    """Before 6 December 2026 every config.yaml held `eval.n_samples / batch_size / split`, keys no zoo version read:
    those checkpoints load and resume unchanged (same weights); a non-default value names the command option."""
    import yaml
    run = tmp_path / "run"
    trainer = _trainer(run, ["train.max_steps=2", "train.checkpoint_every=2"])
    trainer.train()
    (ckpt,) = checkpoint_dirs(run)
    for path in (run / "config.yaml", ckpt / "config.yaml"):
        tree = yaml.safe_load(path.read_text())
        tree["eval"] = {"metrics": [], "n_samples": 10000, "batch_size": 256, "split": "test"}
        path.write_text(yaml.safe_dump(tree))
    loaded = load_checkpoint(run)
    assert loaded.step == 2 and loaded.recipe.eval.metrics == []
    resumed = _trainer(run, ["train.max_steps=3", "train.checkpoint_every=3"])
    resumed.resume(run)
    assert resumed.step == 2
    assert all(torch.equal(resumed.weights()[k], v) for k, v in trainer.weights().items())

    tree = yaml.safe_load((ckpt / "config.yaml").read_text())
    tree["eval"]["n_samples"] = 500
    (ckpt / "config.yaml").write_text(yaml.safe_dump(tree))
    with pytest.raises(CheckpointError, match=r"eval.n_samples=500: no zoo version read this key .*--n-samples"):
        _trainer(run, ["train.max_steps=3"]).resume(run)


def test_load_checkpoint_and_resume_refuse_nan_weights(tmp_path):
    run = tmp_path / "run"
    trainer = _trainer(run, ["train.max_steps=1"])
    trainer.train()
    weights = {k: v.clone() for k, v in trainer.weights().items()}
    key = next(k for k, v in weights.items() if v.is_floating_point())
    weights[key][...] = float("nan")
    write_checkpoint(run, 2, weights=weights, trainer_state={**trainer.state_dict(), "step": 2},
                     config_yaml=trainer.config_yaml)
    with pytest.raises(CheckpointError, match=f"{key} holds .* non-finite"):
        load_checkpoint(run)
    with pytest.raises(CheckpointError, match="non-finite"):
        _trainer(run, ["train.max_steps=3"]).resume(run)


def test_a_diverging_loss_warns(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(trainer_module, "DIVERGING", 1.0)  # a VAE's loss (~500 nats) counts as diverging here
    trainer = _trainer(tmp_path / "run", ["train.max_steps=2"])
    trainer.train()
    assert set(trainer.diverging) == {"vae/loss"} and trainer.diverging["vae/loss"] > 1.0
    err = capsys.readouterr().err
    assert "warning: vae/loss = " in err and "training is diverging (try a lower optim.vae.lr" in err


@pytest.mark.parametrize("override, message", [
    ("optim.vae.grad_clip=-1", "optim.vae.grad_clip: got -1.0, expected finite and > 0"),
    ("model.latent_dim=0", "model.latent_dim: got 0, expected >= 1"),
    ("data.batch_size=0", "data.batch_size: got 0, expected >= 1"),
    ("data.batch_size=-4", "data.batch_size: got -4"),
    ("train.log_every=0", "train.log_every: got 0, expected >= 1"),
    ("optim.vae.lr=-1e-3", "optim.vae.lr: got -0.001, expected finite and >= 0"),
    ("optim.vae.betas=[0.5,1.5]", "optim.vae.betas: got [0.5, 1.5], expected each in [0, 1)"),
    ("train.ema={players: [decoder], decay: 2}", "train.ema.decay: got 2"),
])
def test_nonsense_values_are_rejected_with_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        tiny_recipe("vae", [override])
    assert message in str(err.value)


def test_trainer_state_without_a_key_and_a_malformed_config_are_clear_errors(tmp_path):
    run = tmp_path / "run"
    _trainer(run, ["train.max_steps=1"]).train()
    ckpt = checkpoint_dirs(run)[-1]
    state = read_trainer_state(ckpt)
    del state["step"]
    torch.save(state, ckpt / "trainer_state.pt")
    with pytest.raises(CheckpointError, match="lacks step"):
        load_checkpoint(run)
    (ckpt / "config.yaml").write_text("model: {name: vae\n")
    with pytest.raises(CheckpointError, match="config.yaml.*not valid YAML"):
        load_checkpoint(run)


# ---- tools/train.py: one line, no traceback ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def train_main():
    from zoo.commands.train import main
    return main


@pytest.mark.parametrize("extra, message", [
    (["data.batch_size=0"], "data.batch_size: got 0"),
    (["data.name=mnsit"], "data.name: unknown dataset 'mnsit'. Did you mean 'mnist'?"),
    (["data.options.limt=10"], "data.options.limt: unknown option (did you mean 'limit'?); allowed options: "
                               "image_size, pad_to, download, limit"),
    (["--out", "{tmp}/a_file"], "is a file, not a directory"),
    (["--out", "{tmp}/partial"], "already holds a run (config.yaml)"),
    (["--resume", "{tmp}/nowhere"], "does not exist"),
])
def test_train_tool_ends_user_errors_in_one_line(train_main, tmp_path, shared_data, monkeypatch, capsys, extra,
                                                 message):
    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    (tmp_path / "a_file").write_text("")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "config.yaml").write_text("")
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    argv = ["recipes/tiny_vae.yaml", "--out", str(tmp_path / "run"), "train.progress=false", *extra]
    monkeypatch.chdir(REPO)
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_the_registry_follows_an_abandoned_branch(tmp_path):
    """Results measured on the abandoned checkpoints stay with them; the new branch's checkpoints get their own rows
    (before, the new step_3 kept the old step_3's row, its hash and its results)."""
    from zoo.catalog import Catalog, checkpoint_sha256, record_training, relocate_checkpoints
    run = tmp_path / "run"
    _trainer(run, ["train.max_steps=3", "train.checkpoint_every=1", "train.keep_last=0"]).train()
    assert record_training(run)
    old_sha = checkpoint_sha256(run / "checkpoints" / "step_00000003")
    second = _trainer(run, ["train.max_steps=3", "train.checkpoint_every=1", "train.keep_last=0", "optim.vae.lr=1e-5"])
    second.on_checkpoints_moved = relocate_checkpoints  # what `zoo train` sets: the registry is its concern
    second.resume(run / "checkpoints" / "step_00000002")
    second.train()
    assert record_training(run)
    (moved,) = (run / "abandoned").iterdir()
    with Catalog() as catalog:
        rows = {r["path"]: r["sha256"] for r in catalog.query("SELECT path, sha256 FROM checkpoints")}
    assert rows[str((moved / "step_00000003").resolve())] == old_sha
    new = str((run / "checkpoints" / "step_00000003").resolve())
    assert rows[new] == checkpoint_sha256(run / "checkpoints" / "step_00000003") != old_sha
    assert len(rows) == 4


def test_a_torn_last_metrics_line_is_skipped_when_read_and_cut_off_at_resume(tmp_path, capsys):
    """A kill or a full disk in the middle of a metrics.jsonl write leaves a line without its end: the log still
    reads (loss curves, the registry report), and a resume cuts it off, says so once, and appends whole lines."""
    run = tmp_path / "run"
    _trainer(run, ["train.max_steps=2", "train.checkpoint_every=2"]).train()
    metrics = run / "metrics.jsonl"
    whole = metrics.read_text()
    with metrics.open("a") as f:
        f.write('{"step": 3, "vae/lo')  # torn
    assert [r["step"] for r in read_metrics(run)] == [1, 2]
    capsys.readouterr()
    resumed = _trainer(run, ["train.max_steps=3"])
    resumed.resume(run)
    resumed.train()
    notes = [line for line in capsys.readouterr().out.splitlines() if "torn" in line]
    assert notes == ["zoo: metrics.jsonl: its last line was torn (19 bytes: the run was killed or the disk was full "
                     "while writing it); removed it, the 2 whole lines before it are kept"]
    assert metrics.read_text().startswith(whole) and [r["step"] for r in read_metrics(run)] == [1, 2, 3]
    metrics.write_text('{"step": 1}\n{"ste\n{"step": 3}\n')  # damage inside the file is not a torn tail: named
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2 is not JSON"):
        read_metrics(run)
