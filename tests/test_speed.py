"""The speed switches (zoo.training.speed) on CPU: what "auto" resolves to, and that each switch leaves the training
maths unchanged (channels_last, fused Adam and torch.compile give the losses and weights of the plain run)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from conftest import RandomImages, data_shape, tiny_recipe
from zoo import build_model
from zoo.config import ConfigError
from zoo.losses.penalties import gradient_penalty
from zoo.training import Trainer
from zoo.training.speed import SpeedPlan, resolve_speed, set_tf32, to_memory_format

OFF = ["train.channels_last=false", "train.fused_adam=false", "train.tf32=false", "train.compile=false"]


def run(model_name: str, overrides: list[str], steps: int = 3) -> tuple[Trainer, list[dict[str, float]]]:
    recipe = tiny_recipe(model_name, ["train.log_every=1"] + overrides)
    torch.manual_seed(0)
    trainer = Trainer(build_model(recipe), recipe, dataset=RandomImages(64, data_shape(recipe)))
    losses = []
    for _ in range(steps):
        trainer.train_step()
        losses.append({k: v for k, v in trainer._flush_logs().items() if k.endswith("/loss")})
    return trainer, losses


def assert_same_run(a: tuple[Trainer, list], b: tuple[Trainer, list], tol: float) -> None:
    (ta, la), (tb, lb) = a, b
    for step_a, step_b in zip(la, lb):
        assert step_a.keys() == step_b.keys()
        for k in step_a:
            assert step_b[k] == pytest.approx(step_a[k], rel=tol, abs=tol), k
    wa, wb = ta.weights(), tb.weights()
    assert wa.keys() == wb.keys()  # checkpoints stay interchangeable
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=tol, atol=tol)


def test_auto_resolves_to_everything_off_on_cpu_and_to_the_gpu_defaults_on_cuda(one_thread):
    recipe = tiny_recipe("dcgan")
    model = build_model(recipe)
    assert resolve_speed(recipe.train, torch.device("cpu"), model, False) == SpeedPlan()
    cuda = resolve_speed(recipe.train, torch.device("cuda"), model, True)
    assert (cuda.channels_last, cuda.fused_adam, cuda.tf32, cuda.compile) == (True, True, True, False)
    # TF32 follows the precision: a run that asked for full fp32 keeps it
    assert not resolve_speed(recipe.train, torch.device("cuda"), model, False).tf32
    # channels_last only where a player has convolutions
    mlp_only = SimpleNamespace(players=nn.ModuleDict({"encoder": nn.Linear(4, 2), "decoder": nn.Linear(2, 4)}))
    assert not resolve_speed(recipe.train, torch.device("cuda"), mlp_only, True).channels_last


def test_switch_values_are_checked():
    with pytest.raises(ConfigError, match="train.channels_last"):
        tiny_recipe("dcgan", ["train.channels_last=sometimes"])
    with pytest.raises(ConfigError, match="train.compile"):
        tiny_recipe("dcgan", ["train.compile=auto"])


def test_set_tf32_sets_matmul_and_convolution_flags():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        set_tf32(True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        set_tf32(False)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_channels_last_changes_the_layout_not_the_run(one_thread):
    plain = run("dcgan", OFF)
    fast = run("dcgan", OFF + ["train.channels_last=true"])
    conv = next(m for m in fast[0].model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    batch = to_memory_format(torch.zeros(2, 3, 4, 4), fast[0].speed)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert_same_run(plain, fast, 1e-4)


def test_fused_adam_is_the_same_update(one_thread):
    plain = run("vae", OFF)
    fused = run("vae", OFF + ["train.fused_adam=true"])
    assert all(g.get("fused") for opt in fused[0].optimizers.values() for g in opt.param_groups)
    assert not any(g.get("fused") for opt in plain[0].optimizers.values() for g in opt.param_groups)
    assert_same_run(plain, fused, 1e-5)


def test_compile_gives_the_eager_run_and_keeps_checkpoint_keys(one_thread):
    """WGAN-GP: the critic is compiled, and its gradient penalty (a double backward, which compiled autograd
    lacks) runs through the eager forward. aot_eager: the compile machinery without minutes of C++ codegen."""
    options = ["train.compile_options={backend: aot_eager}"]
    eager = run("wgan_gp", OFF, steps=2)
    compiled = run("wgan_gp", OFF + ["train.compile=true"] + options, steps=2)
    assert all(getattr(p, "_compiled_call_impl", None) is not None for p in compiled[0].model.players.values())
    assert_same_run(eager, compiled, 1e-4)


def test_gradient_penalty_of_a_compiled_critic_equals_the_eager_one():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 1))
    real, fake = torch.randn(5, 3, 2, 2), torch.randn(5, 3, 2, 2)
    g = torch.Generator().manual_seed(1)
    expected = gradient_penalty(critic, real, fake, g.manual_seed(1))
    expected.backward()
    grads = [p.grad for p in critic.parameters()]  # the last bias gets none: the penalty does not depend on it
    critic.zero_grad()
    critic.compile(backend="aot_eager")
    got = gradient_penalty(critic, real, fake, g.manual_seed(1))
    got.backward()  # would raise "does not currently support double backward" through the compiled call
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    assert sum(g is not None for g in grads) == 3
    for p, ref in zip(critic.parameters(), grads):
        assert (p.grad is None) == (ref is None)
        if ref is not None:
            torch.testing.assert_close(p.grad, ref)


@pytest.mark.slow
def test_inductor_compile_on_cpu_gives_the_eager_losses(one_thread):
    """The default backend (inductor, C++ code generation on CPU; ~45 s of CPU time for the tiny WGAN-GP)."""
    eager = run("wgan_gp", OFF, steps=2)
    compiled = run("wgan_gp", OFF + ["train.compile=true"], steps=2)
    assert_same_run(eager, compiled, 1e-4)
