"""The tutorials in docs/tutorials/ run as written: each ```python block is executed, each ```yaml / ```python block
whose first line is `# file: NAME` is written to NAME, and each ```bash line runs (`zoo` = `python -m zoo.cli`), in
order, in an empty folder. Their results are then checked."""
from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, subprocess_env

BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def run_tutorial(name: str, cwd: Path, **env: str) -> list[str]:
    """Run docs/tutorials/<name>.md in `cwd`; returns the stdout of each command."""
    env = subprocess_env(XDG_CACHE_HOME=str(cwd / ".cache"), ZOO_CATALOG=str(cwd / "catalog.sqlite"), **env)
    outputs = []
    for lang, body in BLOCK.findall((REPO / "docs" / "tutorials" / f"{name}.md").read_text()):
        first = body.splitlines()[0]
        if first.startswith("# file: "):
            (cwd / first.removeprefix("# file: ").strip()).write_text(body)
            continue
        commands = ([[sys.executable, "-c", body]] if lang == "python" else
                    [[sys.executable, "-m", "zoo.cli", *shlex.split(line)[1:]] if line.startswith("zoo ")
                     else shlex.split(line) for line in body.splitlines() if line.strip() and lang == "bash"])
        for command in commands:
            res = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
            assert res.returncode == 0, f"{command}:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
            outputs.append(res.stdout)
    return outputs


@pytest.mark.slow  # ~45 s on 2 cores: three processes; image_folder itself is tested in tests/test_data.py
def test_train_on_your_own_data(tmp_path):
    run_tutorial("own_data", tmp_path)
    from zoo.data import load_dataset
    train = load_dataset("image_folder", "train", root=tmp_path, path="my_images", image_size=16, cache=False)
    test = load_dataset("image_folder", "test", root=tmp_path, path="my_images", image_size=16, cache=False)
    assert (len(train), len(test)) == (58, 6) and train.classes == ["blues", "reds"]  # 90 / 10 of 64
    assert tuple(train[0].shape) == (3, 16, 16)
    ckpt = tmp_path / "runs" / "my_data" / "checkpoints" / "step_00000020"
    result = json.loads((ckpt / "eval.json").read_text())["elbo"]
    assert result["protocol"]["dataset"] == "image_folder" and result["protocol"]["n_real"] == 6  # the test split
    assert result["value"] < 0 and result["protocol"]["iw_samples"] == 4  # a log-likelihood bound of 768 pixels
    assert (tmp_path / "runs" / "my_data" / "loss_curves.png").is_file()


@pytest.mark.slow  # ~40 s on 2 cores: three processes
def test_add_your_own_model(tmp_path, shared_data):
    outputs = run_tutorial("own_model", tmp_path, ZOO_DATA=str(shared_data))
    assert outputs[-1].split() == ["MLPVAE", "30", "(4,", "1,", "16,", "16)"]  # load_checkpoint, in a new process
    run = tmp_path / "runs" / "mine"
    config = (run / "config.yaml").read_text()
    assert f"imports:\n- my_model@{tmp_path.resolve()}\n" in config and "name: mlp_vae" in config
    result = json.loads((run / "checkpoints" / "step_00000030" / "eval.json").read_text())["elbo"]
    assert result["protocol"]["model"] == "mlp_vae" and result["protocol"]["iw_samples"] == 8
    assert -16 * 16 * math.log(2) < result["value"] < 0  # better than a coin per pixel after 30 steps
