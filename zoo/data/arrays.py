"""Datasets stored as arrays in a few files: MNIST-like idx files, CIFAR-10 python pickle batches, the dSprites npz.

Registers ``mnist``, ``fashion_mnist``, ``cifar10`` and ``dsprites`` (the MNIST-built colour sets are in
``zoo.data.coloured``). Each reader parses its format
itself (never unpickling code, never extracting next to the data) and holds the native split as one uint8 array.
"""
from __future__ import annotations

import contextlib
import gzip
import pickle
import struct
import zipfile
from pathlib import Path
from typing import IO, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from zoo.data.base import ImageDataset, check_count, check_split, holdout, not_found
from zoo.registry import register_dataset


class _ArrayImages(ImageDataset):
    """A split whose native images are one ``(N, C, H, W)`` uint8 tensor, returned by `raw_images` (read once)."""

    def raw_images(self) -> Tensor:
        raise NotImplementedError

    def _read(self, index: int) -> Tensor:
        return self.raw_images()[index]

    def _read_all(self) -> Tensor:
        return self._resize(self.raw_images())


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


class MNISTLike(_ArrayImages):
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


def _mnist_like(name: str, folder: str, root: Path, split: str, download: bool, limit: int | None, **transform):
    check_split(name, split, ("train", "test"))
    check_count(name, "limit", limit)
    raw = Path(root) / folder / "raw"
    prefix = "train" if split == "train" else "t10k"
    stems = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    if any(_idx_file(raw, s) is None for s in stems):
        expected = [raw / f"{s}(.gz)" for s in stems]
        if not download:
            raise not_found(name, expected, "Or pass download=True to fetch them with torchvision.")
        import torchvision

        try:  # writes <root>/<folder>/raw, so only reached when the files are missing
            getattr(torchvision.datasets, folder)(str(root), train=split == "train", download=True)
        except Exception as exc:  # network failures take many forms; all of them mean "files still missing"
            raise not_found(name, expected, "Offline? Copy the files there instead.", cause=exc) from exc
        if any(_idx_file(raw, s) is None for s in stems):
            raise not_found(name, expected)
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


class CIFAR10Batches(_ArrayImages):
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


@register_dataset("cifar10")
def cifar10(root: Path, split: str = "train", *, image_size: int | None = None, pad_to: int | None = None,
            download: bool = True, limit: int | None = None) -> CIFAR10Batches:
    """Official CIFAR-10 (3, 32, 32) from ``<root>/cifar-10-batches-py``; targets are the class labels."""
    check_split("cifar10", split, ("train", "test"))
    check_count("cifar10", "limit", limit)
    folder = Path(root) / "cifar-10-batches-py"
    files = _CIFAR_TRAIN if split == "train" else _CIFAR_TEST
    expected = [folder / f for f in files]
    if not all(p.is_file() for p in expected):
        if not download:
            raise not_found("cifar10", expected, "Or pass download=True to fetch cifar-10-python.tar.gz.")
        import torchvision

        try:
            torchvision.datasets.CIFAR10(str(root), train=split == "train", download=True)
        except Exception as exc:  # any failure leaves the batches missing
            raise not_found("cifar10", expected, "Offline? Copy the extracted batches there.", cause=exc) from exc
    return CIFAR10Batches(folder, files, limit=limit, image_size=image_size, pad_to=pad_to)


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
        self.indices = (torch.arange(total) if split == "train" else holdout(total, "test"))[:limit]
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
    check_split("dsprites", split, ("train", "test"))
    check_count("dsprites", "limit", limit)
    file = Path(root) / path if path is not None else Path(root) / "dsprites" / DSPRITES_FILE
    file = file / DSPRITES_FILE if file.is_dir() else file
    if not file.is_file():
        raise not_found("dsprites", [file], "Get it from github.com/deepmind/dsprites-dataset, or pass path=...")
    return DSprites(file, split, limit=limit, image_size=image_size, pad_to=pad_to)
