"""Issue 21, items 1-2: a run stopped by a signal says where and why; a second signal never leaves a checkpoint
directory without its files (signals are held back while a checkpoint is written and old ones pruned)."""
from __future__ import annotations

import os
import signal

import pytest
import torch

from conftest import REPO
from zoo.training import checkpoint as checkpoint_module
from zoo.training import trainer as trainer_module
from zoo.training.checkpoint import STATE, WEIGHTS, CONFIG, checkpoint_dirs, write_checkpoint
from zoo.training.signals import deferred_signals

FILES = (WEIGHTS, STATE, CONFIG)


def _complete(run) -> list[str]:
    """The checkpoint directories of `run`, each checked to hold every file and a loadable trainer state."""
    names = []
    for ckpt in checkpoint_dirs(run):
        assert all((ckpt / f).is_file() for f in FILES), sorted(p.name for p in ckpt.iterdir())
        assert int(torch.load(ckpt / STATE, weights_only=True)["step"]) == int(ckpt.name.split("_")[-1])
        names.append(ckpt.name)
    return names


def _write(run, step, keep_last=0):
    return write_checkpoint(run, step, weights={"players.g.w": torch.full((3,), float(step))},
                            trainer_state={"step": step}, config_yaml="model: {name: vae}\n", keep_last=keep_last)


def _kill_during(monkeypatch, module, name, signum, *, before=lambda *a: None, when=lambda *a: True):
    """Make `module.name` send `signum` to this process (after `before`; on calls that `when` accepts), then do its
    real work."""
    real = getattr(module, name)

    def sending(*args, **kwargs):
        if when(*args):
            before(*args)
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, sending)


def test_deferred_signals_are_delivered_after_the_block_in_order():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        with deferred_signals() as received:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            assert seen == [] and received == [signal.SIGTERM, signal.SIGTERM]  # held, not handled
        assert seen == [signal.SIGTERM, signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is not None and seen  # the handler is back
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def ctrl_c_raises():
    """Python's own SIGINT handler (KeyboardInterrupt) for the test: a shell starting pytest as a background job
    (`cmd &` without job control) makes it inherit SIGINT ignored, and a Ctrl-C would then never arrive."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_inside_the_prune_waits_and_leaves_only_complete_checkpoints(tmp_path, monkeypatch, ctrl_c_raises):
    run = tmp_path / "run"
    _write(run, 1)
    _write(run, 2)
    # the old code deleted trainer_state.pt first and was interrupted there: step_00000001 without its state
    _kill_during(monkeypatch, checkpoint_module.shutil, "rmtree", signal.SIGINT,
                 before=lambda path: (path / STATE).unlink(missing_ok=True))
    with pytest.raises(KeyboardInterrupt):
        _write(run, 3, keep_last=1)
    assert _complete(run) == ["step_00000003"]
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp-")]


def test_a_ctrl_c_inside_the_write_waits_for_the_complete_checkpoint(tmp_path, monkeypatch, ctrl_c_raises):
    run = tmp_path / "run"
    _write(run, 1)
    _kill_during(monkeypatch, checkpoint_module.torch, "save", signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        _write(run, 2, keep_last=1)
    assert _complete(run) == ["step_00000002"]


def test_a_half_pruned_checkpoint_is_never_taken_for_one(tmp_path, monkeypatch):
    """Even a SIGKILL inside the deletion (simulated: rmtree stops half-way) leaves only a `.tmp-` directory, which the
    next start removes; the `step_*` names are all complete."""
    run = tmp_path / "run"
    _write(run, 1)
    monkeypatch.setattr(checkpoint_module.shutil, "rmtree", lambda path, **kw: (path / STATE).unlink())
    _write(run, 2, keep_last=1)
    assert _complete(run) == ["step_00000002"]
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp-")] == [
        ".tmp-step_00000001-pruned"]
    monkeypatch.undo()
    from zoo.training.rundir import clean_temporaries
    assert [p.name for p in clean_temporaries(run)] == [".tmp-step_00000001-pruned"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002"]


def _stop_at(monkeypatch, step, signum):
    real = trainer_module.Trainer.train_step

    def train_step(self):
        real(self)
        if self.step == step:
            os.kill(os.getpid(), signum)
    monkeypatch.setattr(trainer_module.Trainer, "train_step", train_step)


@pytest.fixture
def train_main(shared_data, monkeypatch):
    from zoo.commands.train import main
    monkeypatch.setenv("ZOO_DATA", str(shared_data))
    monkeypatch.chdir(REPO)
    return lambda out, *extra: main(["recipes/tiny_vae.yaml", "--out", str(out), "train.progress=false",
                                     "train.sample_every=0", "train.log_every=1", "data.options.limit=64", *extra])


@pytest.mark.parametrize("signum, name", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")])
def test_a_stopped_run_says_at_which_step_of_how_many_and_why(train_main, tmp_path, monkeypatch, capsys, signum,
                                                              name):
    _stop_at(monkeypatch, 3, signum)
    assert train_main(tmp_path / "run", "train.max_steps=600", "train.checkpoint_every=0") == 0
    out = capsys.readouterr().out
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000003"
    assert f"zoo: stopped at step 3 of 600 ({name}); checkpoint saved in {ckpt}; resume with --resume auto" in out
    assert "finished" not in out
    assert _complete(tmp_path / "run") == ["step_00000003"]


def test_a_second_signal_during_the_final_save_aborts_after_it_with_complete_checkpoints(train_main, tmp_path,
                                                                                        monkeypatch, capsys):
    _stop_at(monkeypatch, 3, signal.SIGTERM)
    _kill_during(monkeypatch, checkpoint_module.torch, "save", signal.SIGINT,  # the user presses Ctrl-C meanwhile
                 when=lambda state, path: state["step"] == 3)
    assert train_main(tmp_path / "run", "train.max_steps=600", "train.checkpoint_every=2", "train.keep_last=1") == 130
    err = capsys.readouterr().err
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000003"
    assert err == (f"zoo: aborted at step 3 of 600 (a second signal); last complete checkpoint: {ckpt}; resume with "
                   f"--resume auto\n")
    assert _complete(tmp_path / "run") == ["step_00000003"]
