"""tools/train.py end to end: files written, resume auto, recipe errors, SIGTERM, and a 2-process CPU run."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import torch
import yaml

import procs

from conftest import LAUNCH_TWO, REPO, subprocess_env
from zoo import load_checkpoint, load_recipe
from zoo.training.checkpoint import checkpoint_dirs
from zoo.training.logging import read_metrics

TRAIN = str(REPO / "tools" / "train.py")


def run_train(args, env_data, **kwargs):
    env = subprocess_env(ZOO_DATA=str(env_data), PYTHONUNBUFFERED="1")
    return procs.run([sys.executable, TRAIN, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, **kwargs)


def test_train_writes_run_and_resumes(tmp_path, shared_data):
    out = tmp_path / "run"
    res = run_train(["recipes/tiny_vae.yaml", "--out", str(out), "train.max_steps=10", "train.progress=false"],
                    shared_data)
    assert res.returncode == 0, res.stderr
    assert "finished 10 steps" in res.stdout
    assert [p.name for p in checkpoint_dirs(out)] == ["step_00000010"]
    saved = load_recipe(out / "config.yaml")
    assert saved.train.max_steps == 10 and saved.model.name == "vae"
    steps = [r["step"] for r in read_metrics(out)]
    assert steps == [5, 10]
    assert {"vae/loss", "vae/elbo", "vae/kl", "lr/vae"} <= set(read_metrics(out)[-1])
    assert (out / "samples" / "step_00000010.png").is_file()
    assert (out / "reconstructions" / "step_00000010.png").is_file()
    assert any((out / "tb").iterdir())
    assert (out / "loss_curves.png").is_file() and (out / "loss_curves.pdf").read_bytes()[:5] == b"%PDF-"

    again = run_train(["recipes/tiny_vae.yaml", "--out", str(out)], shared_data)
    assert again.returncode == 2 and "--resume auto" in again.stderr  # refuses to overwrite a run

    res = run_train(["recipes/tiny_vae.yaml", "--out", str(out), "--resume", "auto", "train.max_steps=20",
                     "train.progress=false"], shared_data)
    assert res.returncode == 0, res.stderr
    assert "resumed from" in res.stdout and "step 10" in res.stdout
    assert [p.name for p in checkpoint_dirs(out)] == ["step_00000010", "step_00000020"]
    assert [r["step"] for r in read_metrics(out)] == [5, 10, 15, 20]
    assert load_checkpoint(out).step == 20


def test_recipe_errors_exit_2_with_the_key(tmp_path, shared_data, monkeypatch, capsys):
    """`zoo train`'s main in this process: these errors end before any training (a subprocess each cost ~10 s)."""
    from zoo.commands.train import main

    def run(args, data):
        monkeypatch.setenv("ZOO_DATA", str(data))
        code = main(args)
        return code, capsys.readouterr().err

    monkeypatch.chdir(REPO)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"model": {"name": "vae", "latnt_dim": 3}}))
    code, err = run([str(bad), "--out", str(tmp_path / "x")], shared_data)
    assert code == 2 and "model.latnt_dim: unknown key" in err
    code, err = run(["recipes/tiny_vae.yaml", "--out", str(tmp_path / "x"), "train.max_steps=ten"], shared_data)
    assert code == 2 and "train.max_steps: got 'ten'" in err
    code, err = run([str(tmp_path / "missing.yaml")], shared_data)
    assert code == 2 and "does not exist" in err
    code, err = run(["recipes/tiny_vae.yaml", "--out", str(tmp_path / "x")], tmp_path / "no_data")
    assert code == 2 and "MNIST" in err and "ZOO_DATA" in err  # names the files expected and how to fix
    code, err = run(["recipes/tiny_vae.yaml", "--out", str(tmp_path / "x"), "model.channels=3"], shared_data)
    assert code == 2 and "model.channels=1" in err  # data/model shape mismatch, with the fix
    assert not (tmp_path / "x").exists()


def test_sigterm_saves_and_exits_cleanly(tmp_path, shared_data):
    out = tmp_path / "run"
    env = subprocess_env(ZOO_DATA=str(shared_data), PYTHONUNBUFFERED="1")
    proc = procs.popen([sys.executable, TRAIN, "recipes/tiny_vae.yaml", "--out", str(out),
                             "train.max_steps=100000", "train.log_every=1", "train.progress=false",
                             "train.checkpoint_every=0", "train.sample_every=0"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "received signal" in stdout
    ckpts = checkpoint_dirs(out)
    assert len(ckpts) == 1
    step = load_checkpoint(out).step
    assert 0 < step < 100000 and ckpts[0].name == f"step_{step:08d}"


def test_two_process_cpu_run(tmp_path, shared_data):
    out = tmp_path / "ddp"
    env = subprocess_env(ZOO_DATA=str(shared_data), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, *LAUNCH_TWO, TRAIN, "recipes/tiny_dcgan.yaml", "--out", str(out), "train.max_steps=6",
           "train.checkpoint_every=3", "train.log_every=3", "train.progress=false"]
    res = procs.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("finished 6 steps") == 1  # only the main process reports
    assert [p.name for p in checkpoint_dirs(out)] == ["step_00000003", "step_00000006"]
    assert not list((out / "checkpoints").glob(".tmp-*"))
    assert [r["step"] for r in read_metrics(out)] == [3, 6]  # one writer: each step logged once
    state = torch.load(out / "checkpoints" / "step_00000006" / "trainer_state.pt", weights_only=True)
    # each process draws 2 batches per step from its shard of 256 examples (8 batches of 32 per epoch)
    assert state["world_size"] == 2 and state["data"]["epoch"] * 8 + state["data"]["position"] == 12
    assert all(torch.isfinite(p).all() for p in load_checkpoint(out).model.parameters())


def test_two_processes_keep_identical_weights():
    env = subprocess_env(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, *LAUNCH_TWO, str(REPO / "tests" / "ddp_consistency.py"),
           "vae", "dcgan", "wgan_gp", "aae"]  # aae: phases that train a subset of their optimizer's players
    res = procs.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("vae", "dcgan", "wgan_gp", "aae"):
        assert f"DDP-CONSISTENT {name}" in res.stdout
