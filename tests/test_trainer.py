"""The generic trainer: exact resume, accumulation, clipping, EMA, schedules, non-finite losses, the data stream."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from conftest import RECIPES as RECIPES_DIR, RandomImages, data_shape, tiny_recipe
from zoo import build_model, create_model, load_checkpoint
from zoo.config import ConfigError, OptimizerConfig, ScheduleConfig
from zoo.factory import load_recipe
from zoo.data.stream import BatchStream, batches_per_epoch, to_model_range
from zoo.models.base import GenerativeModel, Phase, PhaseOutput
from zoo.registry import MODELS, register_model
from zoo.training import NonFiniteLossError, Trainer
from zoo.training.checkpoint import CheckpointError, checkpoint_dirs
from zoo.models.base import validate_schedule
from zoo.training.optim import lr_factor


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# model -> (an EMA player, an optimizer to schedule)
RESUME_CASES = {"vae": ("decoder", "vae"), "dcgan": ("generator", "gen"), "wgan_gp": ("generator", "gen"),
                "aae": ("decoder", "autoencoder"), "adversarial_vb": ("decoder", "vae"), "veegan": ("generator", "gen"),
                "vgh_plus": ("generator", "generator"), "ijae": ("generator", "gen"), "vgh": ("generator", "encoder"),
                "jsg_vae": ("decoder", "vae")}


def test_resume_cases_cover_every_model():
    assert sorted(RESUME_CASES) == sorted(MODELS.names())


@pytest.mark.parametrize("on_device", ["auto", "never"])  # device-resident data / a DataLoader stream
@pytest.mark.parametrize("name", sorted(RESUME_CASES))
def test_resume_is_exact(name, on_device, tmp_path, one_thread):
    """2N steps straight == N steps, save, a fresh process-like trainer resumes, N steps: identical on CPU."""
    n = 3
    ema_player, scheduled = RESUME_CASES[name]
    overrides = ["train.ema={players: [%s], decay: 0.9}" % ema_player,
                 "optim.%s.schedule={name: cosine, warmup_steps: 2}" % scheduled,
                 f"train.max_steps={2 * n}", f"data.on_device={on_device}"]
    recipe = tiny_recipe(name, overrides)
    dataset = RandomImages(160, data_shape(recipe))  # 5 batches per epoch: the run crosses an epoch boundary

    straight = Trainer(build_model(recipe), recipe, dataset=dataset)
    assert (straight.stream.resident is None) == (on_device == "never")
    for _ in range(2 * n):
        straight.train_step()

    torch.manual_seed(123)  # the global RNG's state must not matter: create_model seeds from train.seed
    first = Trainer(build_model(recipe), recipe, tmp_path / "run", dataset=dataset)
    for _ in range(n):
        first.train_step()
    ckpt = first.save_checkpoint()

    torch.manual_seed(999)
    second = Trainer(build_model(recipe, seed=999), recipe, tmp_path / "run", dataset=dataset)  # other weights
    second.resume(tmp_path / "run")
    assert second.step == n and ckpt.name == f"step_{n:08d}"
    for _ in range(n):
        second.train_step()

    a, b = _state(straight.model), _state(second.model)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    for key, shadow in straight.ema.state_dict().items():
        assert torch.equal(shadow, second.ema.state_dict()[key]), f"EMA {key} differs after resume"
    for key in straight.schedulers:
        assert straight.schedulers[key].get_last_lr() == second.schedulers[key].get_last_lr()


def test_checkpoint_roundtrip_and_keep_last(tmp_path):
    recipe = tiny_recipe("dcgan", ["train.max_steps=6", "train.checkpoint_every=2", "train.keep_last=2",
                                   "train.ema={players: [generator], decay: 0.5}"])
    trainer = Trainer(build_model(recipe), recipe, tmp_path, dataset=RandomImages(256, data_shape(recipe)))
    trainer.train()
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step_00000004", "step_00000006"]
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    # weights_only=True loads the trainer state: no code runs on load
    state = torch.load(tmp_path / "checkpoints" / "step_00000006" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 6 and set(state["optimizers"]) == {"disc", "gen"}

    loaded = load_checkpoint(tmp_path)  # run dir -> latest checkpoint
    assert loaded.step == 6 and loaded.recipe.model == recipe.model
    for k, v in trainer.ema.shadow["generator"].state_dict().items():  # EMA weights are what load_checkpoint gives
        assert torch.equal(loaded.model.players["generator"].state_dict()[k], v)
    for k, v in trainer.players["discriminator"].state_dict().items():
        assert torch.equal(loaded.model.players["discriminator"].state_dict()[k], v)
    raw = load_checkpoint(tmp_path, ema=False)
    for k, v in trainer.players["generator"].state_dict().items():
        assert torch.equal(raw.model.players["generator"].state_dict()[k], v)


def test_failed_write_leaves_no_partial_checkpoint(tmp_path, monkeypatch):
    recipe = tiny_recipe("vae")
    trainer = Trainer(build_model(recipe), recipe, tmp_path, dataset=RandomImages(64, data_shape(recipe)))
    trainer.train_step()
    good = trainer.save_checkpoint()
    trainer.train_step()
    import zoo.training.checkpoint as ck

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", broken)
    with pytest.raises(CheckpointError, match="could not write checkpoint .*step_00000002.*disk full"):
        trainer.save_checkpoint()
    assert checkpoint_dirs(tmp_path) == [good]
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_nonfinite_loss_stops_with_phase_and_step_and_keeps_last_checkpoint(tmp_path):
    recipe = tiny_recipe("vae", ["train.max_steps=10", "train.checkpoint_every=2"])
    model = build_model(recipe)
    original = model.phase_loss

    def poisoned(phase, batch, step):
        out = original(phase, batch, step)
        return PhaseOutput(out.loss * float("nan"), out.logs) if step == 3 else out

    model.phase_loss = poisoned
    trainer = Trainer(model, recipe, tmp_path, dataset=RandomImages(64, data_shape(recipe)))
    with pytest.raises(NonFiniteLossError, match=r"phase 'vae' at step 3"):
        trainer.train()
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step_00000002"]
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 2 and all(torch.isfinite(p).all() for p in ckpt.model.parameters())


# ---- a deterministic toy model for accumulation and clipping ------------------------------------------------------
@dataclass
class _ToyConfig:
    dim: int = 4


class _Toy(GenerativeModel):
    config_class = _ToyConfig

    def __init__(self, config):
        super().__init__(config)
        self.players["a"] = nn.Linear(config.dim * 4, 1)

    @classmethod
    def default_optim(cls, config):
        return {"a": OptimizerConfig(players=["a"], lr=0.1)}

    def phases(self):
        return (Phase("fit", "a"),)

    def phase_loss(self, phase, batch, step):
        return PhaseOutput((self.players["a"](batch.flatten(1)) - 3.0).pow(2).mean())

    def sample(self, n, *, generator=None):
        return torch.zeros(n, 1, 2, 2)


@pytest.fixture
def toy_model():
    if "_toy" not in MODELS:
        register_model("_toy")(_Toy)
    yield
    MODELS._entries.pop("_toy", None)


def _toy_trainer(overrides):
    recipe = load_recipe({"model": {"name": "_toy"}, "data": {"batch_size": 8},
                          "train": {"progress": False, "tensorboard": False}}, overrides)
    torch.manual_seed(0)
    return Trainer(build_model(recipe), recipe, dataset=RandomImages(64, (1, 4, 4)))


def test_accumulation_equals_one_big_batch(toy_model):
    one, acc = _toy_trainer([]), _toy_trainer(["optim.a.accumulation=4"])
    batch = one.stream.next()
    one.run_phase(one.phases[0], batch, 0)
    acc.run_phase(acc.phases[0], batch, 0)
    for p, q in zip(one.model.parameters(), acc.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_accumulation_logs_the_mean_loss_over_micro_batches(toy_model):
    trainer = _toy_trainer(["optim.a.accumulation=4"])
    batch = trainer.stream.next()
    a = trainer.players["a"]
    with torch.no_grad():  # the four micro-batch losses at the weights before the step
        losses = [(a(chunk.flatten(1)) - 3.0).pow(2).mean().item() for chunk in batch.chunk(4)]
    assert len(set(losses)) == 4  # distinct, so "the last one" and "the mean" differ
    out = trainer.run_phase(trainer.phases[0], batch, 0)
    assert out.loss.item() == pytest.approx(sum(losses) / 4, rel=1e-6)
    assert out.loss.item() != pytest.approx(losses[-1], rel=1e-3)


def test_gradient_clipping_bounds_the_norm(toy_model):
    trainer = _toy_trainer(["optim.a.grad_clip=0.01"])
    opt = trainer.optimizers["a"]
    norms = []
    original = opt.step
    opt.step = lambda *a, **k: (norms.append(torch.cat([p.grad.flatten() for p in trainer.model.parameters()])
                                             .norm().item()), original(*a, **k))[1]
    trainer.train_step()
    assert norms and norms[0] == pytest.approx(0.01, rel=1e-4)  # the raw gradient norm is far larger


def test_lr_schedules():
    cos = lr_factor(ScheduleConfig("cosine", warmup_steps=10, final_factor=0.1), max_steps=110)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(10) == pytest.approx(1.0) and cos(60) == pytest.approx(0.55) and cos(110) == pytest.approx(0.1)
    lin = lr_factor(ScheduleConfig("linear"), max_steps=100)
    assert lin(50) == pytest.approx(0.5) and lin(100) == pytest.approx(0.0)
    assert lr_factor(ScheduleConfig(), 100)(77) == 1.0


def test_ema_average(toy_model):
    trainer = _toy_trainer(["train.ema={players: [a], decay: 0.75}"])
    w0 = trainer.players["a"].weight.detach().clone()
    trainer.train_step()
    w1 = trainer.players["a"].weight.detach().clone()
    torch.testing.assert_close(trainer.ema.shadow["a"].weight, 0.75 * w0 + 0.25 * w1)


def test_schedule_validation_names_the_problem(toy_model):
    model = create_model("_toy")
    with pytest.raises(ConfigError, match=r"optim\.a: phase 'fit' needs this optimizer"):
        validate_schedule(model, {}, model.phases())
    with pytest.raises(ConfigError, match=r"unknown player 'b'"):
        validate_schedule(model, {"a": OptimizerConfig(players=["a", "b"])}, model.phases())
    with pytest.raises(ConfigError, match=r"players a are in no optimizer"):
        validate_schedule(model, {"a": OptimizerConfig(players=[])}, model.phases())


class _TwoPlayers(_Toy):
    """Players a and b in one optimizer; phase "only_a" trains a alone (the AAE encoder's adversarial phase)."""

    def __init__(self, config):
        super().__init__(config)
        self.players["b"] = nn.Linear(config.dim * 4, 1)

    @classmethod
    def default_optim(cls, config):
        return {"ab": OptimizerConfig(players=["a", "b"], lr=0.1)}

    def phases(self):
        return (Phase("both", "ab"), Phase("only_a", "ab", players=("a",)))

    def phase_loss(self, phase, batch, step):
        out = self.players["a"](batch.flatten(1))
        if phase == "both":
            out = out + self.players["b"](batch.flatten(1))
        return PhaseOutput((out - 3.0).pow(2).mean())


def test_phase_players_subset_steps_only_those_and_keeps_the_others_optimizer_state():
    register_model("_two")(_TwoPlayers)
    try:
        recipe = load_recipe({"model": {"name": "_two"}, "data": {"batch_size": 8},
                              "train": {"progress": False, "tensorboard": False}})
        torch.manual_seed(0)
        trainer = Trainer(build_model(recipe), recipe, dataset=RandomImages(64, (1, 4, 4)))
        both, only_a = trainer.phases
        trainer.run_phase(both, trainer.stream.next(), 0)
        a, b = trainer.players["a"], trainer.players["b"]
        state = trainer.optimizers["ab"].state
        b_before = [p.detach().clone() for p in b.parameters()]
        b_state = {id(p): {k: v.clone() for k, v in state[p].items()} for p in b.parameters()}
        a_before = [p.detach().clone() for p in a.parameters()]
        trainer.run_phase(only_a, trainer.stream.next(), 0)
        assert all(p.grad is None for p in b.parameters())
        assert all(torch.equal(p, q) for p, q in zip(b.parameters(), b_before)), "b must not move"
        for p in b.parameters():  # Adam skipped b: its moments and step count are those of the first phase
            assert all(torch.equal(v, b_state[id(p)][k]) for k, v in state[p].items())
        assert all(not torch.equal(p, q) for p, q in zip(a.parameters(), a_before))
        assert all(state[p]["step"].item() == 2 for p in a.parameters())  # a stepped twice, b once
        assert all(state[p]["step"].item() == 1 for p in b.parameters())

        bad = (Phase("only_c", "ab", players=("c",)),)
        with pytest.raises(ConfigError, match=r"optim\.ab\.players: phase 'only_c' trains c, which must be among "
                                              r"this optimizer's players \(a, b\)"):
            validate_schedule(trainer.model, recipe.optim, bad + (both,))
    finally:
        MODELS._entries.pop("_two", None)


# ---- the data stream -----------------------------------------------------------------------------------------------
def test_stream_epochs_cover_data_once_and_shards_are_disjoint():
    data = RandomImages(40, (1, 2, 2))
    index_of = {bytes(data.images[i].flatten().tolist()): i for i in range(40)}
    seen = []
    for rank in range(2):
        stream = BatchStream(data, 5, seed=3, rank=rank, world_size=2)
        for _ in range(4):  # 20 examples per shard = 4 batches = one epoch
            batch = ((stream.next() + 1) * 127.5).round().to(torch.uint8)
            seen += [index_of[bytes(x.flatten().tolist())] for x in batch]
    assert sorted(seen) == list(range(40))


def test_stream_resume_and_normalisation():
    data = RandomImages(30, (1, 2, 2))
    a = BatchStream(data, 4, seed=1)
    batches = [a.next() for _ in range(10)]  # crosses epochs (7 batches each)
    assert batches[0].min() >= -1 and batches[0].max() <= 1
    b = BatchStream(data, 4, seed=1)
    for _ in range(6):
        b.next()
    c = BatchStream(data, 4, seed=1, on_device="never")  # streamed through a DataLoader
    c.load_state_dict(b.state_dict())
    for i in range(6, 10):
        assert torch.equal(c.next(), batches[i])
    levels = to_model_range(torch.tensor([0, 51, 255], dtype=torch.uint8))
    torch.testing.assert_close(levels, torch.tensor([-1.0, -0.6, 1.0]))
    vectors = torch.tensor([[0.25, -3.0]])
    assert torch.equal(to_model_range(vectors), vectors)  # float (toy) data passes through


@pytest.mark.parametrize("on_device", ["auto", "never"])
def test_an_epoch_can_keep_its_last_batch_as_a_dataloader_does(on_device):
    """drop_last=False: 30 examples in batches of 4 are 8 steps an epoch, the last of 2 (DataLoader's default), every
    example once per epoch, and a resumed stream continues with the same batches, the small one included."""
    data = RandomImages(30, (1, 2, 2))
    assert batches_per_epoch(30, 4) == 7 and batches_per_epoch(30, 4, drop_last=False) == 8
    assert batches_per_epoch(60_000, 64, drop_last=False) == 938  # Deasy et al.'s MNIST epoch
    stream = BatchStream(data, 4, seed=2, drop_last=False, on_device=on_device)
    epoch = [stream.next() for _ in range(8)]
    assert [len(b) for b in epoch] == [4] * 7 + [2]
    index_of = {bytes(data.images[i].flatten().tolist()): i for i in range(30)}
    seen = [index_of[bytes(x.flatten().tolist())] for b in epoch for x in ((b + 1) * 127.5).round().to(torch.uint8)]
    assert sorted(seen) == list(range(30))
    later = [stream.next() for _ in range(9)]  # the next epoch, and the first batch of the one after
    assert [len(b) for b in later] == [4] * 7 + [2, 4]
    resumed = BatchStream(data, 4, seed=2, drop_last=False, on_device=on_device)
    resumed.load_state_dict({"epoch": 1, "position": 6})
    for expected in later[6:]:
        assert torch.equal(resumed.next(), expected)


def test_data_shape_mismatch_is_a_clear_error():
    recipe = tiny_recipe("vae")
    with pytest.raises(ConfigError, match=r"yields examples of shape \(3, 32, 32\), but the model expects "
                                          r"\(1, 28, 28\); set model.channels=3 model.image_size=32"):
        Trainer(build_model(recipe), recipe, dataset=RandomImages(64, (3, 32, 32)))


def test_bf16_autocast_wraps_phases_and_keeps_the_penalty_fp32():
    recipe = tiny_recipe("wgan_gp", ["train.mixed_precision=bf16"])
    model = build_model(recipe)
    trainer = Trainer(model, recipe, dataset=RandomImages(256, data_shape(recipe)))
    assert trainer.autocast_dtype == torch.bfloat16
    dtypes = []
    critic = model.players["critic"]
    hook = critic.register_forward_hook(lambda m, i, o: dtypes.append((o.dtype, torch.is_autocast_enabled("cpu"))))
    out = trainer.run_phase(trainer.phases[0], trainer.stream.next(), 0)
    hook.remove()
    # real, fake under bf16 autocast; the gradient-penalty forward in fp32 with autocast off
    assert dtypes == [(torch.bfloat16, True), (torch.bfloat16, True), (torch.float32, False)]
    assert torch.isfinite(out.loss) and out.logs["gp"].dtype == torch.float32
    assert load_recipe(RECIPES_DIR / "tiny_vae.yaml").train.mixed_precision == "auto"
    assert Trainer(build_model(tiny_recipe("vae")), tiny_recipe("vae"),
                   dataset=RandomImages(64, (1, 28, 28))).autocast_dtype is None  # auto on CPU: fp32
