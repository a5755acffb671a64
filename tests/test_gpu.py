"""The GPU claims of benchmarks/device_check.py as tests (`pytest -m gpu` on a CUDA machine; skipped elsewhere): bf16
training with finite losses and reloadable checkpoints for every model, no host sync inside the step loop, bf16 vs
fp32 agreement on the first steps, the speed switches giving the plain run, Inception features batched on the
device."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import RandomImages, benchmark, data_shape, tiny_recipe
from zoo import build_model, list_models, load_checkpoint
from zoo.training import Trainer

device_check = benchmark("device_check")
sections = benchmark("device_sections")

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA device: run `pytest -m gpu` on a GPU machine "
                                        "(benchmarks/device_check.sh checks the same claims there)")]
CUDA = torch.device("cuda")


def trainer_for(name: str, overrides: list[str], out=None) -> Trainer:
    recipe = tiny_recipe(name, overrides)
    torch.manual_seed(0)
    return Trainer(build_model(recipe), recipe, out, dataset=RandomImages(512, data_shape(recipe)))


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_in_bf16_with_finite_losses_and_reloads(name, tmp_path):
    trainer = trainer_for(name, ["train.max_steps=100", "train.log_every=10"], tmp_path / "run")
    assert trainer.autocast_dtype == torch.bfloat16 and trainer.device.type == "cuda"
    trainer.train()
    ok, n_logs, _ = sections.finite_losses(tmp_path / "run" / "metrics.jsonl")
    assert ok and n_logs == 10
    ckpt = load_checkpoint(tmp_path / "run", device=CUDA, ema=False)
    live = trainer.weights()
    saved = {f"players.{n}.{k}": v for n, m in ckpt.model.players.items() for k, v in m.state_dict().items()}
    assert saved.keys() == live.keys() and all(torch.equal(saved[k], v) for k, v in live.items())
    with torch.no_grad():
        assert torch.isfinite(ckpt.model.sample(4)).all()


@pytest.mark.parametrize("name", ["vae", "wgan_gp", "ijae", "vgh_plus", "jsg_vae"])
def test_no_host_sync_inside_the_step_loop(name):
    trainer = trainer_for(name, ["train.log_every=1000"])
    for _ in range(2):
        trainer.train_step()
    assert sections.count_syncs(lambda: [trainer.train_step() for _ in range(10)]) == 0
    assert all(math.isfinite(v) for k, v in trainer._flush_logs().items())  # the deferred check still happens


@pytest.mark.parametrize("name", list_models())
def test_bf16_losses_agree_with_fp32_on_the_first_steps(name):
    args = device_check.parser().parse_args(["--dry-run"])  # tiny recipes
    fp32 = sections.phase_losses(name, "no", 3, args)
    bf16 = sections.phase_losses(name, "bf16", 3, args)
    for a, b in zip(fp32, bf16):
        for key in a:
            assert abs(b[key] - a[key]) <= sections.BF16_RTOL * abs(a[key]) + sections.BF16_ATOL, key


def test_speed_switches_give_the_plain_run():
    """Every switch on (inductor compile, channels_last, fused Adam, TF32) against every switch off, in fp32: the
    same losses to TF32 rounding over the first steps."""
    off = ["train.mixed_precision='no'", "train.log_every=1", "train.tf32=false", "train.channels_last=false",
           "train.fused_adam=false"]
    on = ["train.mixed_precision='no'", "train.log_every=1", "train.tf32=true", "train.channels_last=true",
          "train.fused_adam=true", "train.compile=true"]
    runs = []
    for overrides in (off, on):
        trainer = trainer_for("wgan_gp", overrides)
        runs.append([])
        for _ in range(3):
            trainer.train_step()
            runs[-1].append(trainer._flush_logs())
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    for a, b in zip(*runs):
        for key in a:
            if key.endswith("/loss"):
                assert b[key] == pytest.approx(a[key], rel=1e-2, abs=1e-3), key


def test_inception_features_batched_on_the_device_equal_the_cpu_ones(tmp_path):
    from zoo.config import DataConfig
    from zoo.evaluation import EvalContext, inception

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    weights = inception.random_inception_weights(tmp_path / "inception.pth")
    images = RandomImages(16, (3, 32, 32))
    out = {}
    for device in ("cpu", "cuda"):
        ctx = EvalContext(None, DataConfig(name="tensor"), source="data:tensor:train", sample_split="train",
                          datasets={"train": images}, n_samples=16, batch_size=8, device=device)
        out[device] = inception.inception_features(ctx, "samples", str(weights))[:2]
    for cpu, gpu in zip(out["cpu"], out["cuda"]):
        torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-3)


def test_resident_data_is_indexed_on_the_device_in_the_cpu_order():
    """The device-resident stream (pinned, non-blocking permutation copies) yields the CPU stream's batches, across
    an epoch boundary."""
    from zoo.data.stream import BatchStream

    data = RandomImages(40, (1, 4, 4))
    cpu, gpu = BatchStream(data, 8, seed=3), BatchStream(data, 8, seed=3, device=CUDA)
    assert gpu.resident is not None and gpu.resident.device.type == "cuda"
    for _ in range(12):  # 5 batches an epoch
        b = gpu.next()
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), cpu.next(), rtol=0, atol=0)
