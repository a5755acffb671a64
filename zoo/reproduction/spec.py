"""Reproduction specs: one small YAML per paper table or figure (recipes/reproduction/*.yaml), loaded strictly.

A spec says which runs to train (recipe + overrides + seeds), how to measure them (a protocol), the paper's values
with their source, the paper's claims to check, and named scales (`smoke`, `cpu`, `paper`) as override sets. Unknown
keys and wrong types fail with the dotted key (zoo.config's strict dataclass machinery), so a typo in a spec never
silently runs something else.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from zoo.config import ConfigError, from_dict, read_yaml

SCALES = ("smoke", "cpu", "paper")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class PaperValue:
    """One number printed in the paper and where: e.g. source "Table 2, row JS^G alpha=0.1, column MNIST"."""

    value: float
    source: str
    std: float | None = None


@dataclass
class MetricColumn:
    """A result a protocol produces for every run (`name` is its key in the protocol's output)."""

    name: str
    label: str = ""
    units: str = ""
    higher_is_better: bool | None = None
    digits: int = 2  # decimals when rendered


@dataclass
class ProtocolSpec:
    """How a finished run is measured: a protocol of zoo.reproduction.protocols and its options."""

    name: Literal["latent_kl", "metrics", "evidence", "study"]  # Deasy's reconstruction: metrics [reconstruction]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSpec:
    """One row of the table: a recipe (path relative to the spec file), its overrides and the paper's values.

    A `study` spec's runs name no recipe: `args` go to the study's command instead.
    """

    name: str
    recipe: str | None = None
    overrides: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    label: str = ""
    paper: dict[str, PaperValue] = field(default_factory=dict)  # metric name -> the paper's value
    note: str = ""
    # "<spec>/<run>" (a spec in the same folder): measure that spec's run at the same scale and seed instead of
    # training one, e.g. Fig. 5's evidence on Tables 1-2's checkpoints; if it is not trained yet, it is trained there
    # by that spec's settings. Such a run names no recipe.
    checkpoints_of: str = ""


@dataclass
class ScaleSpec:
    """A named schedule. `overrides` apply to every run after the run's own; `runs` / `seeds` pick a subset;
    `epochs` (fractional allowed) sets train.max_steps from the training split's size; `protocol` updates the
    protocol's options (e.g. fewer evaluation images for `smoke`)."""

    description: str = ""
    overrides: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)  # study specs: the study command's arguments
    runs: list[str] | None = None
    seeds: list[int] | None = None
    epochs: float | None = None
    protocol: dict[str, Any] = field(default_factory=dict)


@dataclass
class Term:
    """One side of a claim: the mean over seeds of `metric` for one run, or the min / max / mean of those means over
    several runs, or a constant `value` (a bound the paper derives)."""

    runs: list[str] = field(default_factory=list)
    metric: str | None = None  # default: the spec's first metric
    reduce: Literal["single", "min", "max", "mean"] = "single"
    value: float | None = None


@dataclass
class ClaimSpec:
    """A statement of the paper checked on our numbers: `lhs op rhs`, or `lhs` runs increasing / decreasing."""

    statement: str
    source: str
    lhs: Term
    op: Literal["<", ">", "<=", ">=", "increasing", "decreasing"]
    rhs: Term | None = None
    # What the paper's own printed numbers say of the claim: a text can claim more than its tables show (e.g. a row
    # in an appendix the claim ignores); the page shows it beside ours and the tests hold the spec to it.
    on_paper_values: Literal["holds", "does not hold"] = "holds"
    note: str = ""  # why the claim reads as it does (a second reading, a corrected source)


@dataclass
class ReproSpec:
    """A paper table or figure to reproduce (see the module docstring and docs/reproduction.md)."""

    name: str
    title: str
    paper: str  # the citation, e.g. "Deasy et al. 2020"
    source: str  # table / figure in the paper
    metrics: list[MetricColumn]
    protocol: ProtocolSpec
    runs: list[RunSpec]
    scales: dict[str, ScaleSpec]
    seeds: list[int] = field(default_factory=lambda: [0])
    claims: list[ClaimSpec] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)  # what the paper scale needs beyond this CPU machine
    notes: str = ""
    path: str = ""  # the YAML file (set by load_spec)

    def run(self, name: str) -> RunSpec:
        for r in self.runs:
            if r.name == name:
                return r
        raise ConfigError(f"{self.name}: no run named {name!r}; runs: {', '.join(r.name for r in self.runs)}")

    def metric(self, name: str | None) -> MetricColumn:
        if name is None:
            return self.metrics[0]
        for m in self.metrics:
            if m.name == name:
                return m
        raise ConfigError(f"{self.name}: no metric named {name!r}; metrics: {', '.join(m.name for m in self.metrics)}")

    def scale(self, name: str) -> ScaleSpec:
        if name not in self.scales:
            raise ConfigError(f"{self.name}: no scale {name!r}; this spec has {', '.join(self.scales)}")
        return self.scales[name]

    def recipe_path(self, run: RunSpec) -> Path:
        if run.recipe is None:
            raise ConfigError(f"{self.name}.runs.{run.name}: no recipe (study specs run their study command instead)")
        return (self.folder / run.recipe).resolve()

    @property
    def folder(self) -> Path:
        """The folder of the spec file: recipes and other specs are named relative to it."""
        return (Path(self.path) if Path(self.path).is_absolute() else REPO / self.path).parent


def load_spec(path: str | os.PathLike) -> ReproSpec:
    """Read and check a spec: unknown keys and wrong types fail naming the dotted key; names must be unique and every
    run / metric a scale or claim names must exist; every recipe must exist."""
    path = Path(path)
    tree = read_yaml(path)
    try:  # shown in docs and commands: relative to the checkout where possible, else absolute (recipes resolve from it)
        shown = str(path.resolve().relative_to(REPO))
    except ValueError:
        shown = str(path.resolve())
    spec: ReproSpec = from_dict(ReproSpec, {**tree, "path": shown}, path.stem)
    where = str(path)
    for kind, names in (("run", [r.name for r in spec.runs]), ("metric", [m.name for m in spec.metrics])):
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{where}: {kind} names must be unique, repeated: {', '.join(dupes)}")
    if not spec.runs or not spec.metrics:
        raise ConfigError(f"{where}: a spec needs at least one run and one metric")
    unknown_scales = sorted(set(spec.scales) - set(SCALES))
    if unknown_scales or "smoke" not in spec.scales:
        raise ConfigError(f"{where}.scales: allowed {', '.join(SCALES)} and 'smoke' is required (the tests run it); "
                          f"got {', '.join(spec.scales) or 'none'}")
    for run in spec.runs:
        if run.checkpoints_of:
            _check_checkpoints_of(spec, run, where)
        elif spec.protocol.name == "study":
            if run.recipe is not None:
                raise ConfigError(f"{where}.runs.{run.name}.recipe: a study spec's runs take `args`, not a recipe")
        elif run.recipe is None or not spec.recipe_path(run).is_file():
            raise ConfigError(f"{where}.runs.{run.name}.recipe: {run.recipe!r} is not a recipe file (paths are "
                              f"relative to the spec, e.g. ../vae_mnist.yaml)")
        for metric in run.paper:
            spec.metric(metric)
    for name, scale in spec.scales.items():
        for run in scale.runs or []:
            spec.run(run)
        if scale.epochs is not None and scale.epochs <= 0:
            raise ConfigError(f"{where}.scales.{name}.epochs: must be positive, got {scale.epochs}")
    for i, claim in enumerate(spec.claims):
        sides = [claim.lhs] + ([claim.rhs] if claim.rhs is not None else [])
        if (claim.rhs is None) != (claim.op in ("increasing", "decreasing")):
            raise ConfigError(f"{where}.claims[{i}]: op {claim.op!r} " + ("needs an rhs" if claim.rhs is None else
                                                                         "takes no rhs"))
        for term in sides:
            if (term.value is None) == (not term.runs):
                raise ConfigError(f"{where}.claims[{i}]: a term has either runs or a value, got {term}")
            if term.reduce == "single" and len(term.runs) > 1 and claim.op not in ("increasing", "decreasing"):
                raise ConfigError(f"{where}.claims[{i}]: several runs need reduce: min, max or mean")
            for run in term.runs:
                spec.run(run)
            spec.metric(term.metric)
    return spec


def checkpoints_source(spec: ReproSpec, run: RunSpec) -> tuple[ReproSpec, RunSpec]:
    """The spec and run that train the checkpoints `run` measures: `run.checkpoints_of`, or `run` itself."""
    if not run.checkpoints_of:
        return spec, run
    other_name, _, other_run = run.checkpoints_of.partition("/")
    path = (spec.folder / f"{other_name}.yaml").resolve()
    other = _load_spec_cached(str(path), path.stat().st_mtime_ns)
    return other, other.run(other_run)


@functools.lru_cache(maxsize=16)
def _load_spec_cached(path: str, mtime_ns: int) -> ReproSpec:  # a Fig. 5 spec names the same Tables spec 42 times
    return load_spec(path)


def _check_checkpoints_of(spec: ReproSpec, run: RunSpec, where: str) -> None:
    key = f"{where}.runs.{run.name}.checkpoints_of"
    if run.recipe is not None or spec.protocol.name == "study":
        raise ConfigError(f"{key}: a run that measures another spec's checkpoints trains nothing: drop its recipe "
                          f"(and a study spec's runs have no checkpoints)")
    name, slash, other_run = run.checkpoints_of.partition("/")
    if not slash or not other_run or not (spec.folder / f"{name}.yaml").is_file():
        raise ConfigError(f"{key}: {run.checkpoints_of!r} must be <spec>/<run>, naming a spec file in "
                          f"{spec.folder} (e.g. deasy2020_tables12_mnist/kl_qp)")
    try:
        _, source = checkpoints_source(spec, run)
    except ConfigError as err:
        raise ConfigError(f"{key}: {err}") from None
    if source.checkpoints_of or source.recipe is None:
        raise ConfigError(f"{key}: {run.checkpoints_of} trains nothing itself (no recipe); name the run that does")


def find_specs(folder: str | os.PathLike) -> list[Path]:
    """Every spec file in `folder`, sorted."""
    return sorted(Path(folder).glob("*.yaml"))
