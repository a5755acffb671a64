"""The density-ratio trick (Rosca et al. 2018, eq. 6): a classifier's logit as a log density ratio.

A classifier D trained to tell samples of p1 (label 1) from samples of p0 (label 0) estimates the log density ratio
by its logit: log p1(x) / p0(x) = log D(x) / (1 - D(x)) (eq. 6). Hence KL(p1 || p0) = E_p1[logit D(x)] and
KL(p0 || p1) = -E_p0[logit D(x)]. Algorithm 3 (`zoo.studies.latent_analysis.marginal_kl_density_ratio`) and
the App. D study (`zoo.studies.appendix_d`) use the pieces here. Nothing is registered: these are plain functions.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from zoo.losses.adversarial import discriminator_loss
from zoo.nn.mlp import mlp_discriminator
from zoo.training.signals import deferred_signals

Sampler = Callable[[int], Tensor]


def ratio_classifier(dim: int, hidden: int, layers: int) -> nn.Module:
    """An MLP classifier with LeakyReLU(0.2) hidden layers and one logit (`mlp.discriminator`), (B, dim) -> (B,)."""
    return mlp_discriminator(in_dim=dim, hidden=hidden, layers=layers)


@dataclass
class ClassifierState:
    """Where a long classifier training keeps its state so that a stopped process resumes it exactly.

    The file (`path`, written atomically every `every` steps and once more when training ends) holds the classifier,
    its optimizer, every loss so far and the state of `generator` (the samplers' random source). `identity` (a JSON
    mapping: settings, the data's fingerprint, the initialisation seed) must equal the file's, otherwise the file
    belongs to other settings and training starts afresh. Loaded with `weights_only=True`: no code runs.
    """
    path: Path
    identity: dict[str, Any]
    generator: torch.Generator | None = None
    every: int = 2000
    resumed_from: int = field(default=0, init=False)  # the step a resume started at (0: a fresh start)

    def load(self, classifier: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[list[float], bool]:
        """Restore the saved state into `classifier`, `optimizer` and the generator: (losses so far, finished)."""
        if not self.path.is_file():
            return [], False
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            if json.loads(saved["identity"]) != json.loads(json.dumps(self.identity)):
                warnings.warn(f"{self.path} was saved with other settings or data; training the classifier afresh",
                              stacklevel=3)
                return [], False
            classifier.load_state_dict(saved["classifier"])
            optimizer.load_state_dict(saved["optimizer"])
            if self.generator is not None:
                self.generator.set_state(saved["generator"])
        except Exception as err:  # noqa: BLE001 - a foreign or truncated file is recomputed, never trusted
            warnings.warn(f"could not resume from {self.path} ({err}); training the classifier afresh", stacklevel=3)
            return [], False
        losses = saved["losses"].tolist()
        self.resumed_from = len(losses)
        return losses, bool(saved["finished"])

    def save(self, classifier: nn.Module, optimizer: torch.optim.Optimizer, losses: list[float],
             finished: bool) -> None:
        """Write the state under a temporary name and rename it over `path` (a reader sees old or whole)."""
        state = {"identity": json.dumps(self.identity, sort_keys=True), "finished": finished,
                 "classifier": classifier.state_dict(), "optimizer": optimizer.state_dict(),
                 "losses": torch.tensor(losses, dtype=torch.float64),
                 "generator": self.generator.get_state() if self.generator is not None else torch.empty(0)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        with deferred_signals():  # a stop signal waits for the rename, so no half-written temporary stays behind
            torch.save(state, tmp)
            os.replace(tmp, self.path)


def train_ratio_classifier(classifier: nn.Module, sample_p1: Sampler, sample_p0: Sampler, *, steps: int,
                           batch_size: int = 64, lr: float = 1e-4, betas: tuple[float, float] = (0.5, 0.9),
                           progress: bool = False, desc: str = "ratio classifier", window: int | None = None,
                           tol: float = 1e-3, state: ClassifierState | None = None) -> list[float]:
    """Train `classifier` by cross-entropy, p1 labelled 1 and p0 labelled 0, on fresh samples every step.

    With `window`, train to convergence: stop (at most `steps` steps) once the mean loss of the last `window` steps
    improves on the window before it by less than `tol` nats; without it, exactly `steps` steps. With `state`, the
    training is saved every `state.every` steps and resumed from its file: a resumed training ends with the same
    weights, losses and generator state as one that never stopped (a finished one is not trained again).

    Returns:
        The loss of every step (nats); log 4 = 1.386 is chance level.
    """

    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr, betas=betas)
    losses, finished = state.load(classifier, optimizer) if state is not None else ([], False)
    bar = tqdm(total=steps, initial=len(losses), desc=desc, disable=not progress or finished, leave=False,
               mininterval=5.0)
    step = len(losses)
    while not finished and step < steps:
        loss = discriminator_loss(classifier(sample_p1(batch_size)), classifier(sample_p0(batch_size)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        step += 1
        bar.update()
        finished = bool(window) and step % window == 0 and converged(losses, window, tol)
        if state is not None and step % state.every == 0 and not finished and step < steps:
            state.save(classifier, optimizer, losses, finished=False)
    bar.close()
    if state is not None:
        state.save(classifier, optimizer, losses, finished=True)
    return losses


def converged(losses: list[float], window: int, tol: float) -> bool:
    """The mean of the last `window` losses improves on the window before it by less than `tol`."""
    if len(losses) < 2 * window:
        return False
    last, before = losses[-window:], losses[-2 * window:-window]
    return sum(before) / window - sum(last) / window < tol


@torch.no_grad()
def mean_logit(classifier: nn.Module, samples: Tensor, batch_size: int = 4096) -> float:
    """E[logit D(x)] over `samples` (N, dim): the ratio estimate of KL(p1 || p0) when the samples come from p1."""
    return torch.cat([classifier(chunk) for chunk in samples.split(batch_size)]).double().mean().item()
