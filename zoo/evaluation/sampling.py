"""The evaluation context: one source (a trained model or a real split) and the reproducible, sharded streams of
images every metric reads.

Samples are drawn in batches of `batch_size`, but the noise of sample i comes from a generator seeded by (seed, i)
(`zoo.models.base.indexed_noise`), so sample i is the same whatever the batch size, whatever n, whatever metric asks
and however many processes share the work. (A model whose `sample` does not draw through `GenerativeModel.prior`
falls back to one generator per batch, seeded by (seed, b), and its results record the batch size.) Under `accelerate launch`
process r draws and processes batches r, r + W, r + 2W, ...; the outputs are gathered and put back in batch order,
so a 2-process evaluation returns exactly what one process would. Random draws a metric makes while processing batch
b (posterior samples, say) come from the default generator reseeded by (seed, b), so they do not depend on the
sharding either.
Every image a metric sees is 8-bit (samples are quantised as a saved PNG would be), like the real data it is
compared with.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate import Accelerator
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from zoo.config import DataConfig
from zoo.data import dataset_version, load_dataset
from zoo.data.base import cache_dir
from zoo.evaluation.core import EvaluationError, MetricNotApplicable, quantize
from zoo.models.base import GenerativeModel
from zoo.models.base import indexed_noise
from zoo.seeds import derive_seed

BatchFn = Callable[[Tensor, "Tensor | None"], Tensor]


def stream_seed(tag: str, seed: int, index: int) -> int:
    """A 63-bit seed for batch `index` of the stream `tag` (samples, critic, ...)."""
    return derive_seed(tag, int(seed), int(index))


class EvalContext:
    """What a metric may read about one source.

    Args:
        model: the trained model (a `GenerativeModel`, put in eval mode), or None when the source is real data
            (`data:NAME[:SPLIT]`).
        data: the dataset section: name, root, options (a checkpoint's recipe.data, or built for a data source).
        source: label recorded with every result (checkpoint path or data:NAME:SPLIT).
        split: the reference split real-data comparisons use (FID, LPIPS, critic test data, ...).
        sample_split: for data sources, the split whose images play the samples (default `split`).
        n_samples: samples per metric; None lets each metric use its protocol's default.
        n_real: reference images; None uses the whole split (a seeded random subset otherwise).
        batch_size: images per batch, for sampling and feature networks.
        seed: fixes every random draw of the evaluation.
        options: metric options (weights paths, critic budget, ...), see `zoo evaluate`.
        accelerator: an `accelerate.Accelerator` to shard across processes; None runs one process.
        device: where networks run (default: the accelerator's device, else CPU).
        datasets: split -> dataset overrides (tests, in-memory data); other splits load from `data`.
        progress: show progress bars (main process only).
        cache_dir: where reference statistics of real splits are cached on disk (`reference`); None: ZOO_EVAL_CACHE,
            else <user cache>/zoo/eval; False: no disk cache.
    """

    def __init__(self, model: GenerativeModel | None, data: DataConfig, *, source: str = "", split: str = "test",
                 sample_split: str | None = None, n_samples: int | None = None, n_real: int | None = None,
                 batch_size: int = 100, seed: int = 0, options: dict[str, Any] | None = None,
                 accelerator: Accelerator | None = None, device: str | torch.device | None = None,
                 datasets: dict[str, Dataset] | None = None, progress: bool = False,
                 cache_dir: str | os.PathLike | bool | None = None):
        self.model, self.data, self.source = model, data, source
        self.split, self.sample_split = split, sample_split or split
        self.n_samples, self.n_real, self.batch_size, self.seed = n_samples, n_real, batch_size, seed
        self.options = dict(options or {})
        self.accelerator = accelerator
        self.device = torch.device(device) if device is not None else (
            accelerator.device if accelerator is not None else torch.device("cpu"))
        self.progress = progress
        self.cache: dict[Any, Any] = {}  # features shared between metrics (Inception for is, fid and kid)
        self._datasets: dict[str, Dataset] = dict(datasets or {})
        self._samples: dict[int, Tensor] = {}
        self._per_batch_noise = False  # set when the model ignored indexed_noise: samples depend on the batch size
        self.cache_dir = _resolve_cache_dir(cache_dir)
        self.reference_computations = 0  # reference() calls that had to compute (tests count them)
        if model is not None:
            model.to(self.device).eval()

    # ---- who we are ----------------------------------------------------------------------------------------------
    @property
    def world(self) -> tuple[int, int]:
        """(process index, number of processes)."""
        if self.accelerator is None:
            return 0, 1
        return self.accelerator.process_index, self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.world[0] == 0

    @property
    def model_name(self) -> str:
        if self.model is None:
            return "data"
        return getattr(type(self.model), "name", "") or type(self.model).__name__

    def require_model(self, metric: str, attribute: str | None = None, why: str = "") -> Any:
        """The model, or MetricNotApplicable when the source is data or the model lacks `attribute`."""
        if self.model is None:
            raise MetricNotApplicable(f"{metric} evaluates a model; {self.source} is real data")
        if attribute is not None and not getattr(self.model, attribute, None):
            raise MetricNotApplicable(f"{metric} needs a model with {why or attribute}; {self.model_name} has none")
        return self.model

    def protocol(self, **extra: Any) -> dict[str, Any]:
        """The protocol fields every result records, plus the metric's own."""
        base = {"source": self.source, "model": self.model_name, "dataset": self.data.name,
                "dataset_options": dict(self.data.options), "seed": self.seed}
        version = dataset_version(self.data.name)
        if version is not None:  # e.g. color_mnist, once the stacked set: never ranked with results on that one
            base["dataset_version"] = version
        if self.model is None:
            base["sample_split"] = self.sample_split
        elif self._per_batch_noise:
            base["batch_size"] = self.batch_size  # the samples depend on it (the model ignores indexed_noise)
        return {**base, **extra}

    def image_shape(self) -> tuple[int, ...]:
        """(C, H, W) of the images metrics see: the model's data shape, else one image of the sample split."""
        shape = getattr(self.model, "data_shape", None) if self.model is not None else None
        if shape is None:
            if self.model is not None:
                return tuple(self.sample_batch(0, 1).shape[1:])
            shape = tuple(self.real_batch(self.sample_split, torch.zeros(1, dtype=torch.long))[0].shape[1:])
        return tuple(shape)

    def n(self, default: int) -> int:
        """Samples this metric draws: --n-samples, else the metric's protocol default."""
        return self.n_samples if self.n_samples is not None else default

    # ---- real data -----------------------------------------------------------------------------------------------
    def dataset(self, split: str | None = None) -> Dataset:
        split = split or self.split
        if split not in self._datasets:
            try:
                self._datasets[split] = load_dataset(self.data.name, split, self.data.root, **self.data.options)
            except ValueError as err:
                raise EvaluationError(f"dataset {self.data.name!r}: {err}") from None
        return self._datasets[split]

    def has_split(self, split: str) -> bool:
        try:
            self.dataset(split)
        except (EvaluationError, FileNotFoundError, KeyError):  # no such split, files missing, unknown dataset
            return False
        return True

    def indices(self, split: str | None = None, n: int | None = None) -> Tensor:
        """Indices of the n reference images: all of the split when n is None or too large, else a random subset
        fixed by (seed, split); in a seeded random order either way (consecutive pairs are random pairs)."""
        split = split or self.split
        size = len(self.dataset(split))  # type: ignore[arg-type]
        g = torch.Generator().manual_seed(stream_seed(f"real:{split}", self.seed, 0))
        order = torch.randperm(size, generator=g)
        return order if n is None else order[:n]

    def real_batch(self, split: str, index: Tensor) -> tuple[Tensor, Tensor | None]:
        """uint8 images (B, C, H, W) on the device and their labels (or None)."""
        ds = self.dataset(split)
        whole = ds.as_uint8_tensor() if hasattr(ds, "as_uint8_tensor") else None
        images = whole[index] if whole is not None else torch.stack([ds[int(i)] for i in index])
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise EvaluationError(f"dataset {self.data.name!r} yields {images.dtype} tensors of shape "
                                  f"{tuple(images.shape[1:])}; image metrics need (C, H, W) uint8 images")
        targets = getattr(ds, "targets", None)
        labels = targets[index] if targets is not None else None
        return images.to(self.device), (labels.to(self.device) if labels is not None else None)

    def map_real(self, fn: BatchFn, split: str | None = None, n: int | None = None, desc: str = "real",
                 with_rows: bool = False) -> Tensor:
        """fn(images, labels) over the chosen reference images in batches; outputs concatenated in order. With
        `with_rows`, fn(images, labels, rows) also gets the batch's `slice` of positions in that order (to pair a
        batch with the rows of a cached reference statistic computed over the same images)."""
        split = split or self.split
        index = self.indices(split, n)
        chunks = index.split(self.batch_size)
        rows = (lambda b: slice(b * self.batch_size, b * self.batch_size + len(chunks[b]))) if with_rows else None
        return self._sharded(len(chunks), lambda b: self.real_batch(split, chunks[b]), fn, desc, rows=rows)

    # ---- samples -------------------------------------------------------------------------------------------------
    def sample_batch(self, b: int, n: int) -> Tensor:
        """Batch b of the sample stream (uint8, on the device), truncated to the first n samples overall."""
        if b not in self._samples:
            model = self.require_model("sampling")
            seed = stream_seed("samples", self.seed, b)
            generator = torch.Generator(device=self.device).manual_seed(seed)
            torch.manual_seed(seed)  # models that draw extra noise (noise injection) draw it reproducibly too
            with torch.no_grad(), indexed_noise(lambda i, k: stream_seed(f"sample:{k}", self.seed, i),
                                                b * self.batch_size) as noise:
                self._samples[b] = quantize(model.sample(self.batch_size, generator=generator))  # stays on device
            self._per_batch_noise |= noise.calls == 0
        return self._samples[b][: n - b * self.batch_size]

    def map_samples(self, fn: BatchFn, n: int, desc: str = "samples") -> tuple[Tensor, int]:
        """fn(samples, None) over the first n samples (for a data source: n images of its sample split, with
        labels). Returns the concatenated outputs and the number of images actually used."""
        if self.model is None:
            index = self.indices(self.sample_split, n)
            chunks = index.split(self.batch_size)
            out = self._sharded(len(chunks), lambda b: self.real_batch(self.sample_split, chunks[b]), fn, desc)
            return out, len(index)
        batches = -(-n // self.batch_size)
        return self._sharded(batches, lambda b: (self.sample_batch(b, n), None), fn, desc), n

    def sampler(self, tag: str) -> Callable[[int], Tensor]:
        """A fresh stream of samples in [-1, 1] (quantised to 8 bits), seeded by (seed, tag): call it with a count."""
        model = self.require_model(f"the {tag} stream")
        generator = torch.Generator(device=self.device).manual_seed(stream_seed(tag, self.seed, 0))

        @torch.no_grad()
        def draw(n: int) -> Tensor:
            model.eval()
            return quantize(model.sample(n, generator=generator)).to(self.device).float().div(127.5).sub(1)

        return draw

    # ---- cached reference statistics ------------------------------------------------------------------------------
    def data_identity(self, split: str | None = None, n: int | None = None) -> dict[str, Any]:
        """What identifies the reference images `map_real(split, n)` reads: dataset, options, split, the seeded
        order and a sha256 of the images themselves (so changed files on disk invalidate a cache)."""
        split = split or self.split
        key = ("identity", split, n)
        if key not in self.cache:
            index = self.indices(split, n)
            digest = hashlib.sha256()
            for chunk in index.split(4096):
                digest.update(self.real_batch(split, chunk)[0].cpu().contiguous().numpy().tobytes())
            self.cache[key] = {"dataset": self.data.name, "dataset_options": dict(self.data.options), "split": split,
                               "n": len(index), "order_seed": self.seed, "images_sha256": digest.hexdigest()}
        return self.cache[key]

    def reference(self, name: str, protocol: dict[str, Any], compute: Callable[[], Tensor], split: str | None = None,
                  n: int | None = None) -> Tensor:
        """A statistic of a real split computed once per (split, protocol): from this process's memory, else the
        disk cache (`cache_dir/<name>-<key>.pt`, keyed by `protocol` and `data_identity(split, n)`), else
        `compute()` (then stored). Every process of a sharded run takes the same branch, so `compute` may shard."""
        key_doc = {"name": name, "protocol": protocol, "data": self.data_identity(split, n)}
        key = hashlib.sha256(json.dumps(key_doc, sort_keys=True, default=str).encode()).hexdigest()[:24]
        if key in _REFERENCES:
            return _REFERENCES[key]
        path = self.cache_dir / f"{name}-{key}.pt" if self.cache_dir else None
        if path is not None and path.is_file():
            try:
                _REFERENCES[key] = torch.load(path, map_location="cpu", weights_only=True)
                return _REFERENCES[key]
            except Exception:  # noqa: BLE001 - a truncated or foreign file: recompute and overwrite
                pass
        self.reference_computations += 1
        value = compute().cpu()
        _REFERENCES[key] = value
        if path is not None and self.is_main and value.nbytes <= DISK_CACHE_MAX_BYTES:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                torch.save(value, tmp)
                tmp.replace(path)  # atomic: a concurrent reader sees the old state or the whole file
                path.with_suffix(".json").write_text(json.dumps(key_doc, indent=2, sort_keys=True, default=str))
            except OSError as err:
                warnings.warn(f"could not write the reference cache {path}: {err}", stacklevel=2)
        return value

    # ---- sharding ------------------------------------------------------------------------------------------------
    def _sharded(self, n_batches: int, make: Callable[[int], tuple[Tensor, Tensor | None]], fn: Callable[..., Tensor],
                 desc: str, rows: Callable[[int], slice] | None = None) -> Tensor:
        rank, world = self.world
        mine = range(rank, n_batches, world)
        outputs = []
        with torch.no_grad():
            for b in tqdm(mine, desc=desc, disable=not (self.progress and self.is_main), leave=False,
                          dynamic_ncols=True):
                images, labels = make(b)
                torch.manual_seed(stream_seed(f"batch:{desc}", self.seed, b))  # fn's own draws: fixed per batch
                out = fn(images, labels) if rows is None else fn(images, labels, rows(b))
                outputs.append((b, out.detach()))  # on the device: no host sync per batch
        outputs = [(b, out.cpu()) for b, out in outputs]
        if world > 1:
            from accelerate.utils import gather_object
            outputs = gather_object(outputs)
        if not outputs:
            raise EvaluationError(f"{desc}: no images to evaluate (n = 0); raise --n-samples / --n-real")
        return torch.cat([out for _, out in sorted(outputs, key=lambda t: t[0])])


# Larger statistics (LPIPS features of 10,000 64 px images are 1.3 GB) stay in memory only: cheaper to recompute.
DISK_CACHE_MAX_BYTES = 2 << 30
_REFERENCES: dict[str, Tensor] = {}  # in-process reference cache shared by every context (several checkpoints)


def _resolve_cache_dir(option: str | os.PathLike | bool | None) -> Path | None:
    if option is False:
        return None
    if option not in (None, True, ""):
        return Path(option).expanduser()  # type: ignore[arg-type]
    env = os.environ.get("ZOO_EVAL_CACHE")
    if env:
        return Path(env).expanduser()
    return cache_dir() / "eval"


def parse_source(source: str) -> tuple[str, str | None] | None:
    """`data:NAME[:SPLIT]` -> (NAME, SPLIT or None); any other string (a checkpoint path) -> None."""
    if not source.startswith("data:"):
        return None
    name, _, split = source[len("data:"):].partition(":")
    if not name:
        raise EvaluationError(f"source {source!r}: expected data:NAME[:SPLIT], e.g. data:cifar10_folder:test")
    return name, split or None


def checkpoint_label(path: str | Path) -> str:
    return str(Path(path).resolve())
