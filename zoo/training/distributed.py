"""Process-group plumbing: which Accelerator, start-of-run broadcast, gradient all-reduce, precision, and ending a
process. Used by the trainer and by evaluation, which must not import the trainer for it."""
from __future__ import annotations

import contextlib
import datetime
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterable, Iterator, NoReturn

import torch
from accelerate import Accelerator
from torch import nn

from zoo.training.signals import signal_name


DEFAULT_COLLECTIVE_TIMEOUT_S = 600.0  # a peer silent this long is taken as gone (NCCL's own default is 10 minutes)


def default_accelerator(collective_timeout_s: float = DEFAULT_COLLECTIVE_TIMEOUT_S) -> Accelerator:
    """Accelerate as launched. Several processes without CUDA (`accelerate launch --multi_gpu --num_processes 2` on a
    CPU machine) become a gloo CPU job; autocast is the trainer's, so Accelerate's is off. A collective that waits
    longer than `collective_timeout_s` for a peer fails (see `PeerLostError`) instead of hanging the job."""
    from accelerate.utils import InitProcessGroupKwargs

    cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    timeout = InitProcessGroupKwargs(timeout=datetime.timedelta(seconds=collective_timeout_s))
    return Accelerator(cpu=cpu, mixed_precision="no", gradient_accumulation_steps=1, kwargs_handlers=[timeout])


class PeerLostError(RuntimeError):
    """A collective failed because another process stalled or died; the message names the missing rank(s)."""


def peer_lost(err: BaseException, timeout_s: float) -> PeerLostError | None:
    """If `err` is a collective that failed for want of a peer, a PeerLostError naming the missing rank(s), else None.

    Every surviving process announces itself in the job's rendezvous store and waits a little for the others; the
    ranks that never announce are the missing ones. If the store does not answer (it lives in rank 0), rank 0 is.
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized() and isinstance(err, RuntimeError)):
        return None
    text = str(err)
    if not isinstance(err, dist.DistBackendError) and not any(k in text for k in ("Timed out", "Connection", "gloo",
                                                                                   "NCCL", "timeout")):
        return None
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        store = dist.distributed_c10d._get_default_store()
        store.set_timeout(datetime.timedelta(seconds=5))
        store.set(f"zoo/peer_lost/{rank}", "1")
        deadline, missing = time.monotonic() + min(10.0, timeout_s), []
        while time.monotonic() < deadline:
            missing = [r for r in range(world) if r != rank and not store.check([f"zoo/peer_lost/{r}"])]
            if not missing:
                break
            time.sleep(0.5)
    except Exception:  # noqa: BLE001 - the store itself is gone: it lives in rank 0's process
        missing = [0] if rank != 0 else []
    who = (f"rank(s) {', '.join(map(str, missing))} did not arrive" if missing else
           "the other processes failed too (see their messages)")
    return PeerLostError(f"rank {rank} of {world}: a collective operation failed after waiting up to "
                         f"train.collective_timeout_s={timeout_s:g} s: {who} (stalled, killed or out of memory); "
                         f"every process exits. Resume the run from its last checkpoint (--resume auto). "
                         f"[{text.splitlines()[0][:200] if text else type(err).__name__}]")


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


class StopRequests:
    """Why and when a run stops early: SIGTERM / SIGINT (a second one aborts), or the launcher gone.

    Under `accelerate launch` / torchrun the trainer is a child of the launcher. When the launcher is killed (SIGKILL
    of the job, or a SIGTERM that accelerate's single-process launcher does not pass on) its workers would train on
    unattended; `should_stop` polls the parent each step, and every worker stops with a checkpoint. Plain `python
    train.py` is left alone: a shell that exits after `nohup ... &` must not stop the run. Several processes agree
    at logging steps, so that all of them stop after the same step.
    """

    def __init__(self, accelerator: Accelerator, log_every: int):
        self.accelerator, self.log_every, self.requested = accelerator, log_every, False
        self.reason: str | None = None  # why the run stops early: "SIGTERM", "SIGINT", "the launcher is gone"
        launched = "TORCHELASTIC_RUN_ID" in os.environ or any(k.startswith("ACCELERATE_") for k in os.environ)
        self.parent = os.getppid() if launched else None

    @contextlib.contextmanager
    def handling_signals(self, step: Callable[[], int]) -> Iterator[None]:
        def request(signum: int, frame: Any) -> None:
            if self.requested:  # second signal: the user insists
                raise KeyboardInterrupt
            self.requested, self.reason = True, signal_name(signum)
            if self.accelerator.is_main_process:
                print(f"\nzoo: received signal {signum} ({self.reason}); saving a checkpoint at the end of step "
                      f"{step()} and exiting", flush=True)

        main_thread = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, request) for s in (signal.SIGTERM, signal.SIGINT)} if main_thread else {}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def should_stop(self, step: int) -> bool:
        """Whether to stop after `step` (the steps done)."""
        if not self.requested and self.parent is not None and os.getppid() != self.parent:
            self.requested, self.reason = True, "the launcher is gone"
            print(f"zoo: process {self.accelerator.process_index}: the launcher (pid {self.parent}) is gone; saving "
                  f"a checkpoint at the end of step {step} and exiting", flush=True)
        if self.accelerator.num_processes == 1:
            return self.requested
        if step % self.log_every:
            return False
        flag = torch.tensor([float(self.requested)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)
