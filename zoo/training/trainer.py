"""The one generic trainer: runs any model's phases under HuggingFace Accelerate. It names no model.

Per phase: zero_grad -> requires_grad on for that optimizer's players only -> forward + loss under autocast ->
backward (micro-batches when accumulating) -> all-reduce of the phase's gradients across processes -> optional
clip -> step.
See docs/training.md for the semantics.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import yaml
from accelerate import Accelerator
from torch import Tensor
from tqdm.auto import tqdm

from zoo.config import ConfigError, Recipe, to_dict
from zoo.data.base import open_split
from zoo.data.stream import BatchStream, to_model_range
from zoo.models.base import GenerativeModel, Phase, PhaseOutput, validate_schedule
from zoo.training import rundir
from zoo.training.checkpoint import (CheckpointError, check_finite, checkpoint_dirs, first_nonfinite, load_state_into_players,
                                     read_trainer_state, read_weights, resolve_checkpoint, write_checkpoint)
from zoo.training.distributed import (StopRequests, all_reduce_grads, autocast_dtype, broadcast_from_main,
                                     default_accelerator, peer_lost)
from zoo.training.ema import EMA
from zoo.training.logging import RunLogger, interleave, note_diverging, save_grid
from zoo.training.optim import build_optimizers
from zoo.training.runfolder import RunFolder
from zoo.training.speed import prepare_players, resolve_speed, set_tf32, to_memory_format


class NonFiniteLossError(FloatingPointError):
    """A phase produced a NaN/inf loss, or the weights hold NaN/inf; the run stops without saving them."""


DIVERGING = 1e10  # a logged loss beyond this magnitude is reported as diverging (finite, but no longer training)


def check_data_shape(model: GenerativeModel, dataset: Any, recipe: Recipe) -> None:
    """Fail before training, naming both sides, when the data does not have the shape the model was built for."""
    expected, got = model.data_shape, getattr(dataset, "shape", None)
    if expected is None or got is None or tuple(got) == tuple(expected):
        return
    hint = (f"set model.channels={got[0]} model.image_size={got[-1]}" if len(got) == 3 and got[1] == got[2] else
            "set model.channels / model.image_size to match")
    raise ConfigError(f"data {recipe.data.name!r} yields examples of shape {tuple(got)}, but the model expects "
                      f"{tuple(expected)}; {hint}, or resize with data.options.image_size / data.options.pad_to")


def step_seed(seed: int, step: int, rank: int) -> int:
    """The RNG seed of one training step on one process. Reseeding per step makes a resumed run draw exactly the
    noise the uninterrupted run drew, and gives each process its own noise."""
    return (seed * 1_000_003 + step * 65_537 + rank * 7_919) % (2**63 - 1)


def mean_output(outs: list[PhaseOutput]) -> PhaseOutput:
    """The micro-batches' losses and logs averaged (detached): what a phase step with accumulation logs."""
    return PhaseOutput(torch.stack([o.loss.detach() for o in outs]).mean(),
                       {k: torch.stack([o.logs[k].detach() for o in outs]).mean() for k in outs[0].logs})


class Trainer:
    """Trains `model` as `recipe` says, writing logs, samples and checkpoints under `out_dir` (main process only).

    Args:
        model: any registered model.
        recipe: the resolved recipe (`zoo.load_recipe`).
        out_dir: run directory; None keeps nothing on disk (tests, benchmarks).
        dataset: training split; default loads `recipe.data`.
        accelerator: reuse one; default `Accelerator()` (CPU or GPU as launched).
    """

    def __init__(self, model: GenerativeModel, recipe: Recipe, out_dir: str | Path | None = None, *,
                 dataset: Any = None, accelerator: Accelerator | None = None):
        self.recipe, self.model = recipe, model
        self.accelerator = accelerator or default_accelerator(recipe.train.collective_timeout_s)
        self.device = self.accelerator.device
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.is_main = self.accelerator.is_main_process
        # the folder's lock, claim and restart (zoo.training.runfolder); None: an in-memory run that writes nothing
        self.run_folder = RunFolder(self.out_dir, is_main=self.is_main, sync=self.accelerator.wait_for_everyone) \
            if self.out_dir is not None else None
        self.phases = model.phases()
        validate_schedule(model, recipe.optim, self.phases)
        self.autocast_dtype = autocast_dtype(recipe.train.mixed_precision, self.device)
        model.to(self.device).train()

        self.speed = resolve_speed(recipe.train, self.device, model, self.autocast_dtype is not None)
        if self.device.type == "cuda":
            set_tf32(self.speed.tf32)
        prepare_players(model.players.values(), replace(self.speed, compile=False))  # compiled after the EMA copy

        self.players_of = {k: list(cfg.players) for k, cfg in recipe.optim.items()}
        self.optimizers, self.schedulers = build_optimizers(model, recipe, self.phases, self.speed)
        self.players = dict(model.players.items())  # never wrapped (see `zoo.training.distributed.all_reduce_grads`)
        self.distributed = self.accelerator.num_processes > 1
        if self.distributed:
            broadcast_from_main(model)
        ema_cfg = recipe.train.ema
        self.ema = EMA({n: self.players[n] for n in ema_cfg.players}, ema_cfg.decay, ema_cfg.start_step) if ema_cfg \
            else None
        if self.speed.compile:
            prepare_players(model.players.values(), replace(self.speed, channels_last=False))

        self.dataset = dataset if dataset is not None else open_split(recipe.data)
        check_data_shape(model, self.dataset, recipe)
        try:
            self.stream = BatchStream(self.dataset, recipe.data.batch_size, seed=recipe.train.seed, device=self.device,
                                      rank=self.accelerator.process_index, world_size=self.accelerator.num_processes,
                                      on_device=recipe.data.on_device, num_workers=recipe.data.num_workers,
                                      drop_last=recipe.data.drop_last)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.step = 0
        self._trainable: frozenset[str] | None = None
        self._running: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}
        self.stops = StopRequests(self.accelerator, recipe.train.log_every)
        self.last_checkpoint: Path | None = None  # the newest checkpoint of this run, written or resumed from
        self.resumed_from: Path | None = None
        self.diverging: dict[str, float] = {}  # loss -> the first logged value beyond DIVERGING
        self._changes: dict[str, tuple[Any, Any]] = {}  # settings changed at resume: key -> (checkpoint's, now)
        self._saved_step: int | None = None
        # CPU: .item() costs no device sync, so every loss is checked before its optimizer step. Accelerators: the
        # check runs at logging steps so the step loop never waits on the device.
        self._check_every_phase = self.device.type == "cpu"
        self.logger: RunLogger | None = None  # opened by `begin`, when the run directory is claimed
        # told {old: new} when a resume moves later checkpoints aside (`zoo train` keeps the catalog in step)
        self.on_checkpoints_moved: Callable[[dict[Path, Path]], None] = lambda moves: None

    @property
    def config_yaml(self) -> str:
        return yaml.safe_dump(to_dict(self.recipe), sort_keys=False)

    # ---- one phase ------------------------------------------------------------------------------------------------
    def trained_players(self, phase: Phase) -> list[str]:
        """The players `phase` updates: its own `players` subset, else all of its optimizer's."""
        return list(phase.players) or self.players_of[phase.optimizer]

    def _set_trainable(self, players: list[str]) -> None:
        wanted = frozenset(players)
        if wanted == self._trainable:
            return
        for name, player in self.players.items():
            player.requires_grad_(name in wanted)
        self._trainable = wanted

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def run_phase(self, phase: Phase, batch: Tensor, step: int) -> PhaseOutput:
        """One optimizer update of `phase` on `batch` (split into micro-batches when accumulating)."""
        cfg = self.recipe.optim[phase.optimizer]
        optimizer = self.optimizers[phase.state_key]
        trained = self.trained_players(phase)
        self._set_trainable(trained)
        optimizer.zero_grad(set_to_none=True)
        batch = to_memory_format(batch, self.speed)
        chunks = batch.chunk(cfg.accumulation) if cfg.accumulation > 1 else (batch,)
        outs = []
        for chunk in chunks:
            with self._autocast():
                out = self.model.phase_loss(phase.name, chunk, step)
            if self._check_every_phase and not math.isfinite(out.loss.item()):
                raise NonFiniteLossError(f"non-finite loss {out.loss.item()} in phase {phase.name!r} at step {step}; "
                                         f"the run stopped; {self._last_good()} (try a lower optim."
                                         f"{phase.optimizer}.lr or optim.{phase.optimizer}.grad_clip)")
            self.accelerator.backward(out.loss / len(chunks) if len(chunks) > 1 else out.loss)
            outs.append(out)
        if self.distributed:
            all_reduce_grads([p for name in trained for p in self.players[name].parameters()],
                             self.accelerator.num_processes)
        if cfg.grad_clip is not None:
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        return outs[0] if len(outs) == 1 else mean_output(outs)

    # ---- the loop -------------------------------------------------------------------------------------------------
    def train_step(self) -> None:
        """All phases of one global step."""
        step = self.step
        self._seed_step(step_seed(self.recipe.train.seed, step, self.accelerator.process_index))
        for phase in self.phases:
            if step % phase.every:
                continue
            for _ in range(phase.repeats):
                out = self.run_phase(phase, self.stream.next(), step)
                self._record(phase.name, out)
        if self.ema is not None:
            self.ema.update(self.players, step)
        for scheduler in self.schedulers.values():
            scheduler.step()
        self.step += 1

    def _seed_step(self, seed: int) -> None:
        # Only the generators this run draws from: torch.manual_seed also seeds every other backend (~60 us a call).
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)  # the current device

    def _record(self, phase: str, out: PhaseOutput) -> None:
        for key, value in {"loss": out.loss, **out.logs}.items():
            name = f"{phase}/{key}"
            value = value.detach().float()
            self._running[name] = self._running[name] + value if name in self._running else value
            self._counts[name] = self._counts.get(name, 0) + 1

    def _flush_logs(self) -> dict[str, float]:
        # one device-to-host copy for all scalars (one sync per logging step, not one per logged value)
        means = torch.stack([v / self._counts[k] for k, v in self._running.items()]).tolist() if self._running else []
        scalars = dict(zip(self._running, means))
        self._running, self._counts = {}, {}
        bad = [k for k, v in scalars.items() if k.endswith("/loss") and not math.isfinite(v)]
        if bad:
            raise NonFiniteLossError(f"non-finite loss in phase {bad[0].split('/')[0]!r} at or before step "
                                     f"{self.step - 1} (checked every train.log_every={self.recipe.train.log_every} "
                                     f"steps; set it to 1 to pinpoint); {self._last_good()}")
        note_diverging(scalars, self.diverging, self.step, {p.name: p.optimizer for p in self.phases}, DIVERGING,
                       self.is_main)
        for key, scheduler in self.schedulers.items():
            scalars[f"lr/{key}"] = scheduler.get_last_lr()[0]
        return scalars

    def train(self) -> dict[str, float]:
        """Run until `train.max_steps` (or a stop signal, or the launcher gone); returns the last logged scalars."""
        cfg = self.recipe.train
        last: dict[str, float] = {}
        bar = None
        try:
            self.begin()  # inside: a refused claim releases the run lock too
            if cfg.progress and self.is_main:
                bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", dynamic_ncols=True)
            with self.stops.handling_signals(lambda: self.step):
                while self.step < cfg.max_steps:
                    self.train_step()
                    if bar is not None:
                        bar.update(1)
                    if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                        last = self._flush_logs()
                        if self.logger is not None:
                            self.logger.log(self.step, last)
                        if bar is not None:
                            bar.set_postfix({k.replace("/loss", ""): f"{v:.3g}" for k, v in last.items()
                                             if k.endswith("/loss")}, refresh=False)
                    if cfg.sample_every and self.step % cfg.sample_every == 0:
                        self.write_samples()
                    if self.stops.should_stop(self.step):
                        break
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
                if self._running:
                    last = self._flush_logs()  # also the final non-finite check before the last save
                self.save_checkpoint()
        except RuntimeError as err:  # a peer stalled or died: name it, instead of a gloo/NCCL traceback
            lost = peer_lost(err, cfg.collective_timeout_s)
            if lost is None:
                raise
            raise lost from None
        finally:
            if bar is not None:
                bar.close()
            if self.logger is not None:
                self.logger.close()
            if self.run_folder is not None:
                self.run_folder.close()  # another process may resume the run now
        return last

    # ---- samples and checkpoints ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def eval_model(self, ema: bool = True) -> Iterator[GenerativeModel]:
        """The model in eval mode with the EMA copies swapped in where kept (for samples and evaluation)."""
        swap = self.ema.shadow if (ema and self.ema) else {}
        modes = {name: m.training for name, m in self.players.items()}
        for name, module in swap.items():
            self.model.players[name] = module
        self.model.eval()
        try:
            yield self.model
        finally:
            for name, module in self.players.items():
                self.model.players[name] = module
                module.train(modes[name])

    @torch.no_grad()
    def write_samples(self) -> None:
        if self.out_dir is None or not self.is_main:
            return
        n = self.recipe.train.n_samples
        generator = torch.Generator(device=self.device).manual_seed(self.recipe.train.seed)
        with self.eval_model() as model:
            samples = model.sample(n, generator=generator)
            if samples.dim() == 4:
                save_grid(samples, self.out_dir / "samples" / f"step_{self.step:08d}.png")
                if self.logger is not None:
                    self.logger.log_images("samples", samples, self.step)
            if model.has_encoder and samples.dim() == 4:
                x = torch.stack([self.dataset[i] for i in range(min(n // 2, len(self.dataset)))]).to(self.device)
                x = to_model_range(x)
                pairs, nrow = interleave(x, model.reconstruct(x)), 2 * max(1, int(math.sqrt(x.shape[0] / 2)))
                save_grid(pairs, self.out_dir / "reconstructions" / f"step_{self.step:08d}.png", nrow=nrow)
                if self.logger is not None:
                    self.logger.log_images("reconstructions", pairs, self.step, nrow)

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "data": self.stream.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "world_size": self.accelerator.num_processes,
        }

    def weights(self) -> dict[str, Tensor]:
        return {f"players.{n}.{k}": v for n, m in self.players.items() for k, v in m.state_dict().items()}

    def save_checkpoint(self) -> Path | None:
        """Write the checkpoint of the current step (once), after checking that the weights are finite."""
        if self.out_dir is None or self._saved_step == self.step:
            return self.last_checkpoint if self.out_dir is not None else None
        weights, ema = self.weights(), (self.ema.state_dict() if self.ema else None)
        if bad := first_nonfinite(weights) or first_nonfinite(ema or {}):
            raise NonFiniteLossError(f"the weights hold NaN/inf at step {self.step} ({bad}), so no checkpoint was "
                                     f"written; {self._last_good()} (try a lower lr, optim.*.grad_clip, or a larger "
                                     f"optim.*.eps)")
        if not self.is_main:
            return None
        self.begin()
        self.last_checkpoint = write_checkpoint(self.out_dir, self.step, weights=weights,
                                                trainer_state=self.state_dict(), config_yaml=self.config_yaml,
                                                ema=ema, keep_last=self.recipe.train.keep_last)
        self._saved_step = self.step
        return self.last_checkpoint

    def _last_good(self) -> str:
        if self.last_checkpoint is not None and self.last_checkpoint.is_dir():
            return f"the last checkpoint, {self.last_checkpoint}, is intact"
        return "no checkpoint of this run was saved before this step"

    def begin(self) -> None:
        """Open the run folder (lock it, claim it once before anything is written) and, when claimed, the logs."""
        if self.run_folder is None:
            return
        if self.run_folder.open(step=self.step, config_yaml=self.config_yaml, resumed_from=self.resumed_from,
                                changes=self._changes, on_moved=self.on_checkpoints_moved):
            train = self.recipe.train
            loggers = [k for k in train.loggers if train.tensorboard or k != "tensorboard"]
            self.logger = RunLogger(self.out_dir, loggers, to_dict(self.recipe), train.wandb_project)

    def resume(self, path: str | Path, *, missing_ok: bool = False) -> Path | None:
        """Continue from a checkpoint (or a run directory's latest): weights, optimizers, schedulers, EMA, data
        position, step and RNG. Settings that define the run (`rundir.IMMUTABLE`) must agree with the checkpoint's;
        the others take the recipe's values, announced and recorded in history.jsonl.

        With `missing_ok`, a path that is this trainer's own run directory without a checkpoint (a run killed before
        its first save) restarts it from step 0, moving its files aside; returns None then.
        """
        if missing_ok and self.run_folder is not None and self.run_folder.is_folder(path) and not checkpoint_dirs(path):
            self.run_folder.restart_empty()
            return None
        ckpt = resolve_checkpoint(path)
        self._changes = rundir.changed_settings(ckpt, self.recipe, type(self.model))
        weights = read_weights(ckpt)
        check_finite(weights, str(ckpt))
        load_state_into_players(self.players, weights, str(ckpt))
        state = read_trainer_state(ckpt)
        for key, opt in self.optimizers.items():
            if key not in state["optimizers"] or key not in state["schedulers"]:
                raise CheckpointError(f"{ckpt}: has no state for optimizer {key!r} (it has "
                                      f"{', '.join(state['optimizers'])}); the trainer state is damaged")
            opt.load_state_dict(state["optimizers"][key])
            self.schedulers[key].load_state_dict(state["schedulers"][key])
        rundir.apply_optimizer_settings(self.optimizers, self.schedulers, self.recipe, self._changes)
        if self.ema is not None:
            self.ema.load_state_dict(read_weights(ckpt, ema=True))
        self.stream.load_state_dict(state["data"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step = int(state["step"])
        self.resumed_from = self.last_checkpoint = ckpt
        if self.run_folder is not None and self.run_folder.holds(ckpt):
            self._saved_step = self.step  # this step's checkpoint exists: the end-of-run save does not rewrite it
        return ckpt
