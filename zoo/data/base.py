"""The shared core of the image datasets: data roots, teaching errors, the `ImageDataset` base and decoded caches.

Every registered dataset is a factory ``fn(root, split, **options) -> Dataset`` whose item ``i`` is a ``(C, H, W)``
uint8 image (no label; labels, where a dataset has them, are the ``targets`` attribute). Scaling to [-1, 1] happens
later on the training device. Factories only check files and read headers; pixels are decoded on first use, so the
recipe layer can call a factory to validate options cheaply.

Readers never write under the data root: the shared data folder is read-only, so MNIST idx files, CIFAR-10 pickle
batches, image folders and tars are parsed by this package (`zoo.data.arrays`, `zoo.data.files`) rather than by
torchvision (which extracts next to the archives and insists on official checksums). torchvision is used only to
download files that are missing, when ``download=True``.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from zoo.config import ConfigError, check_keys
from zoo.registry import DATASETS, UnknownNameError
from zoo.seeds import derive_seed

MAX_IN_MEMORY_BYTES = 1 << 30  # as_uint8_tensor() returns None above this; the caller streams with a DataLoader
_HOLDOUT_SEED = 0  # fixed seed of the held-out permutations of dsprites and chairs (no official split exists)


class BadImageError(ValueError):
    """An image file that cannot be used as it is (corrupt, or beyond PIL's decompression-bomb limit); the message
    names the file and the fix. Raised when the image is decoded, possibly well into a run."""


class DatasetNotFoundError(FileNotFoundError):
    """The files of a dataset are missing under the data root and could not be downloaded."""

    def __str__(self) -> str:  # FileNotFoundError would print the errno tuple for several args
        return str(self.args[0])


def cache_dir() -> Path:
    """The zoo's user cache folder: ``$XDG_CACHE_HOME/zoo`` or ``~/.cache/zoo``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "zoo"


def resolve_root(root: str | os.PathLike | None) -> Path:
    """The data root: `root` if given, else the ``ZOO_DATA`` environment variable, else ``<cache_dir>/data``."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get("ZOO_DATA")
    return Path(env).expanduser() if env else cache_dir() / "data"


def load_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None, **options) -> Dataset:
    """Build the registered dataset `name` for `split` from the resolved data root (see `resolve_root`)."""
    return DATASETS.get(name)(resolve_root(root), split, **options)


def dataset_version(name: str) -> str | None:
    """The definition a registered dataset declares (`version` on its loader), when its name once meant another
    set: evaluation protocols record it, so results on the old and the new set never share a protocol id."""
    return getattr(DATASETS.get(name), "version", None) if name in DATASETS.names() else None


def open_split(data: Any) -> Dataset:
    """The split a recipe's `data` section names, with a ConfigError naming the data.* key for a wrong dataset name,
    option or split (the mistakes a user makes in a recipe or an override)."""

    try:
        allowed = dataset_options(data.name)
        if allowed is not None:
            check_keys("data.options", data.options, allowed, what="option")
        return load_dataset(data.name, data.split, data.root, **data.options)
    except UnknownNameError as err:
        raise ConfigError(f"data.name: {err}") from None
    except ValueError as err:
        raise ConfigError(f"data: {err}") from None


def dataset_options(name: str) -> list[str] | None:
    """The options a registered dataset's loader takes (its keyword parameters after root and split); None when it
    takes any (**options), and then the loader itself checks them."""

    params = inspect.signature(DATASETS.get(name)).parameters.values()
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name not in ("root", "split") and p.kind in (p.KEYWORD_ONLY,
                                                                                      p.POSITIONAL_OR_KEYWORD)]


def check_split(name: str, split: str, allowed: Sequence[str]) -> str:
    if split not in allowed:
        raise ValueError(f"dataset {name!r} has no split {split!r}; allowed splits: {', '.join(map(repr, allowed))}")
    return split


def split_seed(seed: int, split: str, tag: str) -> int:
    """A 63-bit seed for (tag, seed, split), so train and test draw different but reproducible streams."""
    return derive_seed(tag, int(seed), split)


def not_found(name: str, expected: Sequence[Path | str], hint: str = "", cause: BaseException | None = None):
    where = "\n".join(f"  {p}" for p in expected)
    why = f"\nDownload failed: {type(cause).__name__}: {cause}" if cause is not None else ""
    return DatasetNotFoundError(
        f"dataset {name!r} not found: expected\n{where}{why}\n"
        f"Fix: set data.root in the recipe (or the ZOO_DATA environment variable) to the folder that holds these "
        f"files, or copy them there.{' ' + hint if hint else ''}"
    )


def check_count(name: str, option: str, value: int | None, minimum: int = 1) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise ValueError(f"dataset {name!r}: {option} must be an integer >= {minimum} or None, got {value!r}")
    return value


def holdout(n: int, split: str, fraction: float = 0.1) -> Tensor:
    """Sorted indices of a fixed seeded split: "test" is `fraction` of the permutation, "train" the rest."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(_HOLDOUT_SEED))
    n_test = max(1, round(n * fraction)) if n > 1 else 0
    return (perm[:n_test] if split == "test" else perm[n_test:]).sort().values


class ImageDataset(Dataset):
    """One split of an image dataset; item i is a ``(C, H, W)`` uint8 image after the optional resize and padding.

    Subclasses implement `_native_shape` and `_read` (one native image); `_read_all` may be overridden with a faster
    whole-split path. The whole split is materialised lazily by `as_uint8_tensor` and then serves `__getitem__`.

    Args:
        name: registry name, used in messages.
        image_size: square output side (antialiased resize; a non-square image is centre-cropped to a square first
            rather than distorted); None keeps the native size.
        pad_to: zero-pad symmetrically to this square side (the extra pixel of an odd margin goes bottom/right).
        crop: centre crop to this square side before resizing (celeba64).
    """

    targets: Tensor | None = None
    classes: list[str] | None = None

    def __init__(self, name: str, image_size: int | None = None, pad_to: int | None = None, crop: int | None = None):
        self.name = name
        self.image_size = check_count(name, "image_size", image_size)
        self.pad_to = check_count(name, "pad_to", pad_to)
        self.crop = check_count(name, "crop", crop)
        self._tensor: Tensor | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def _native_shape(self) -> tuple[int, int, int]:
        raise NotImplementedError

    def _read(self, index: int) -> Tensor:
        raise NotImplementedError

    def _resized_shape(self) -> tuple[int, int, int]:
        c, h, w = self._native_shape()
        if self.crop is not None:
            if self.crop > min(h, w):
                raise ValueError(f"dataset {self.name!r}: crop={self.crop} exceeds the {h}x{w} images; lower it")
            h = w = self.crop
        if self.image_size is not None:
            h = w = self.image_size
        return c, h, w

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every item."""
        c, h, w = self._resized_shape()
        if self.pad_to is None:
            return c, h, w
        if self.pad_to < max(h, w):
            raise ValueError(
                f"dataset {self.name!r}: pad_to={self.pad_to} is smaller than the {h}x{w} images; "
                f"use pad_to >= {max(h, w)}, or image_size to shrink them"
            )
        return c, self.pad_to, self.pad_to

    def _resize(self, x: Tensor) -> Tensor:
        """Crop and resize ``(..., C, H, W)`` uint8 images to `_resized_shape`."""
        from torchvision.transforms.v2 import functional as TF

        h, w = x.shape[-2:]
        if self.crop is not None:
            x, h, w = TF.center_crop(x, [self.crop, self.crop]), self.crop, self.crop
        if self.image_size is None:
            return x
        if h != w:  # crop the long side instead of distorting the aspect ratio
            s = min(h, w)
            x, h, w = TF.center_crop(x, [s, s]), s, s
        return x if h == self.image_size else TF.resize(x, [self.image_size] * 2, antialias=True)

    def _pad(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if self.pad_to is None or (h, w) == (self.pad_to, self.pad_to):
            return x
        top, left = (self.pad_to - h) // 2, (self.pad_to - w) // 2
        return torch.nn.functional.pad(x, (left, self.pad_to - w - left, top, self.pad_to - h - top))

    def __getitem__(self, index: int) -> Tensor:
        if self._tensor is not None:
            return self._tensor[index]
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {self.name!r} with {n} examples")
        image = self._pad(self._resize(self._read(index % n)))
        if image.shape != self.shape:
            raise ValueError(
                f"dataset {self.name!r}: example {index} has shape {tuple(image.shape)}, expected {self.shape} like "
                f"the first one; pass image_size=... so every image is resized to one square size"
            )
        return image

    def _read_all(self) -> Tensor:
        """The whole split, cropped and resized but not padded: ``(N, C, H, W)`` uint8."""

        n, shape = len(self), self._resized_shape()
        out = torch.empty((n, *shape), dtype=torch.uint8)
        for i in tqdm(range(n), desc=f"decoding {self.name}", unit="img", disable=n < 1000):
            image = self._resize(self._read(i))
            if image.shape != shape:
                raise ValueError(
                    f"dataset {self.name!r}: example {i} has shape {tuple(image.shape)} after resizing, expected "
                    f"{shape}; pass image_size=... so every image is resized to one square size"
                )
            out[i] = image
        return out

    def as_uint8_tensor(self, max_bytes: int | None = None) -> Tensor | None:
        """The whole split as one ``(N, C, H, W)`` uint8 tensor, or None when over `max_bytes` (default 1 GiB).

        Materialised on the first call and cached; later `__getitem__` calls read from it.
        """
        if self._tensor is None:
            c, h, w = self.shape
            if len(self) * c * h * w > (MAX_IN_MEMORY_BYTES if max_bytes is None else max_bytes):
                return None
            self._tensor = self._pad(self._read_all()).contiguous()
        return self._tensor

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n={len(self)}, shape={self.shape})"


class TensorImages(ImageDataset):
    """Images already in memory, (N, C, H, W) uint8, as a dataset: your own data, tests and benchmarks.

    Args:
        images: the uint8 images.
        name: label for messages.
        image_size, pad_to: as for every image dataset.
    """

    def __init__(self, images: Tensor, name: str = "tensor", image_size: int | None = None,
                 pad_to: int | None = None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"TensorImages: expected a (N, C, H, W) uint8 tensor, got {images.dtype} "
                             f"{tuple(images.shape)}")
        super().__init__(name, image_size=image_size, pad_to=pad_to)
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def _native_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def _read(self, index: int) -> Tensor:
        return self.images[index]

    def _read_all(self) -> Tensor:
        return self._resize(self.images)


# ----------------------------------------------------------------------------------------------------------------
# Decoded-tensor cache: a decoded split saved under the user cache, never next to the (read-only) data
# ----------------------------------------------------------------------------------------------------------------


def decoded_cache_path(name: str, key: str) -> Path:
    """Where the decoded split of dataset `name` identified by `key` (files, sizes, transforms) is cached."""
    return cache_dir() / "decoded" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"


def load_decoded(path: Path | None, shape: tuple[int, ...]) -> Tensor | None:
    """The uint8 tensor of `shape` cached at `path`, or None when there is none or it does not match."""
    if path is not None and path.is_file():
        try:
            tensor = torch.load(path, weights_only=True)
            if isinstance(tensor, Tensor) and tensor.dtype == torch.uint8 and tensor.shape == shape:
                return tensor
        except Exception as exc:  # a damaged cache is rebuilt, not fatal
            warnings.warn(f"ignoring unreadable decoded cache {path}: {exc}", stacklevel=3)
    return None


def save_decoded(path: Path | None, tensor: Tensor, name: str) -> None:
    """Cache `tensor` at `path` (no-op for None); a failure only warns, as the split is already decoded."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        torch.save(tensor, partial)
        os.replace(partial, path)  # atomic, so a concurrent reader never sees half a file
    except OSError as exc:
        warnings.warn(f"could not cache decoded {name!r} at {path}: {exc}", stacklevel=3)
