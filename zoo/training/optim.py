"""Optimizer states and learning-rate schedules of a recipe: one Adam state per `optim` entry, plus one for each
phase that asks for its own (`Phase.own_state`, e.g. Makhzani's adversarial encoder step in the AAE)."""
from __future__ import annotations

import math

import torch

from zoo.config import Recipe, ScheduleConfig
from zoo.models.base import GenerativeModel, Phase
from zoo.training.speed import SpeedPlan, adam


def lr_factor(schedule: ScheduleConfig, max_steps: int):
    """Multiplier of the base learning rate as a function of the global step."""

    def factor(step: int) -> float:
        if step < schedule.warmup_steps:
            return (step + 1) / schedule.warmup_steps
        if schedule.name == "constant":
            return 1.0
        t = min(1.0, (step - schedule.warmup_steps) / max(1, max_steps - schedule.warmup_steps))
        shape = 1.0 - t if schedule.name == "linear" else 0.5 * (1.0 + math.cos(math.pi * t))
        return schedule.final_factor + (1.0 - schedule.final_factor) * shape

    return factor


def build_optimizers(model: GenerativeModel, recipe: Recipe, phases: tuple[Phase, ...], speed: SpeedPlan
                     ) -> tuple[dict[str, torch.optim.Adam], dict[str, torch.optim.lr_scheduler.LambdaLR]]:
    """Adam states and their LambdaLR schedulers, keyed like checkpoints: the optim entry's name, or
    `Phase.state_key` ("entry/phase") for a phase with its own state over the players it trains."""
    states = {k: (cfg, list(cfg.players)) for k, cfg in recipe.optim.items()}
    states.update({p.state_key: (recipe.optim[p.optimizer], list(p.players) or list(recipe.optim[p.optimizer].players))
                   for p in phases if p.own_state})
    optimizers = {k: adam([p for n in players for p in model.players[n].parameters()], cfg, speed)
                  for k, (cfg, players) in states.items()}
    schedulers = {k: torch.optim.lr_scheduler.LambdaLR(optimizers[k], lr_factor(cfg.schedule, recipe.train.max_steps))
                  for k, (cfg, _) in states.items()}
    return optimizers, schedulers
