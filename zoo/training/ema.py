"""Exponential moving average of chosen players' weights (the averaged copies are what samples use)."""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


class EMA:
    """Shadow copies of some players, updated as `shadow = decay * shadow + (1 - decay) * live` after every step.

    Buffers (BatchNorm statistics) are copied, not averaged. Before `start_step` the shadow tracks the live weights.
    """

    def __init__(self, players: dict[str, nn.Module], decay: float, start_step: int = 0):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"train.ema.decay: got {decay}, expected 0 <= decay < 1 (e.g. 0.999)")
        self.decay, self.start_step = decay, start_step
        self.shadow = {name: copy.deepcopy(m).eval().requires_grad_(False) for name, m in players.items()}

    @torch.no_grad()
    def update(self, players: dict[str, nn.Module], step: int) -> None:
        weight = 1.0 if step < self.start_step else 1.0 - self.decay
        for name, shadow in self.shadow.items():
            live = players[name]
            shadow_params = list(shadow.parameters())
            if shadow_params:
                torch._foreach_lerp_(shadow_params, [p.detach() for p in live.parameters()], weight)
            for s, b in zip(shadow.buffers(), live.buffers()):
                s.copy_(b)

    def state_dict(self) -> dict[str, Tensor]:
        return {f"{name}.{k}": v for name, m in self.shadow.items() for k, v in m.state_dict().items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for name, module in self.shadow.items():
            prefix = f"{name}."
            module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
