"""Fault injection (issue 15), kept as tests on tiny recipes and the CPU.

Probes: kill -9 inside a checkpoint write and at random points of a run, planted code-executing pickles and YAML in
every file the zoo reads, truncated and wrong-shape files, a full disk (a small tmpfs, when root), concurrent registry
writers with one killed, a held registry lock, a stalled peer and a killed launcher. One fast representative of each
runs in the default suite; the heavier variants are marked slow.
"""
from __future__ import annotations

import os
import pickle
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import procs
from conftest import LAUNCH_TWO, REPO, RandomImages, data_shape, subprocess_env, tiny_recipe
from test_catalog import CATALOG, WRITER
from zoo import build_model, load_checkpoint
from zoo.catalog import Catalog, CatalogError
from zoo.config import ConfigError
from zoo.factory import expand_sweep, load_recipe
from zoo.training import Trainer
from zoo.training.checkpoint import CheckpointError, CheckpointWriteError, checkpoint_dirs

TRAIN = str(REPO / "tools" / "train.py")
QUIET = ["train.progress=false", "train.tensorboard=false", "train.sample_every=0"]


def _trainer(out, overrides=()):
    recipe = tiny_recipe("vae", ["train.log_every=1", *overrides])
    return Trainer(build_model(recipe), recipe, out, dataset=RandomImages(128, data_shape(recipe)))


def _train_cli(args, data, **kwargs):
    env = subprocess_env(ZOO_DATA=str(data), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return procs.run([sys.executable, TRAIN, "recipes/tiny_vae.yaml", *QUIET, *args], cwd=REPO, env=env, **kwargs)


# ---- kill -9 -------------------------------------------------------------------------------------------------------
KILLED_IN_WRITE = """
import sys, time, torch
sys.path.insert(0, sys.argv[3])
from conftest import RandomImages, data_shape, tiny_recipe
from zoo import build_model
from zoo.training import Trainer
import zoo.training.checkpoint as ck
recipe = tiny_recipe("vae", ["train.max_steps=4", "train.checkpoint_every=2"])
trainer = Trainer(build_model(recipe), recipe, sys.argv[1], dataset=RandomImages(128, data_shape(recipe)))
real_save = torch.save
def stalled_save(obj, path, *a, **k):  # the weights file is written; the trainer state is half written
    with open(path, "wb") as f:
        f.write(b"PK\\x03\\x04partial")
    open(sys.argv[2], "w").close()
    time.sleep(600)
trainer.train_step(); trainer.train_step(); trainer.save_checkpoint()  # step 2: complete
ck.torch.save = stalled_save
trainer.train_step(); trainer.train_step(); trainer.save_checkpoint()  # step 4: killed inside the write
"""


def test_kill_9_inside_a_checkpoint_write_leaves_the_previous_one_and_is_cleaned_on_resume(tmp_path, capsys):
    run, flag = tmp_path / "run", tmp_path / "in_write"
    proc = procs.popen([sys.executable, "-c", KILLED_IN_WRITE, str(run), str(flag), str(REPO / "tests")],
                       env=subprocess_env(OMP_NUM_THREADS="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flag.exists(), proc.communicate()[1][-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert [p.name for p in checkpoint_dirs(run)] == ["step_00000002"]  # the half-written step 4 is not visible
    assert len(list((run / "checkpoints").glob(".tmp-step_00000004-*"))) == 1
    resumed = _trainer(run, ["train.max_steps=4", "train.checkpoint_every=2"])
    assert resumed.resume(run, missing_ok=True).name == "step_00000002"
    resumed.train()
    assert "removed 1 incomplete checkpoint write" in capsys.readouterr().out
    assert [p.name for p in checkpoint_dirs(run)] == ["step_00000002", "step_00000004"]
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert load_checkpoint(run).step == 4


@pytest.mark.slow
def test_random_kill_9s_then_resume_auto_end_bit_identical_to_a_straight_run(tmp_path, shared_data):
    """5 kill -9s at random times (many land inside checkpoint writes: one is written every step), each followed by
    `--resume auto`: the final weights equal those of an uninterrupted run, byte for byte."""
    steps, common = 40, ["train.max_steps=40", "train.checkpoint_every=1", "train.keep_last=3", "train.log_every=1"]
    straight = _train_cli(["--out", str(tmp_path / "straight"), *common], shared_data)
    assert straight.returncode == 0, straight.stderr
    rng, run, kills = random.Random(0), tmp_path / "killed", 0
    env = subprocess_env(ZOO_DATA=str(shared_data), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    while kills < 5:
        proc = procs.popen([sys.executable, TRAIN, "recipes/tiny_vae.yaml", *QUIET, "--out", str(run), "--resume",
                            "auto", *common], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not checkpoint_dirs(run) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)  # kill only once training runs (not during the imports)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is not None:
            break  # finished before the kill
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
    final = _train_cli(["--out", str(run), "--resume", "auto", *common], shared_data)
    assert final.returncode == 0, final.stderr
    name = f"step_{steps:08d}"
    assert (run / "checkpoints" / name / "model.safetensors").read_bytes() == \
        (tmp_path / "straight" / "checkpoints" / name / "model.safetensors").read_bytes()
    from zoo.training.logging import read_metrics
    logged = [r["step"] for r in read_metrics(run)]
    assert logged == sorted(set(logged)) and logged[-1] == steps  # no duplicate steps after the resumes


# ---- planted payloads ----------------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this runs `touch <marker>`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _yaml_payload(marker: Path) -> str:
    return f"model: !!python/object/apply:os.system ['touch {marker}']\n"


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    trainer = _trainer(tmp_path / "run", ["train.max_steps=1", "train.ema={players: [decoder], decay: 0.9}"])
    trainer.train()
    return checkpoint_dirs(tmp_path / "run")[-1]


@pytest.mark.parametrize("target", ["trainer_state.pt", "model.safetensors", "ema.safetensors", "config.yaml"])
def test_a_planted_payload_in_a_checkpoint_file_runs_no_code_and_is_refused(checkpoint, tmp_path, target):
    marker = tmp_path / "pwned"
    if target == "config.yaml":
        (checkpoint / target).write_text(_yaml_payload(marker))
    elif target == "trainer_state.pt":
        torch.save({"step": 1, "optimizers": _Payload(marker)}, checkpoint / target)  # a full pickle, torch's format
    else:
        (checkpoint / target).write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match=target.replace(".", r"\.")):
        load_checkpoint(checkpoint)
    with pytest.raises((CheckpointError, ConfigError)):
        _trainer(tmp_path / "run", ["train.max_steps=2", "train.ema={players: [decoder], decay: 0.9}"]).resume(
            checkpoint)
    assert not marker.exists()


def test_planted_yaml_in_recipes_and_sweeps_and_pickles_in_data_files_run_no_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(_yaml_payload(marker))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(recipe)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"blocks: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError):
        expand_sweep(sweep)
    # a CIFAR-10 python batch is a pickle: only the batch layout is unpickled
    from zoo.data import load_dataset
    cifar = tmp_path / "data" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (cifar / name).write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(Exception, match="refusing to unpickle"):
        load_dataset("cifar10", "train", tmp_path / "data").as_uint8_tensor()
    # the dSprites archive: an object array (pickled) is refused
    np.savez(tmp_path / "data" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
             imgs=np.array([_Payload(marker)], dtype=object))
    with pytest.raises(Exception):
        load_dataset("dsprites", "train", tmp_path / "data").as_uint8_tensor()
    # evaluation weights and the decoded-image cache are read weights-only
    from zoo.data.base import load_decoded
    from zoo.evaluation.core import EvaluationError, load_state_dict_file
    evil = tmp_path / "weights.pt"
    torch.save({"w": _Payload(marker)}, evil)
    with pytest.raises(EvaluationError, match="weights-only"):
        load_state_dict_file(evil, "test weights")
    with pytest.warns(UserWarning, match="unreadable decoded cache"):
        assert load_decoded(evil, (1,)) is None
    assert not marker.exists()


# ---- truncated and wrong-shape files -------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated weights", "truncated state", "wrong shape", "missing tensor",
                                    "empty config"])
def test_damaged_checkpoint_files_are_clear_errors(checkpoint, damage):
    weights, state = checkpoint / "model.safetensors", checkpoint / "trainer_state.pt"
    if damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        expect = "cannot read weights"
    elif damage == "truncated state":
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
        expect = "cannot read trainer state"
    elif damage in ("wrong shape", "missing tensor"):
        tensors = load_file(str(weights))
        key = next(k for k in tensors if k.startswith("players.decoder.") and tensors[k].dim() > 1)
        if damage == "wrong shape":
            tensors[key] = torch.zeros(3, 3)
        else:
            del tensors[key]
        save_file(tensors, str(weights))
        expect = "weights of player 'decoder' do not fit"
    else:
        (checkpoint / "config.yaml").write_text("")
        expect = "config.yaml"
    with pytest.raises(CheckpointError, match=expect):
        load_checkpoint(checkpoint)


# ---- a full disk ---------------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs; mounting one needs root (or CAP_SYS_ADMIN)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full-disk probe mounts a small tmpfs, which needs root; run the suite as root to include it")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()}); the full-disk probe needs one")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_fails_the_checkpoint_write_cleanly(small_disk):
    run = small_disk / "run"
    trainer = _trainer(run, ["train.max_steps=100", "train.checkpoint_every=1", "train.keep_last=0"])
    with pytest.raises(CheckpointWriteError, match=r"could not write checkpoint .* MiB free there\): free disk space"):
        trainer.train()
    saved = checkpoint_dirs(run)
    assert 0 < len(saved) < 100 and not list((run / "checkpoints").glob(".tmp-*"))  # nothing partial left
    load_checkpoint(saved[-1])  # the last complete one loads


@pytest.mark.slow
def test_a_full_disk_ends_the_train_command_in_one_line(small_disk, shared_data):
    res = _train_cli(["--out", str(small_disk / "run"), "train.max_steps=1000", "train.checkpoint_every=1",
                      "train.keep_last=0"], shared_data)
    assert res.returncode == 4 and "Traceback" not in res.stderr
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert "free disk space" in line


# ---- the registry table --------------------------------------------------------------------------------------------
def test_concurrent_registry_writers_with_one_killed_lose_no_acknowledged_row(tmp_path):
    path, go = tmp_path / "catalog.sqlite", tmp_path / "go"
    Catalog(path).close()
    writers = {tag: procs.popen([sys.executable, "-c", WRITER, str(path), tag, "150", str(go), str(CATALOG)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in "abc"}
    go.touch()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill writer c once it has committed some rows
        with sqlite3.connect(str(path)) as db:
            if db.execute("SELECT count(*) FROM results WHERE protocol LIKE '%\"c\"%'").fetchone()[0] >= 5:
                break
        time.sleep(0.02)
    os.kill(writers["c"].pid, signal.SIGKILL)
    for tag in "ab":
        assert writers[tag].wait(timeout=120) == 0, writers[tag].communicate()
    with Catalog(path) as catalog:
        assert catalog.query("PRAGMA integrity_check")[0][0] == "ok"
        counts = {tag: catalog.query("SELECT count(*) FROM results WHERE protocol LIKE ?", (f'%"{tag}"%',))[0][0]
                  for tag in "abc"}
        assert counts["a"] == counts["b"] == 150 and 5 <= counts["c"] <= 150
        assert catalog.register_run("/after/the/kill") > 0  # no lock left behind


def test_a_held_registry_lock_is_announced_and_fails_with_a_clear_error(tmp_path, capsys):
    path = tmp_path / "catalog.sqlite"
    Catalog(path).close()
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        start = time.monotonic()
        with pytest.raises(CatalogError, match="is locked by another process"):
            with Catalog(path, lock_timeout=3) as catalog:
                catalog.register_run("/runs/x")
        assert time.monotonic() - start < 10
        assert "locked by another process; waiting up to 3 s" in capsys.readouterr().err
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_the_registry_command_reads_a_read_only_table_and_refuses_a_damaged_one(tmp_path, capsys):
    from zoo.commands.registry import main
    path = tmp_path / "catalog.sqlite"
    with Catalog(path) as catalog:
        catalog.register_run("/runs/x", model="vae", dataset="mnist")
    before = path.read_bytes()
    os.chmod(path, 0o444)
    assert main(["--registry", str(path), "list"]) == 0
    assert "model=vae dataset=mnist" in capsys.readouterr().out
    assert path.read_bytes() == before  # reading changed nothing
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(os.urandom(4096))
    assert main(["--registry", str(bad), "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: catalog") and "is damaged" in err and err.count("\n") == 1


# ---- processes: a killed launcher, a stalled peer ------------------------------------------------------------------
def _launch(args, data, out, np_):
    env = subprocess_env(ZOO_DATA=str(data), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    launcher = (LAUNCH_TWO if np_ == 2 else ("-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
                                             "--mixed_precision", "no", "--dynamo_backend", "no"))
    proc = procs.popen([sys.executable, *launcher, TRAIN, "recipes/tiny_vae.yaml", "--out", str(out), *QUIET,
                        "train.max_steps=100000", "train.log_every=1", "train.checkpoint_every=0", *args],
                       cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert (out / "metrics.jsonl").exists(), proc.communicate()[0][-3000:]
    return proc


def _group_ends(pgid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("processes, sig", [(1, signal.SIGKILL),
                                           pytest.param(2, signal.SIGKILL, marks=pytest.mark.slow),
                                           pytest.param(1, signal.SIGTERM, marks=pytest.mark.slow)])
def test_workers_of_a_killed_launcher_stop_with_a_checkpoint(tmp_path, shared_data, processes, sig):
    """SIGKILL of the launcher, or a SIGTERM that accelerate's one-process launcher does not pass on."""
    out = tmp_path / "run"
    proc = _launch([], shared_data, out, processes)
    os.kill(proc.pid, sig)  # the launcher only; its workers live on in the process group
    proc.wait()
    assert _group_ends(proc.pid, 60), "the workers kept training after their launcher died"
    output = proc.stdout.read()
    assert output.count("the launcher (pid") == processes, output[-3000:]
    (ckpt,) = checkpoint_dirs(out)
    assert load_checkpoint(out).step == int(ckpt.name.split("_")[-1]) > 0


@pytest.mark.slow
def test_a_stalled_peer_ends_the_job_naming_its_rank(tmp_path, shared_data):
    out = tmp_path / "run"
    proc = _launch(["train.collective_timeout_s=5"], shared_data, out, 2)
    workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                              text=True).stdout.split()]
    rank1 = next(w for w in workers if "LOCAL_RANK=1" in Path(f"/proc/{w}/environ").read_text().split("\0"))
    os.kill(rank1, signal.SIGSTOP)
    try:
        output, _ = proc.communicate(timeout=120)
    finally:
        os.kill(rank1, signal.SIGCONT) if _alive(rank1) else None
    assert proc.returncode != 0
    assert "rank 0 of 2: a collective operation failed after waiting up to train.collective_timeout_s=5 s: " \
           "rank(s) 1 did not arrive" in output
    assert _group_ends(proc.pid, 60)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_procs_kills_the_whole_process_group_of_a_test(tmp_path):
    """What every test that starts processes relies on: the grandchildren die with the child (a training run started
    by a launcher started by a test)."""
    pids = tmp_path / "pids"
    proc = procs.popen(["bash", "-c", f"sleep 300 & echo $! > {pids}; sleep 300"])
    deadline = time.monotonic() + 20
    while not (pids.exists() and pids.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(pids.read_text())
    procs.kill_all()
    assert proc.poll() is not None and _group_ends(proc.pid, 5)
    assert not _alive(grandchild) or Path(f"/proc/{grandchild}/stat").read_text().split()[2] == "Z"
