"""One writer per run directory (issue 21): a live writer's run.lock refuses a second `zoo train` / Trainer at once,
naming it; a lock left by a killed process on this host is taken over with a note; one from another host is refused
with how to remove it; a finished run leaves the lock free."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest

import procs
from conftest import REPO, RandomImages, data_shape, subprocess_env, tiny_recipe
from zoo import build_model
from zoo.training import Trainer, runlock
from zoo.training.rundir import RunDirError

HOLDER = """
import sys, time
from zoo.training import runlock
lock = runlock.acquire(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""


def _trainer(out):
    recipe = tiny_recipe("vae", ["train.max_steps=2"])
    return Trainer(build_model(recipe), recipe, out, dataset=RandomImages(64, data_shape(recipe)))


def test_a_live_writer_refuses_a_second_one_at_once_and_a_killed_one_is_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    holder = procs.popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True, cwd=REPO,
                         env=subprocess_env())
    assert holder.stdout.readline() == "held\n"
    who = f"pid {holder.pid} on host {socket.gethostname()}, started "
    from zoo.commands.train import main
    assert main(["recipes/tiny_vae.yaml", "--out", str(run), "--resume", "auto", "train.max_steps=2"]) == 2
    (line,) = capsys.readouterr().err.splitlines()  # one line, before anything was built or written
    assert line.startswith(f"error: '{run}' is being written by another live process ({who}") and \
        f"kill -TERM {holder.pid}" in line
    with pytest.raises(RunDirError, match=f"another live process \\({who}"):
        _trainer(run).train()
    assert sorted(p.name for p in run.iterdir()) == ["run.lock"]  # nothing of the refused runs

    holder.send_signal(signal.SIGKILL)
    holder.wait()
    trainer = _trainer(run)
    trainer.train()  # the kernel released the dead holder's flock: taken over, with a note
    assert f"taking over {run / 'run.lock'}: its holder (pid {holder.pid}" in capsys.readouterr().out
    assert trainer.step == 2 and (run / "run.lock").read_text() == ""  # released at the end: empty, free
    assert runlock.acquire(run, probe=True) is None


def test_a_lock_from_another_host_is_refused_with_how_to_remove_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.lock").write_text(json.dumps({"pid": 4242, "host": "gpu-node-7", "started": "2024-01-01T00:00:00Z"}))
    message = (f"'{run / 'run.lock'}' says pid 4242 on host gpu-node-7, started 2024-01-01T00:00:00Z writes this run; "
               f"a lock taken on another host cannot be checked from here. If that run has ended (or the host is "
               f"gone), delete '{run / 'run.lock'}' and resume")
    with pytest.raises(RunDirError) as caught:
        runlock.acquire(run)
    assert str(caught.value) == message
    (run / "run.lock").unlink()
    lock = runlock.acquire(run)
    assert json.loads((run / "run.lock").read_text())["host"] == socket.gethostname()
    lock.release()
