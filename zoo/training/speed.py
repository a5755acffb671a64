"""Speed switches of the trainer: torch.compile of the players, channels_last, fused Adam and TF32.

Each is a `train.*` recipe key (see `TrainConfig`) whose "auto" default is what pays off on the device the run lands
on; `resolve_speed` turns the recipe into one `SpeedPlan`, which the trainer and benchmarks/bench.py apply the same way.
None of them changes the maths: compile and channels_last give the same function (to float rounding), fused Adam is
the same update in one kernel, and TF32 rounds fp32 matmul/conv operands to 10 mantissa bits, which is why it is on
only where the run already accepts reduced precision (bf16 autocast).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch import Tensor, nn

from zoo.config import ConfigError


@dataclass(frozen=True)
class SpeedPlan:
    """The resolved switches of one run (what "auto" became on this device)."""

    compile: bool = False
    compile_options: dict[str, Any] = field(default_factory=dict)
    channels_last: bool = False
    fused_adam: bool = False
    tf32: bool = False

    def summary(self) -> str:
        on = [k for k in ("compile", "channels_last", "fused_adam", "tf32") if getattr(self, k)]
        return "+".join(on) or "none"


def has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in module.modules())


def resolve_speed(train: Any, device: torch.device, model: nn.Module, reduced_precision: bool) -> SpeedPlan:
    """The switches of `train` (a TrainConfig) on `device`.

    Args:
        reduced_precision: the run trains under bf16 autocast; TF32 on "auto" follows it.
    """
    cuda = device.type == "cuda"
    fused = train.fused_adam
    if fused is True and device.type not in ("cuda", "cpu", "mps", "xpu"):
        raise ConfigError(f"train.fused_adam=true: fused Adam has no kernel for device {device.type!r}; "
                          f"set train.fused_adam=auto")
    conv = any(has_conv(p) for p in model.players.values())  # type: ignore[attr-defined]
    return SpeedPlan(
        compile=bool(train.compile),
        compile_options=dict(train.compile_options),
        channels_last=conv and (cuda if train.channels_last == "auto" else bool(train.channels_last)),
        fused_adam=cuda if fused == "auto" else bool(fused),
        tf32=(cuda and reduced_precision) if train.tf32 == "auto" else bool(train.tf32),
    )


def set_tf32(enabled: bool) -> None:
    """Process-wide: TF32 for fp32 matmuls (cuBLAS) and convolutions (cuDNN). PyTorch's defaults are matmuls off and
    convolutions on; the switch sets both, so "off" really means full fp32."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def prepare_players(players: Iterable[nn.Module], plan: SpeedPlan) -> None:
    """channels_last weights for conv players and, when asked, `Module.compile` in place.

    `Module.compile` keeps the module object and its state_dict keys (checkpoints stay interchangeable with eager
    runs); the compiled call is used by `module(x)`, and `module.forward(x)` stays eager (gradient penalties use it:
    torch.compile's autograd has no double backward).
    """
    for player in players:
        if plan.channels_last and has_conv(player):
            player.to(memory_format=torch.channels_last)
        if plan.compile:
            player.compile(**plan.compile_options)


def to_memory_format(batch: Tensor, plan: SpeedPlan) -> Tensor:
    """Image batches in channels_last when the conv players are (a conv on mixed layouts converts every call)."""
    if plan.channels_last and batch.dim() == 4:
        return batch.contiguous(memory_format=torch.channels_last)
    return batch


def adam(params: list[nn.Parameter], cfg: Any, plan: SpeedPlan) -> torch.optim.Adam:
    """Adam as `cfg` (an OptimizerConfig) says: one fused kernel per step where the plan says so, else PyTorch's
    default (foreach, a few multi-tensor kernels)."""
    kwargs: dict[str, Any] = {"fused": True} if plan.fused_adam else {}
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, **kwargs)
