"""benchmarks/device_check.py's CPU dry run: the GPU check's code paths at tiny sizes, and its one summary table."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import BENCHMARKS, REPO, subprocess_env

SCRIPT = BENCHMARKS / "device_check.py"


def test_device_check_dry_run_prints_one_table_with_every_section(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path),
           "--models", "vae,wgan_gp", "--bench-models", "dcgan", "--deasy-procs", "",
           "--sections", "train,bf16,bench,wgan1000,inception,deasy,ddp"]
    env = subprocess_env(OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (tmp_path / "device_check.txt").read_text()
    assert proc.stdout.rstrip().endswith(table.rstrip())  # the table printed last is the one written to --out
    rows = json.loads((tmp_path / "device_check.json").read_text())["rows"]
    status = {(r["section"], r["item"]): r["status"] for r in rows}
    for model in ("vae", "wgan_gp"):
        assert status[("train", model)] == "ok" and status[("bf16", model)] == "ok"
    assert status[("bench", "dcgan off")] == status[("bench", "dcgan default")] == "ok"
    assert status[("wgan1000", "wgan_gp resnet default")] == "ok"
    assert status[("inception", "8 samples 3x28px")] == "ok"
    assert status[("deasy", "1 concurrent run(s)")] == "ok"
    assert status[("ddp", "2-process run")] == "skipped"  # no 2 GPUs here
    details = json.loads((tmp_path / "device_check.json").read_text())
    # the bench rows hold what the table says: ratio = median of the per-round ratios, img/s = images / step time
    row = details["bench"][0]
    assert row["ratio"] == sorted(row["ratios"])[len(row["ratios"]) // 2]
    assert row["trainer_img_s"] * row["trainer_ms"] / 1e3 == pytest.approx(8 * 2)  # batch 8, 2 batches a step
    # extrapolated Deasy time = 22 runs x 100 epochs x 937 steps over the measured steps/s
    (deasy,) = details["deasy"]
    rate = sum(r["steps"] / r["seconds"] for r in deasy["reports"])
    note = next(r["note"] for r in rows if r["section"] == "deasy")
    assert f"EXTRAPOLATED 22x100 epochs: {22 * 100 * 937 / rate / 60:.1f} min" in note


@pytest.mark.slow
def test_device_check_two_process_section_as_a_cpu_job(tmp_path):
    """The ddp section's worker under `accelerate launch` with 2 processes (gloo on CPU): both end with equal
    parameters after training on different shards."""
    cmd = [sys.executable, str(SCRIPT), "--dry-run", "--ddp-cpu", "--out", str(tmp_path),
           "--sections", "ddp"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=subprocess_env(OMP_NUM_THREADS="1"),
                          cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (row,) = [r for r in json.loads((tmp_path / "device_check.json").read_text())["rows"] if r["section"] == "ddp"]
    assert row["status"] == "ok" and json.loads(row["note"]) == {"processes": 2, "max_weight_difference": 0.0}
