"""What every metric shares: the registered `MetricSpec`, the `MetricResult` it returns, teaching errors, weight-file
resolution and hashing, and 8-bit quantisation of images."""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import Tensor

from zoo.config import ConfigError, field_types, from_dict
from zoo.registry import METRICS


class EvaluationError(RuntimeError):
    """A metric cannot run as asked (missing weights, wrong options); the message says how to fix it."""


class MetricNotApplicable(EvaluationError):
    """The metric does not apply to this source (e.g. LPIPS of a model without an encoder); evaluation goes on."""


class WeightsNotFoundError(EvaluationError):
    """A metric's network weights are not available locally and could not be downloaded."""


@dataclass
class MetricResult:
    """One number with the protocol that produced it.

    Attributes:
        metric: the result's name: a registered metric ("is") or one of its secondary outputs ("modes.kl").
        value: the estimate.
        std: its spread as the metric defines it (docs/metrics.md), or None.
        protocol: everything needed to reproduce and compare it: samples, splits, reference split, backbone, weights
            file and sha256, seed.
        spread: what `std` is ("split std", "per-pair std", "standard error", ...); set from the metric's
            definition when the wrapper leaves it None.
        metadata: what comes with the number but is not its protocol (the critic's training curve).
    """

    metric: str
    value: float
    std: float | None = None
    protocol: dict[str, Any] = field(default_factory=dict)
    spread: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "std": self.std, "spread": self.spread,
                "protocol": self.protocol, **({"metadata": self.metadata} if self.metadata else {})}


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: `fn(ctx) -> list[MetricResult]` plus what readers of its numbers need to know.

    Attributes:
        name: registry name.
        fn: the wrapper; `ctx` is a `zoo.evaluation.sampling.EvalContext`.
        outputs: result name -> True when higher is better, False when lower is, None when neither (a diversity
            read against its reference), for every result the metric can return.
        description: one line for `zoo registry models` and docs.
        spread: what the std of its results is (e.g. "split std"), or None when they have none.
        options: the dataclass of the metric's options (`fn(ctx, options)`), or None for a metric without any
            (`fn(ctx)`); `zoo evaluate` turns every field into a command-line flag.
    """

    name: str
    fn: Callable[..., list[MetricResult]]
    outputs: dict[str, bool | None]
    description: str
    options: type | None = None
    spread: str | None = None

    def parse_options(self, given: Mapping[str, Any]) -> Any:
        """This metric's options from the evaluation's `{name: value}` (None: not given, the default holds), typed:
        a wrong type is an EvaluationError naming the option, the value and this metric's options."""
        if self.options is None:
            return None
        fields = field_types(self.options)
        try:
            return from_dict(self.options, {k: v for k, v in given.items() if k in fields and v is not None},
                             f"{self.name} option")
        except ConfigError as err:
            raise EvaluationError(f"metric {err}; the options of {self.name} are {', '.join(fields)}") from None

    def __call__(self, ctx: Any) -> list[MetricResult]:
        check_options([METRICS.get(n) for n in METRICS.names()], ctx.options)  # a misspelt one fails even here
        results = self.fn(ctx) if self.options is None else self.fn(ctx, self.parse_options(ctx.options))
        for r in results:
            if r.std is not None and r.spread is None:
                r.spread = self.spread
        return results


def check_options(specs: Iterable[MetricSpec], given: Mapping[str, Any]) -> None:
    """Every option given (not None) must belong to one of `specs`; an unknown one is an EvaluationError naming it
    and the options those metrics take."""
    specs = list(specs)
    allowed = sorted({f for s in specs if s.options is not None for f in field_types(s.options)})
    for key, value in given.items():
        if value is not None and key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise EvaluationError(f"unknown metric option {key!r}{hint} for {', '.join(s.name for s in specs)}; "
                                  f"their options: {', '.join(allowed) or '(none)'}")


def define_metric(name: str, description: str, higher_is_better: bool | None, options: type | None = None,
                  spread: str | None = None, **extra_outputs: bool | None):
    """Decorator registering `fn(ctx) -> list[MetricResult]` as metric `name`, or `fn(ctx, opts)` with `opts` an
    instance of the dataclass `options`. Secondary results are named ``name.key`` for each keyword
    ``key=higher_is_better``; None marks a number with no better direction (a diversity read against its
    reference). `spread` says what the results' std is ("split std", "standard error", ...)."""

    def wrap(fn: Callable[..., list[MetricResult]]) -> Callable[..., list[MetricResult]]:
        outputs = {name: higher_is_better, **{f"{name}.{k}": v for k, v in extra_outputs.items()}}
        METRICS.register(name, MetricSpec(name, fn, outputs, description, options, spread))
        return fn

    return wrap


def metric_options() -> dict[str, tuple[dataclasses.Field, list[str]]]:
    """Every option of every registered metric: field name -> (its dataclass field, the metrics that read it). Two
    metrics may share an option (`splits` of is and is_cifar) when they declare it with one type."""
    out: dict[str, tuple[dataclasses.Field, list[str]]] = {}
    for name in METRICS.names():
        spec = METRICS.get(name)
        for f in dataclasses.fields(spec.options) if spec.options is not None else ():
            if f.name in out and str(out[f.name][0].type) != str(f.type):
                raise TypeError(f"metric option {f.name!r}: {name} declares it as {f.type}, {out[f.name][1]} as "
                                f"{out[f.name][0].type}; give one of them another name")
            out.setdefault(f.name, (f, []))[1].append(name)
    return out


def option_help(f: dataclasses.Field) -> str:
    """A flag's help: the field's `help` metadata, else its default."""
    default = f.default if f.default is not dataclasses.MISSING else None
    return str(f.metadata.get("help", f"default: {default if default is not None else 'the protocol'}"))


def higher_is_better(result_name: str) -> bool | None:
    """Direction of a result name over all registered metrics; None when it has none or is unknown."""
    for name in METRICS.names():
        outputs = METRICS.get(name).outputs
        if result_name in outputs:
            return outputs[result_name]
    return None


# ------------------------------------------------------------------------------------------------ weight files
_HASHES: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, cached per (path, size, mtime) for the life of the process."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def weights_record(path: str | os.PathLike) -> dict[str, str]:
    """The protocol entry of a weights file: its name and sha256."""
    return {"weights": Path(path).name, "weights_sha256": sha256_file(path)}


def resolve_weights(option: str | None, env: str, what: str, flag: str,
                    fallback: Callable[[], str | None] | None = None) -> Path:
    """A local weights file: the explicit option, else the environment variable, else `fallback()` (a download or a
    cache lookup that returns a path or None).

    Raises:
        WeightsNotFoundError: naming the file needed and the three ways to supply it.
    """
    for source, value in ((flag, option), (env, os.environ.get(env))):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise WeightsNotFoundError(f"{what}: {source} points at {str(path)!r}, which is not a file; pass the "
                                           f"path of the weights file")
            return path
    cause = ""
    if fallback is not None:
        try:
            found = fallback()
        except Exception as err:  # noqa: BLE001 - downloads fail in many ways; all mean "not available"
            found, cause = None, f" (download failed: {type(err).__name__}: {err})"
        if found:
            return Path(found)
    raise WeightsNotFoundError(f"{what} not found{cause}. Supply the file with {flag} PATH or the environment "
                               f"variable {env}=PATH")


def load_state_dict_file(path: Path, what: str) -> dict[str, Tensor]:
    """A plain tensor state dict from a torch file, loaded with weights_only=True (no code runs), or the `state_dict`
    entry of a training checkpoint that holds one."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for foreign files
        raise EvaluationError(f"{what}: cannot read {str(path)!r} as a weights-only torch file: {err}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise EvaluationError(f"{what}: {str(path)!r} does not hold a state dict of tensors")
    return obj


# -------------------------------------------------------------------------------------------------- images
def quantize(images: Tensor) -> Tensor:
    """Images in [-1, 1] -> uint8 as a saved 8-bit image would hold them (the inverse of `to_model_range`)."""
    return images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


def to_rgb(images: Tensor) -> Tensor:
    """(B, 1, H, W) -> (B, 3, H, W) by repeating the channel; RGB passes through. Networks trained on colour images
    (Inception, the CIFAR-10 ResNet, AlexNet) see grey images as equal R, G, B."""
    if images.shape[1] == 3:
        return images
    if images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    raise EvaluationError(f"expected 1 or 3 image channels for an RGB feature network, got {images.shape[1]}")
