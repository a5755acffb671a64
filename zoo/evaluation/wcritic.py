"""`wcritic`: the independent Wasserstein critic (Danihelka et al. 2017; Jiwoong Im et al. 2018; Rosca et al. 2018
App. I and Fig. 8): a fresh WGAN-GP critic is trained to separate validation data from model samples for a fixed
budget, then the negative Wasserstein estimate -(E[D(x_test)] - E[D(G(z))]) is reported on held-out test data against
fresh samples. Higher (closer to 0) is better; a critic trained on validation data also exposes overfitting.

The critic is a model with one player and one phase, run by the generic `zoo.training.Trainer` (no second training
loop). It is not in the model registry: it is an instrument, not a generative model.

Data: the critic trains on the dataset's `valid` split when it has one (CelebA), else on one half of a seeded random
permutation of the reference split; it is evaluated on the reference split (`test`), or on the other half.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from zoo.config import DataConfig, ModelConfig, ModelSection, OptimizerConfig, Recipe, TrainConfig
from zoo.data import TensorImages
from zoo.evaluation.core import EvaluationError, MetricResult, define_metric
from zoo.evaluation.functional import wasserstein_estimate
from zoo.evaluation.sampling import EvalContext
from zoo.losses.adversarial import critic_loss_wasserstein
from zoo.losses.penalties import gradient_penalty
from zoo.models.base import GenerativeModel, Phase, PhaseOutput
import zoo.nn  # noqa: F401  (importing it registers the backbones)
from zoo.registry import BACKBONES
from zoo.training import Trainer

CRITIC_STEPS = 2000  # our budget; the papers do not state one (docs/metrics.md)
CURVE_POINTS = 100  # points of the critic's training curve stored in the result's metadata


@dataclass
class CriticConfig(ModelConfig):
    channels: int = 3
    image_size: int = 32
    backbone: str = "dcgan"  # family in zoo.nn with a `<family>.discriminator`
    width: int = 64
    gp_weight: float = 10.0  # Gulrajani et al. 2017, lambda = 10


class IndependentCritic(GenerativeModel):
    """A WGAN-GP critic against a frozen sample stream (Gulrajani et al. Alg. 1, critic update only).

    Args:
        config: the critic network and penalty weight.
        draw: n -> n fresh model samples in [-1, 1]; a plain function, so the evaluated model is not a player (the
            trainer never switches it to train mode nor optimises it).
    """

    config_class = CriticConfig
    name = "independent_critic"  # not registered: built here, never from a recipe
    paper = "Danihelka et al. 2017; Rosca et al. 2018 App. I"

    def __init__(self, config: CriticConfig, draw: Callable[[int], Tensor], curve_every: int = 0):
        super().__init__(config)
        self.curve_every = curve_every  # record (step, W estimate on the batch, GP) every this many steps
        self.curve: list[tuple[int, float, float]] = []
        self.players["critic"] = BACKBONES.get(f"{config.backbone}.discriminator")(
            channels=config.channels, image_size=config.image_size, width=config.width, norm="none")
        self.draw = draw

    @classmethod
    def default_optim(cls, config: CriticConfig) -> dict[str, OptimizerConfig]:
        return {"critic": OptimizerConfig(players=["critic"], lr=1e-4, betas=(0.5, 0.9))}  # Gulrajani et al. Alg. 1

    def phases(self) -> tuple[Phase, ...]:
        return (Phase("critic", "critic"),)

    def phase_loss(self, phase: str, batch: Tensor, step: int) -> PhaseOutput:
        critic = self.players["critic"]
        fake = self.draw(batch.shape[0]).to(batch.device)  # (B, C, H, W), no gradient to the evaluated model
        wasserstein = critic_loss_wasserstein(critic(batch), critic(fake))  # Alg. 1 line 7, first two terms
        penalty = gradient_penalty(critic, batch, fake)  # eq. 3
        if self.curve_every and step % self.curve_every == 0:  # the training curve kept with the result
            self.curve.append((step, -wasserstein.item(), penalty.item()))
        return PhaseOutput(wasserstein + self.config.gp_weight * penalty,
                           {"wasserstein": -wasserstein.detach(), "gp": penalty.detach()})

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError("the independent critic is an evaluation instrument; it does not sample")


def critic_backbone(shape: tuple[int, ...]) -> str:
    """The discriminator family used for every model on data of this shape: Rosca App. K Table 4 for 28 px, the WGAN
    DCGAN networks (Rosca's CIFAR-10 / CelebA choice) for power-of-two sizes."""
    side = shape[-1]
    if side == 28:
        return "rosca_mnist"
    if side >= 8 and side & (side - 1) == 0:
        return "dcgan"
    raise EvaluationError(f"wcritic: no default critic for {side}x{side} images; pass --critic-backbone FAMILY "
                          f"(a zoo.nn family with a discriminator for this size)")


def _split_data(ctx: EvalContext) -> tuple[Tensor, Tensor, str]:
    """(critic training images, held-out test images, description), uint8 on CPU."""
    def images(split: str, index: Tensor) -> Tensor:
        return torch.cat([ctx.real_batch(split, chunk)[0].cpu() for chunk in index.split(1024)])

    if ctx.split != "valid" and ctx.has_split("valid"):
        valid = ctx.indices("valid")
        return images("valid", valid), images(ctx.split, ctx.indices(ctx.split, ctx.n_real)), "valid"
    order = ctx.indices(ctx.split, ctx.n_real)
    half = len(order) // 2
    return (images(ctx.split, order[:half]), images(ctx.split, order[half:]),
            f"half of {ctx.split} (seeded permutation), evaluated on the other half")


@dataclass
class WCriticOptions:
    critic_steps: int = CRITIC_STEPS
    critic_backbone: str | None = None  # discriminator family; default from the image size
    critic_width: int = 64
    critic_batch_size: int = 64  # global batch, split over processes
    critic_lr: float = 1e-4


@define_metric("wcritic", "negative Wasserstein estimate of an independent WGAN-GP critic (Rosca App. I)",
               higher_is_better=True, options=WCriticOptions, spread="standard error")
def wcritic_metric(ctx: EvalContext, opts: WCriticOptions) -> list[MetricResult]:
    ctx.require_model("wcritic")
    steps, batch_size, lr = opts.critic_steps, opts.critic_batch_size, opts.critic_lr
    train_images, test_images, train_desc = _split_data(ctx)
    config = CriticConfig(channels=train_images.shape[1], image_size=train_images.shape[-1],
                          backbone=opts.critic_backbone or critic_backbone(tuple(train_images.shape)),
                          width=opts.critic_width)
    critic = IndependentCritic(config, ctx.sampler("wcritic-train"), curve_every=max(1, steps // CURVE_POINTS))
    # batch_size is the critic's batch per step over all processes (the trainer's data.batch_size is per process), so
    # a sharded run trains the critic the recorded protocol says
    batch_size = min(batch_size, len(train_images))
    processes = ctx.world[1]
    if batch_size % processes:
        raise EvaluationError(f"wcritic: --critic-batch-size {batch_size} does not split evenly over {processes} "
                              f"processes; pass a multiple of {processes}")
    recipe = Recipe(model=ModelSection(IndependentCritic.name, config),
                    data=DataConfig(name="wcritic", batch_size=batch_size // processes),
                    optim={"critic": OptimizerConfig(players=["critic"], lr=lr, betas=(0.5, 0.9))},
                    train=TrainConfig(max_steps=steps, seed=ctx.seed, mixed_precision="no", log_every=max(1, steps),
                                      sample_every=0, checkpoint_every=0, progress=ctx.progress and ctx.is_main,
                                      tensorboard=False))
    trainer = Trainer(critic, recipe, dataset=TensorImages(train_images, name="wcritic-train"),
                      accelerator=ctx.accelerator)
    trainer.train()
    trained = trainer.step  # fewer than `steps` when a signal stopped training: recorded as such, never as the full
    net = trainer.players["critic"].eval()
    draw = ctx.sampler("wcritic-test")  # fresh samples, never seen in training
    with torch.no_grad():
        real = torch.cat([net(x.to(ctx.device).float() / 127.5 - 1) for x in test_images.split(ctx.batch_size)])
        fake = torch.cat([net(draw(len(x))) for x in test_images.split(ctx.batch_size)])
    w, se = wasserstein_estimate(real, fake)
    protocol = ctx.protocol(critic_backbone=f"{config.backbone}.discriminator", critic_width=config.width,
                            critic_norm="none", critic_steps=trained, critic_batch_size=batch_size, processes=processes,
                            critic_lr=lr, critic_betas=[0.5, 0.9], gp_weight=config.gp_weight,
                            critic_train_data=train_desc, n_train=len(train_images), reference_split=ctx.split,
                            n_test=len(test_images), n_fake=len(fake), std="standard error of the estimate")
    if trained < steps:
        protocol.update(stopped_early=True, critic_steps_requested=steps)
    curve = {"critic_curve": {"columns": ["step", "wasserstein_batch", "gp"], "rows": critic.curve}}
    return [MetricResult("wcritic", -w, se, protocol, metadata=curve)]
