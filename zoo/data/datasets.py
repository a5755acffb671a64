"""Registered image datasets: offline roots, teaching errors, whole-split uint8 tensors for small sets.

Every registered dataset is a factory ``fn(root, split, **options) -> Dataset`` whose item ``i`` is a ``(C, H, W)``
uint8 image (no label; labels, where a dataset has them, are the ``targets`` attribute). Scaling to [-1, 1] happens
later on the training device. Factories only check files and read headers; pixels are decoded on first use, so the
recipe layer can call a factory to validate options cheaply.

Readers never write under the data root: the shared data folder is read-only, so MNIST idx files, CIFAR-10 pickle
batches, image folders and tars are parsed here rather than by torchvision (which extracts next to the archives and
insists on official checksums). torchvision is used only to download files that are missing, when ``download=True``.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import warnings
import zipfile
from pathlib import Path
from typing import IO, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from zoo.registry import DATASETS, register_dataset

MAX_IN_MEMORY_BYTES = 1 << 30  # as_uint8_tensor() returns None above this; the caller streams with a DataLoader
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_HOLDOUT_SEED = 0  # fixed seed of the held-out permutations of dsprites and chairs (no official split exists)


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


def _check_split(name: str, split: str, allowed: Sequence[str]) -> str:
    if split not in allowed:
        raise ValueError(f"dataset {name!r} has no split {split!r}; allowed splits: {', '.join(map(repr, allowed))}")
    return split


def _split_seed(seed: int, split: str, tag: str) -> int:
    """A 63-bit seed for (tag, seed, split), so train and test draw different but reproducible streams."""
    digest = hashlib.sha256(f"{tag}:{int(seed)}:{split}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def _not_found(name: str, expected: Sequence[Path | str], hint: str = "", cause: BaseException | None = None):
    where = "\n".join(f"  {p}" for p in expected)
    why = f"\nDownload failed: {type(cause).__name__}: {cause}" if cause is not None else ""
    return DatasetNotFoundError(
        f"dataset {name!r} not found: expected\n{where}{why}\n"
        f"Fix: set data.root in the recipe (or the ZOO_DATA environment variable) to the folder that holds these "
        f"files, or copy them there.{' ' + hint if hint else ''}"
    )


def _check_count(name: str, option: str, value: int | None, minimum: int = 1) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise ValueError(f"dataset {name!r}: {option} must be an integer >= {minimum} or None, got {value!r}")
    return value


def _holdout(n: int, split: str, fraction: float = 0.1) -> Tensor:
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
        self.image_size = _check_count(name, "image_size", image_size)
        self.pad_to = _check_count(name, "pad_to", pad_to)
        self.crop = _check_count(name, "crop", crop)
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
        from tqdm.auto import tqdm

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


# ----------------------------------------------------------------------------------------------------------------
# MNIST-like idx files and stacked (colour) MNIST
# ----------------------------------------------------------------------------------------------------------------


def _idx_file(raw: Path, stem: str) -> Path | None:
    """The extracted idx file if present (faster), else its ``.gz``, else None."""
    return next((p for p in (raw / stem, raw / f"{stem}.gz") if p.is_file()), None)


def read_idx(path: Path, header_only: bool = False) -> np.ndarray | tuple[int, ...]:
    """Read a uint8 idx file (``.gz`` or not): big-endian magic ``00 00 08 ndim``, ndim uint32 sizes, then the data.

    Returns:
        The array, or only its dimensions when `header_only`.
    """
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        magic = f.read(4)
        if len(magic) != 4 or magic[:3] != b"\x00\x00\x08":
            raise ValueError(
                f"{path} is not a uint8 idx file (magic bytes {magic.hex()}, expected 000008 followed by the rank); "
                f"it is corrupt or truncated: delete it and copy or download it again"
            )
        dims = struct.unpack(f">{magic[3]}I", f.read(4 * magic[3]))
        if header_only:
            return dims
        data = np.frombuffer(f.read(), dtype=np.uint8)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} holds {data.size} values, its header says {dims}: truncated; copy it again")
    return data.reshape(dims)


class MNISTLike(ImageDataset):
    """MNIST or Fashion-MNIST from torchvision's raw layout ``<root>/<folder>/raw/*-idx?-ubyte[.gz]``: (1, 28, 28)."""

    def __init__(self, name: str, raw: Path, split: str, limit: int | None = None, **transform):
        super().__init__(name, **transform)
        prefix = "train" if split == "train" else "t10k"
        self.images_path = _idx_file(raw, f"{prefix}-images-idx3-ubyte")
        self.labels_path = _idx_file(raw, f"{prefix}-labels-idx1-ubyte")
        dims = read_idx(self.images_path, header_only=True)
        self._n = dims[0] if limit is None else min(limit, dims[0])
        self._hw = tuple(dims[1:])
        self._images: Tensor | None = None
        self._targets: Tensor | None = None
        self.shape  # noqa: B018 -- checks pad_to against the image size now rather than at the first batch

    def __len__(self) -> int:
        return self._n

    def _native_shape(self) -> tuple[int, int, int]:
        return (1, *self._hw)

    def raw_images(self) -> Tensor:
        """All native images ``(N, 1, 28, 28)``, read once."""
        if self._images is None:
            self._images = torch.from_numpy(read_idx(self.images_path)[: self._n].copy()).unsqueeze(1)
        return self._images

    @property
    def targets(self) -> Tensor:
        if self._targets is None:
            self._targets = torch.from_numpy(read_idx(self.labels_path)[: self._n].astype(np.int64))
        return self._targets

    def _read(self, index: int) -> Tensor:
        return self.raw_images()[index]

    def _read_all(self) -> Tensor:
        return self._resize(self.raw_images())


def _mnist_like(name: str, folder: str, root: Path, split: str, download: bool, limit: int | None, **transform):
    _check_split(name, split, ("train", "test"))
    _check_count(name, "limit", limit)
    raw = Path(root) / folder / "raw"
    prefix = "train" if split == "train" else "t10k"
    stems = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    if any(_idx_file(raw, s) is None for s in stems):
        expected = [raw / f"{s}(.gz)" for s in stems]
        if not download:
            raise _not_found(name, expected, "Or pass download=True to fetch them with torchvision.")
        import torchvision

        try:  # writes <root>/<folder>/raw, so only reached when the files are missing
            getattr(torchvision.datasets, folder)(str(root), train=split == "train", download=True)
        except Exception as exc:  # network failures take many forms; all of them mean "files still missing"
            raise _not_found(name, expected, "Offline? Copy the files there instead.", cause=exc) from exc
        if any(_idx_file(raw, s) is None for s in stems):
            raise _not_found(name, expected)
    return MNISTLike(name, raw, split, limit=limit, **transform)


@register_dataset("mnist")
def mnist(root: Path, split: str = "train", *, image_size: int | None = None, pad_to: int | None = None,
          download: bool = True, limit: int | None = None) -> MNISTLike:
    """MNIST digits (1, 28, 28) from ``<root>/MNIST/raw``; targets are the digit labels."""
    return _mnist_like("mnist", "MNIST", root, split, download, limit, image_size=image_size, pad_to=pad_to)


@register_dataset("fashion_mnist")
def fashion_mnist(root: Path, split: str = "train", *, image_size: int | None = None, pad_to: int | None = None,
                  download: bool = True, limit: int | None = None) -> MNISTLike:
    """Fashion-MNIST (1, 28, 28) from ``<root>/FashionMNIST/raw``; targets are the class labels."""
    return _mnist_like("fashion_mnist", "FashionMNIST", root, split, download, limit,
                       image_size=image_size, pad_to=pad_to)


class ColorMNIST(ImageDataset):
    """Stacked MNIST: three MNIST digits as the R, G, B channels, (3, 28, 28); 1000 modes.

    ``source_indices[i]`` holds the MNIST indices of example i's channels, drawn once for the whole split from a
    generator seeded by (seed, split), so an example depends only on (seed, split, index). ``targets`` is the mode
    index ``100 * d_r + 10 * d_g + d_b``.
    """

    def __init__(self, mnist: MNISTLike, source_indices: Tensor, **transform):
        super().__init__("color_mnist", **transform)
        self.mnist = mnist
        self.source_indices = source_indices  # (N, 3)
        self.shape  # noqa: B018 -- validates pad_to now

    def __len__(self) -> int:
        return len(self.source_indices)

    def _native_shape(self) -> tuple[int, int, int]:
        return (3, *self.mnist.shape[1:])

    @property
    def targets(self) -> Tensor:
        digits = self.mnist.targets[self.source_indices]  # (N, 3)
        return digits @ torch.tensor([100, 10, 1])

    def _read(self, index: int) -> Tensor:
        return self.mnist.raw_images()[self.source_indices[index], 0]

    def _read_all(self) -> Tensor:
        return self._resize(self.mnist.raw_images()[self.source_indices, 0])  # (N, 3, 28, 28)


@register_dataset("color_mnist")
def color_mnist(root: Path, split: str = "train", *, seed: int = 0, size: int | None = None,
                image_size: int | None = None, pad_to: int | None = None, download: bool = True,
                limit: int | None = None) -> ColorMNIST:
    """Stacked MNIST (VEEGAN; ColorMNIST in Rosca et al.): `size` examples (default: as many as the MNIST split)."""
    _check_count("color_mnist", "size", size)
    _check_count("color_mnist", "limit", limit)
    source = _mnist_like("color_mnist", "MNIST", root, split, download, None)
    n = len(source) if size is None else size
    generator = torch.Generator().manual_seed(_split_seed(seed, split, "color_mnist"))
    indices = torch.randint(len(source), (n, 3), generator=generator)  # drawn in full, so limit keeps prefixes
    return ColorMNIST(source, indices[:limit], image_size=image_size, pad_to=pad_to)


# ----------------------------------------------------------------------------------------------------------------
# CIFAR-10 python pickle batches
# ----------------------------------------------------------------------------------------------------------------

_CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR_TEST = ["test_batch"]


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what the CIFAR batches contain (dicts, lists, str/bytes, numpy uint8 arrays): no code runs."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
        ("numpy", "dtype"), ("_codecs", "encode"),  # _codecs.encode: how python 3 protocol-2 pickles store bytes
    }

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="latin1")  # latin1: the official files are python 2 pickles
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"{self.path}: refusing to unpickle {module}.{name}: not part of the CIFAR-10 python batch layout, "
                f"so this is not an official batch; replace it with the official cifar-10-batches-py files"
            )
        if module.startswith("numpy.core") and hasattr(np, "_core"):  # numpy 2 renamed numpy.core
            module = module.replace("numpy.core", "numpy._core", 1)
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> dict:
    """One CIFAR python batch as a dict with str keys (``data`` (N, 3072) uint8, ``labels``, ...)."""
    with open(path, "rb") as f:
        batch = _BatchUnpickler(f, path).load()
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(batch).__name__}; not a CIFAR python batch")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


class CIFAR10Batches(ImageDataset):
    """CIFAR-10 (3, 32, 32) read from the official python batches, without torchvision's checksum requirement."""

    def __init__(self, folder: Path, files: Sequence[str], limit: int | None = None, **transform):
        super().__init__("cifar10", **transform)
        self.folder, self.files, self.limit = folder, list(files), limit
        self._images: Tensor | None = None
        self._targets: Tensor | None = None
        meta = folder / "batches.meta"
        self.classes = [str(c) for c in read_cifar_batch(meta)["label_names"]] if meta.is_file() else None
        self.shape  # noqa: B018 -- validates pad_to now

    def _load(self) -> None:
        images, labels = [], []
        for name in self.files:
            batch = read_cifar_batch(self.folder / name)
            data = np.asarray(batch.get("data"))
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or "labels" not in batch:
                raise ValueError(
                    f"{self.folder / name}: expected 'data' uint8 (N, 3072) and 'labels', got 'data' {data.dtype} "
                    f"{data.shape} and keys {sorted(batch)}; not a CIFAR-10 python batch"
                )
            images.append(data.reshape(-1, 3, 32, 32))  # rows hold the 1024 R, then G, then B values
            labels.append(np.asarray(batch["labels"], dtype=np.int64))
        self._images = torch.from_numpy(np.concatenate(images)[: self.limit])
        self._targets = torch.from_numpy(np.concatenate(labels)[: self.limit])

    def raw_images(self) -> Tensor:
        if self._images is None:
            self._load()
        return self._images

    @property
    def targets(self) -> Tensor:
        if self._targets is None:
            self._load()
        return self._targets

    def __len__(self) -> int:
        return len(self.raw_images())

    def _native_shape(self) -> tuple[int, int, int]:
        return 3, 32, 32

    def _read(self, index: int) -> Tensor:
        return self.raw_images()[index]

    def _read_all(self) -> Tensor:
        return self._resize(self.raw_images())


@register_dataset("cifar10")
def cifar10(root: Path, split: str = "train", *, image_size: int | None = None, pad_to: int | None = None,
            download: bool = True, limit: int | None = None) -> CIFAR10Batches:
    """Official CIFAR-10 (3, 32, 32) from ``<root>/cifar-10-batches-py``; targets are the class labels."""
    _check_split("cifar10", split, ("train", "test"))
    _check_count("cifar10", "limit", limit)
    folder = Path(root) / "cifar-10-batches-py"
    files = _CIFAR_TRAIN if split == "train" else _CIFAR_TEST
    expected = [folder / f for f in files]
    if not all(p.is_file() for p in expected):
        if not download:
            raise _not_found("cifar10", expected, "Or pass download=True to fetch cifar-10-python.tar.gz.")
        import torchvision

        try:
            torchvision.datasets.CIFAR10(str(root), train=split == "train", download=True)
        except Exception as exc:  # any failure leaves the batches missing
            raise _not_found("cifar10", expected, "Offline? Copy the extracted batches there.", cause=exc) from exc
    return CIFAR10Batches(folder, files, limit=limit, image_size=image_size, pad_to=pad_to)


# ----------------------------------------------------------------------------------------------------------------
# Image files in folders or tar archives
# ----------------------------------------------------------------------------------------------------------------


class FolderSource:
    """Image files under a folder, addressed by sorted relative paths."""

    def __init__(self, base: Path, relpaths: Sequence[str]):
        self.base, self.relpaths = base, list(relpaths)

    def __len__(self) -> int:
        return len(self.relpaths)

    def read(self, index: int) -> bytes:
        return (self.base / self.relpaths[index]).read_bytes()

    def describe(self, index: int) -> str:
        return str(self.base / self.relpaths[index])

    def fingerprint(self) -> str:
        h = hashlib.sha256(str(self.base.resolve()).encode())
        for rel in self.relpaths:
            st = (self.base / rel).stat()
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        return h.hexdigest()


class TarSource:
    """Image members of an uncompressed tar, read in place (never extracted); one handle per process."""

    def __init__(self, path: Path, members: Sequence[tarfile.TarInfo]):
        self.path, self.members = path, list(members)
        self._handle: tarfile.TarFile | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.members)

    def __getstate__(self) -> dict:  # DataLoader workers reopen the tar instead of sharing a file offset
        return {**self.__dict__, "_handle": None, "_pid": None}

    def read(self, index: int) -> bytes:
        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = tarfile.open(self.path), os.getpid()
        return self._handle.extractfile(self.members[index]).read()

    def describe(self, index: int) -> str:
        return f"{self.path}:{self.members[index].name}"

    def fingerprint(self) -> str:
        st = self.path.stat()
        return hashlib.sha256(f"{self.path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()


def _decode_image(data: bytes, mode: str, where: str) -> Tensor:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            array = np.array(image.convert(mode))
    except OSError as exc:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"cannot decode image {where}: {exc}; the file is corrupt: replace or delete it") from exc
    tensor = torch.from_numpy(array)
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


class ImageFiles(ImageDataset):
    """Images decoded from files (PNG/JPEG) in a folder or a tar; the decoded split can be cached as a ``.pt``.

    Args:
        name: registry name, also the cache file prefix.
        source: a `FolderSource` or `TarSource`.
        mode: PIL mode, "RGB" (3 channels) or "L" (1 channel).
        targets: class index per file, or None.
        classes: class names, or None.
        cache: save the decoded split under ``<cache_dir>/decoded/`` keyed by the files' sizes and mtimes, and load it
            from there next time (never next to the data, which may be read-only). Skipped with `limit`.
    """

    def __init__(self, name: str, source: FolderSource | TarSource, mode: str = "RGB",
                 targets: Sequence[int] | None = None, classes: Sequence[str] | None = None, cache: bool = True,
                 cacheable: bool = True, **transform):
        super().__init__(name, **transform)
        if len(source) == 0:
            raise ValueError(f"dataset {name!r}: no images selected (is the split or the limit empty?)")
        self.source, self.mode, self.cache, self._cacheable = source, mode, cache, cacheable
        self.targets = None if targets is None else torch.as_tensor(list(targets), dtype=torch.long)
        self.classes = None if classes is None else list(classes)
        self._native: tuple[int, int, int] | None = None
        self.shape  # noqa: B018 -- decodes the first image, so crop/pad_to problems show at construction

    def __len__(self) -> int:
        return len(self.source)

    def _native_shape(self) -> tuple[int, int, int]:
        if self._native is None:  # the first image stands for all; a mismatch is reported when it is read
            self._native = tuple(self._read(0).shape)
        return self._native

    def _read(self, index: int) -> Tensor:
        return _decode_image(self.source.read(index), self.mode, self.source.describe(index))

    def cache_path(self) -> Path | None:
        """Where the decoded split is cached, or None when caching does not apply."""
        if not (self.cache and self._cacheable):
            return None
        key = f"{self.source.fingerprint()}:{len(self)}:{self.mode}:{self._resized_shape()}:{self.crop}"
        return cache_dir() / "decoded" / f"{self.name}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"

    def _read_all(self) -> Tensor:
        path = self.cache_path()
        if path is not None and path.is_file():
            try:
                tensor = torch.load(path, weights_only=True)
                if isinstance(tensor, Tensor) and tensor.dtype == torch.uint8 and tensor.shape == (
                    len(self), *self._resized_shape()
                ):
                    return tensor
            except Exception as exc:  # a damaged cache is rebuilt, not fatal
                warnings.warn(f"ignoring unreadable decoded cache {path}: {exc}", stacklevel=2)
        tensor = super()._read_all()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(f".{os.getpid()}.partial")
                torch.save(tensor, partial)
                os.replace(partial, path)  # atomic, so a concurrent reader never sees half a file
            except OSError as exc:
                warnings.warn(f"could not cache decoded {self.name!r} at {path}: {exc}", stacklevel=2)
        return tensor


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _image_folder(name: str, location: Path, split: str, limit: int | None, cache: bool, **transform) -> ImageFiles:
    """ImageFolder layout ``<location>/<split>/<class>/*`` in a folder or tar; targets index the sorted classes."""
    if location.is_dir():
        split_dir = location / split
        if not split_dir.is_dir():
            raise _not_found(name, [split_dir / "<class>/*.png|jpg|jpeg"])
        classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
        files = [(c, f.name) for c in classes for f in sorted((split_dir / c).iterdir()) if _is_image(f.name)]
        source = FolderSource(split_dir, [f"{c}/{f}" for c, f in files[:limit]])
    else:
        with tarfile.open(location) as tar:
            members = {}
            for m in tar:
                parts = m.name.removeprefix("./").split("/")
                if m.isfile() and len(parts) == 3 and parts[0] == split and _is_image(parts[2]):
                    members[m.name.removeprefix("./")] = m
        if not members:
            raise _not_found(name, [f"{location}:{split}/<class>/*.png|jpg|jpeg (tar members)"])
        names = sorted(members)
        classes = sorted({n.split("/")[1] for n in names})
        files = [tuple(n.split("/")[1:]) for n in names]
        source = TarSource(location, [members[n] for n in names[:limit]])
    index = {c: i for i, c in enumerate(classes)}
    targets = [index[c] for c, _ in files[:limit]]
    return ImageFiles(name, source, "RGB", targets, classes, cache=cache, cacheable=limit is None, **transform)


@register_dataset("cifar10_folder")
def cifar10_folder(root: Path, split: str = "train", *, path: str | None = None, image_size: int | None = None,
                   pad_to: int | None = None, download: bool = True, limit: int | None = None,
                   cache: bool = True) -> ImageFiles:
    """CIFAR-10 as image files: ``<split>/<class>/*.{png,jpg,jpeg}`` in a folder or an uncompressed ``.tar``.

    With ``path=None`` it reads ``<root>/cifar10_folder`` or else ``<root>/cifar10-jpeg-q75-lossy.tar``; a relative
    `path` is taken relative to `root`. Targets index the sorted class folders (alphabetical order is CIFAR-10's own
    label order). `download` is accepted for uniformity and ignored: there is nothing to download.

    WARNING: the shared ``cifar10-jpeg-q75-lossy.tar`` is a LOSSY (JPEG quality ~75) stand-in for CIFAR-10, good for
    smoke training and pipeline tests only. NEVER report IS/FID from it as CIFAR-10 numbers: use the official
    ``cifar10`` dataset for those.
    """
    _check_split("cifar10_folder", split, ("train", "test"))
    _check_count("cifar10_folder", "limit", limit)
    candidates = [Path(root) / path] if path is not None else [
        Path(root) / "cifar10_folder", Path(root) / "cifar10-jpeg-q75-lossy.tar"]
    location = next((c for c in candidates if c.is_dir() or (c.is_file() and tarfile.is_tarfile(c))), None)
    if location is None:
        expected = [f"{c}  (folder or .tar holding {split}/<class>/*.png|jpg)" for c in candidates]
        raise _not_found("cifar10_folder", expected, "Or pass path=... to point at such a folder or tar.")
    return _image_folder("cifar10_folder", location, split, limit, cache, image_size=image_size, pad_to=pad_to)


_CELEBA_SPLITS = {"train": 0, "valid": 1, "test": 2}


@register_dataset("celeba64")
def celeba64(root: Path, split: str = "train", *, image_size: int | None = None, crop: int | None = 140,
             pad_to: int | None = None, download: bool = True, limit: int | None = None,
             cache: bool = True) -> ImageFiles:
    """CelebA aligned faces, centre-cropped to 140 px then resized to 64 px: (3, 64, 64).

    Reads ``<root>/celeba/img_align_celeba/*.jpg`` and ``<root>/celeba/list_eval_partition.txt`` (torchvision's
    layout; the other annotation files are not needed). The 140 px centre crop of the 178x218 aligned images is the
    usual DCGAN/WGAN-GP preprocessing: it keeps the face and drops most background. `image_size` defaults to 64.
    The train split (162,770 images, 2 GB at 64 px) is over the in-memory cap, so it streams.
    """
    _check_split("celeba64", split, tuple(_CELEBA_SPLITS))
    _check_count("celeba64", "limit", limit)
    base = Path(root) / "celeba"
    expected = [base / "img_align_celeba" / "*.jpg", base / "list_eval_partition.txt"]
    if not ((base / "img_align_celeba").is_dir() and (base / "list_eval_partition.txt").is_file()):
        if not download:
            raise _not_found("celeba64", expected, "Or pass download=True (needs the gdown package).")
        import torchvision

        try:
            torchvision.datasets.CelebA(str(root), split=split, target_type=[], download=True)
        except Exception as exc:  # Google Drive quota, no gdown, offline: all leave the files missing
            raise _not_found("celeba64", expected, "Offline? Copy the files there.", cause=exc) from exc
    files = []
    for line in (base / "list_eval_partition.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == str(_CELEBA_SPLITS[split]):
            files.append(f"img_align_celeba/{parts[0]}")
    source = FolderSource(base, files[:limit])
    return ImageFiles("celeba64", source, "RGB", cache=cache, cacheable=limit is None,
                      image_size=64 if image_size is None else image_size, pad_to=pad_to, crop=crop)


@register_dataset("tinyimagenet")
def tinyimagenet(root: Path, split: str = "train", *, image_size: int | None = None, pad_to: int | None = None,
                 download: bool = True, limit: int | None = None, cache: bool = True) -> ImageFiles:
    """Tiny ImageNet (3, 64, 64) from ``<root>/tiny-imagenet-200``; split "test" is the labelled ``val`` folder.

    Targets index the sorted ``train/<wnid>`` folders. `download` is ignored (no torchvision loader exists).
    """
    _check_split("tinyimagenet", split, ("train", "test"))
    _check_count("tinyimagenet", "limit", limit)
    base = Path(root) / "tiny-imagenet-200"
    expected = [base / "train/<wnid>/images/*.JPEG", base / "val/images/*.JPEG", base / "val/val_annotations.txt"]
    if not (base / "train").is_dir() or (split == "test" and not (base / "val/val_annotations.txt").is_file()):
        raise _not_found("tinyimagenet", expected, "Get tiny-imagenet-200.zip from the CS231n site and unzip it there.")
    wnids = sorted(d.name for d in (base / "train").iterdir() if d.is_dir())
    index = {w: i for i, w in enumerate(wnids)}
    if split == "train":
        files = [(f"train/{w}/images/{f.name}", index[w]) for w in wnids
                 for f in sorted((base / "train" / w / "images").glob("*")) if _is_image(f.name)]
    else:
        rows = [line.split("\t") for line in (base / "val/val_annotations.txt").read_text().splitlines() if line]
        unknown = sorted({r[1] for r in rows} - set(index))
        if unknown:
            raise ValueError(f"tinyimagenet: val_annotations.txt names classes {unknown[:5]} that have no train/<wnid> "
                             f"folder under {base}; the extraction is incomplete: unzip tiny-imagenet-200.zip again")
        files = sorted((f"val/images/{r[0]}", index[r[1]]) for r in rows)
    files = files[:limit]
    return ImageFiles("tinyimagenet", FolderSource(base, [f for f, _ in files]), "RGB", [t for _, t in files], wnids,
                      cache=cache, cacheable=limit is None, image_size=image_size, pad_to=pad_to)


@register_dataset("chairs")
def chairs(root: Path, split: str = "train", *, path: str | None = None, image_size: int | None = None,
           pad_to: int | None = None, download: bool = True, limit: int | None = None,
           cache: bool = True) -> ImageFiles:
    """3D Chairs renders as grey images, resized to 64 px: (1, 64, 64).

    Reads every ``*.png`` below ``<root>/chairs`` (or `path`, relative to `root`), sorted by relative path. There is
    no official split: "test" is a fixed 10 % of the files chosen by a permutation seeded with 0, "train" the other
    90 %. `image_size` defaults to 64; `download` is ignored (no torchvision loader exists).
    """
    _check_split("chairs", split, ("train", "test"))
    _check_count("chairs", "limit", limit)
    base = Path(root) / (path if path is not None else "chairs")
    files = sorted(p.relative_to(base).as_posix() for p in base.rglob("*")
                   if p.suffix.lower() == ".png" and p.is_file()) if base.is_dir() else []
    if not files:
        raise _not_found("chairs", [base / "**/*.png"], "Get rendered_chairs.tar from the 3D Chairs (Aubry et al.) "
                         "site and extract it there, or pass path=...")
    selected = [files[i] for i in _holdout(len(files), split).tolist()][:limit]
    return ImageFiles("chairs", FolderSource(base, selected), "L", cache=cache, cacheable=limit is None,
                      image_size=64 if image_size is None else image_size, pad_to=pad_to)


# ----------------------------------------------------------------------------------------------------------------
# dSprites
# ----------------------------------------------------------------------------------------------------------------

DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"


def _read_exact(f, n: int) -> bytes:
    chunks = []
    while n > 0 and (chunk := f.read(n)):
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class DSprites(ImageDataset):
    """dSprites (1, 64, 64) with pixels in {0, 255}, from the official npz.

    The ``imgs`` member is streamed from the zip in chunks and bit-packed, so memory is 0.4 GB instead of the 3 GB
    that ``np.load`` would allocate for the full array, and the factory reads only the header; nothing is ever
    unpickled (only a plain uint8/bool array header is accepted).
    """

    def __init__(self, path: Path, split: str, limit: int | None = None, **transform):
        super().__init__("dsprites", **transform)
        self.path = path
        with self._open_imgs() as f:
            total, self._hw = self._header(f)
        self.indices = (torch.arange(total) if split == "train" else _holdout(total, "test"))[:limit]
        self._packed: np.ndarray | None = None
        self.shape  # noqa: B018 -- validates pad_to now

    @contextlib.contextmanager
    def _open_imgs(self) -> Iterator[IO[bytes]]:
        try:
            archive = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile as exc:
            raise ValueError(f"{self.path} is not an npz (zip) file: {exc}; expected the official {DSPRITES_FILE}") \
                from exc
        with archive:
            if "imgs.npy" not in archive.namelist():
                raise ValueError(f"{self.path} has no 'imgs' array (members: {archive.namelist()}); expected the "
                                 f"official {DSPRITES_FILE}")
            with archive.open("imgs.npy") as f:
                yield f

    def _header(self, f) -> tuple[int, tuple[int, int]]:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        if fortran or len(shape) != 3 or dtype not in (np.uint8, np.bool_):
            raise ValueError(
                f"{self.path}: 'imgs' is {dtype} {shape} (fortran_order={fortran}); expected C-ordered uint8 "
                f"(N, 64, 64) as in the official {DSPRITES_FILE}"
            )
        return shape[0], tuple(shape[1:])

    def __len__(self) -> int:
        return len(self.indices)

    def _native_shape(self) -> tuple[int, int, int]:
        return (1, *self._hw)

    def _load(self) -> np.ndarray:
        if self._packed is None:
            needed, per_image = int(self.indices.max()) + 1, int(np.prod(self._hw))
            packed = np.empty((needed, self._hw[0], (self._hw[1] + 7) // 8), dtype=np.uint8)
            with self._open_imgs() as f:
                self._header(f)
                for start in range(0, needed, 8192):  # only up to the last needed image: limit stays cheap
                    count = min(8192, needed - start)
                    chunk = np.frombuffer(_read_exact(f, count * per_image), dtype=np.uint8)
                    if chunk.size != count * per_image:
                        raise ValueError(f"{self.path}: 'imgs' ends early at image {start}; the file is truncated")
                    packed[start:start + count] = np.packbits(chunk.reshape(count, *self._hw) != 0, axis=-1)
            contiguous = needed == len(self.indices)  # the train split: skip the copy of the fancy index
            self._packed = packed if contiguous else packed[self.indices.numpy()]
        return self._packed

    def _unpack(self, packed: np.ndarray) -> Tensor:
        bits = np.unpackbits(packed, axis=-1, count=self._hw[1])
        return torch.from_numpy(bits * np.uint8(255)).unsqueeze(-3)

    def _read(self, index: int) -> Tensor:
        return self._unpack(self._load()[index])

    def _read_all(self) -> Tensor:
        return self._resize(self._unpack(self._load()))


@register_dataset("dsprites")
def dsprites(root: Path, split: str = "train", *, path: str | None = None, image_size: int | None = None,
             pad_to: int | None = None, download: bool = True, limit: int | None = None) -> DSprites:
    """dSprites (Matthey et al.) from `path` (the npz or its folder, relative to `root`) or ``<root>/dsprites/``.

    Split "train" is ALL 737,280 images, as the beta-VAE line of work trains on all of them; "test" is a fixed 10 %
    subset (a permutation seeded with 0), for reconstruction checks only: it overlaps "train". `download` is ignored.
    """
    _check_split("dsprites", split, ("train", "test"))
    _check_count("dsprites", "limit", limit)
    file = Path(root) / path if path is not None else Path(root) / "dsprites" / DSPRITES_FILE
    file = file / DSPRITES_FILE if file.is_dir() else file
    if not file.is_file():
        raise _not_found("dsprites", [file], "Get it from github.com/deepmind/dsprites-dataset, or pass path=...")
    return DSprites(file, split, limit=limit, image_size=image_size, pad_to=pad_to)
