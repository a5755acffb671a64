"""Process-group plumbing: which Accelerator, start-of-run broadcast, gradient all-reduce, precision, and ending a
process. Used by the trainer and by evaluation, which must not import the trainer for it."""
from __future__ import annotations

import os
import sys
from typing import Iterable, NoReturn

import torch
from accelerate import Accelerator
from torch import nn


def default_accelerator() -> Accelerator:
    """Accelerate as launched. Several processes without CUDA (`accelerate launch --multi_gpu --num_processes 2` on a
    CPU machine) become a gloo CPU job; autocast is the trainer's, so Accelerate's is off."""
    cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    return Accelerator(cpu=cpu, mixed_precision="no", gradient_accumulation_steps=1)


def autocast_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `train.mixed_precision` on `device`; None: fp32 without autocast."""
    if setting == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"no": None, "bf16": torch.bfloat16}[setting]


def broadcast_from_main(module: nn.Module) -> None:
    """Give every process the main process's weights and buffers of `module`."""
    for tensor in module.state_dict().values():
        torch.distributed.broadcast(tensor.data, src=0)


def all_reduce_grads(params: Iterable[nn.Parameter], num_processes: int) -> None:
    """Average the gradients of `params` over processes with one flattened all-reduce.

    The zoo does not wrap players in DistributedDataParallel: DDP synchronises only gradients produced through the
    wrapper's forward, while models legitimately call other methods of a player (discriminator `features`, a
    decoder's likelihood, explicit noise) and differentiate twice (gradient penalties); a wrapper would hide those
    attributes or silently skip the sync. Reducing exactly a phase's trained players' gradients also means the
    players a phase does not train never synchronise (the StyleGAN2-ADA training loop does the same).
    """
    params = list(params)
    for p in params:  # same layout on every process, even where a parameter got no gradient
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.flatten() for p in params])
    torch.distributed.all_reduce(flat)
    flat /= num_processes
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()


def exit_process(status: int) -> NoReturn:
    """End the process with `status`; in a multi-process job, the processes first meet (on success) and then end at
    once with `os._exit`, skipping interpreter teardown.

    Tearing down torch.distributed's C++ objects (gloo's and the store's threads) at exit, with or without
    `destroy_process_group`, now and then aborts a process ("terminate called without an active exception", exit -6)
    after all its work is done and saved; there is nothing left to clean up that os._exit would skip (checkpoints are
    atomic and complete, logs closed by `Trainer.train`), so the streams are flushed and the process ends. A failing
    process does not wait for the others, which may never arrive. One process: plain `sys.exit`.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if status == 0:
            torch.distributed.barrier()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
