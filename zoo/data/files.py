"""Datasets stored as image files (PNG/JPEG) in a folder or an uncompressed tar, decoded with PIL.

Registers ``image_folder`` (your own images), ``cifar10_folder``, ``celeba64``, ``tinyimagenet`` and ``chairs``. Tars are read in place, never extracted;
a decoded split can be cached as a ``.pt`` under the user cache (see `zoo.data.base`).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from zoo.data.base import (BadImageError, ImageDataset, check_count, check_split, decoded_cache_path, holdout,
                           load_decoded, not_found, save_decoded)
from zoo.registry import register_dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


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


MAX_PIXELS_ENV = "ZOO_MAX_IMAGE_PIXELS"  # PIL's decompression-bomb limit for image datasets; 0: no limit
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit PNGs (and PIL's 32-bit integer mode) hold 0..65535


def _max_pixels() -> int | None:
    from PIL import Image

    value = os.environ.get(MAX_PIXELS_ENV)
    if value is None:
        return Image.MAX_IMAGE_PIXELS
    try:
        return int(value) or None
    except ValueError:
        raise BadImageError(f"{MAX_PIXELS_ENV}={value!r}: expected a whole number of pixels (0: no limit)") from None


def _to_8bit(image):
    """A 16-bit image as 8-bit "L": value * 255 / 65535, rounded. PIL's own convert("L"/"RGB") clips every value above
    255 to white, so a 16-bit PNG came out (almost) blank."""
    from PIL import Image

    wide = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.clip(np.rint(wide * (255 / 65535)), 0, 255).astype(np.uint8), mode="L")


def _decode_image(data: bytes, mode: str, where: str) -> Tensor:

    from PIL import Image

    limit = _max_pixels()
    try:
        with warnings.catch_warnings():
            # PIL only warns between 1x and 2x its limit; an image that large is refused like a bigger one
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, limit
            try:
                with Image.open(io.BytesIO(data)) as image:
                    array = np.array((_to_8bit(image) if image.mode in WIDE_MODES else image).convert(mode))
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        size = re.search(r"\((\d+) pixels\)", str(exc))
        raise BadImageError(f"image {where} is too large to decode safely: {size.group(1) if size else 'more'} pixels, "
                            f"beyond PIL's guard against decompression bombs ({limit} pixels); if the image is "
                            f"genuine, raise the limit with {MAX_PIXELS_ENV}=<pixels> (0: no limit), else delete or "
                            f"shrink it") from None
    except OSError as exc:  # PIL.UnidentifiedImageError is an OSError
        raise BadImageError(f"cannot decode image {where}: {exc}; the file is corrupt: replace or delete it") from None
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
        return decoded_cache_path(self.name, key)

    def _read_all(self) -> Tensor:
        path = self.cache_path()
        tensor = load_decoded(path, (len(self), *self._resized_shape()))
        if tensor is None:
            tensor = super()._read_all()
            save_decoded(path, tensor, self.name)
        return tensor


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _list_images(location: Path) -> tuple[dict[str, tarfile.TarInfo] | None, list[str]]:
    """Sorted relative POSIX paths of the image files in a folder or an uncompressed tar (with the tar's members)."""
    if location.is_dir():
        return None, sorted(p.relative_to(location).as_posix() for p in location.rglob("*")
                            if p.is_file() and _is_image(p.name))
    with tarfile.open(location) as tar:
        members = {m.name.removeprefix("./"): m for m in tar if m.isfile() and _is_image(m.name)}
    return members, sorted(members)


def _image_folder(name: str, location: Path, split: str, limit: int | None, cache: bool, mode: str = "RGB",
                  split_folders: bool = True, test_fraction: float = 0.1, **transform) -> ImageFiles:
    """ImageFolder layout in a folder or tar: ``<split>/<class>/*`` (or ``<split>/*``: one class); targets index the
    sorted classes. Without ``train/`` and ``test/`` folders and `split_folders` False, every ``<class>/*`` (or ``*``)
    image is split by a fixed seeded permutation: "test" is `test_fraction` of it."""
    members, names = _list_images(location)
    has_splits = any(n.startswith(("train/", "test/")) for n in names)
    if has_splits or split_folders:
        names = [n.removeprefix(f"{split}/") for n in names if n.startswith(f"{split}/")]
        if not names:
            what = f"{location}:{split}/<class>/*.png|jpg|jpeg" + (" (tar members)" if members is not None else "")
            raise not_found(name, [what])
        prefix = f"{split}/"
    else:
        if not names:
            raise not_found(name, [f"{location}/<class>/*.png|jpg|jpeg"])
        names = [names[i] for i in holdout(len(names), split, test_fraction).tolist()]
        prefix = ""
    classes = sorted({n.split("/")[0] if "/" in n else "" for n in names})
    names = names[:limit]
    if members is None:
        source: FolderSource | TarSource = FolderSource(location / prefix, names)
    else:
        source = TarSource(location, [members[prefix + n] for n in names])
    index = {c: i for i, c in enumerate(classes)}
    targets = [index[n.split("/")[0] if "/" in n else ""] for n in names]
    return ImageFiles(name, source, mode, targets, classes, cache=cache, cacheable=limit is None, **transform)


@register_dataset("image_folder")
def image_folder(root: Path, split: str = "train", *, path: str | None = None, channels: int = 3,
                 image_size: int | None = None, pad_to: int | None = None, download: bool = True,
                 limit: int | None = None, cache: bool = True, test_fraction: float = 0.1) -> ImageFiles:
    """Your own images: any ImageFolder-style folder or uncompressed ``.tar`` of PNG/JPEG files, any size.

    `path` (required; relative paths are taken relative to `root`) holds either ``train/<class>/*`` and
    ``test/<class>/*`` (the class folder may be left out), or just ``<class>/*`` / ``*`` files, which are then split by
    a fixed seeded permutation ("test" = `test_fraction` of them). `channels` = 3 (RGB) or 1 (grey); `image_size`
    centre-crops and resizes to a square (needed when the files differ in size). Decoded splits are cached like the
    built-in sets and held on the training device when small; `download` is ignored (nothing to download).
    """
    check_split("image_folder", split, ("train", "test"))
    check_count("image_folder", "limit", limit)
    if path is None:
        raise ValueError("dataset 'image_folder' needs path=...: the folder or .tar holding your images (in a recipe: "
                         "data: {name: image_folder, options: {path: /data/my_images}})")
    if channels not in (1, 3):
        raise ValueError(f"dataset 'image_folder': channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"dataset 'image_folder': test_fraction must be in (0, 1), got {test_fraction!r}")
    location = Path(root) / path
    if not (location.is_dir() or (location.is_file() and tarfile.is_tarfile(location))):
        raise not_found("image_folder", [f"{location}  (a folder or uncompressed .tar of PNG/JPEG images)"],
                        "Pass path=... naming your image folder or tar (absolute, or relative to the data root).")
    return _image_folder("image_folder", location, split, limit, cache, "RGB" if channels == 3 else "L",
                         split_folders=False, test_fraction=test_fraction, image_size=image_size, pad_to=pad_to)


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
    check_split("cifar10_folder", split, ("train", "test"))
    check_count("cifar10_folder", "limit", limit)
    candidates = [Path(root) / path] if path is not None else [
        Path(root) / "cifar10_folder", Path(root) / "cifar10-jpeg-q75-lossy.tar"]
    location = next((c for c in candidates if c.is_dir() or (c.is_file() and tarfile.is_tarfile(c))), None)
    if location is None:
        expected = [f"{c}  (folder or .tar holding {split}/<class>/*.png|jpg)" for c in candidates]
        raise not_found("cifar10_folder", expected, "Or pass path=... to point at such a folder or tar.")
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
    check_split("celeba64", split, tuple(_CELEBA_SPLITS))
    check_count("celeba64", "limit", limit)
    base = Path(root) / "celeba"
    expected = [base / "img_align_celeba" / "*.jpg", base / "list_eval_partition.txt"]
    if not ((base / "img_align_celeba").is_dir() and (base / "list_eval_partition.txt").is_file()):
        if not download:
            raise not_found("celeba64", expected, "Or pass download=True (needs the gdown package).")
        import torchvision

        try:
            torchvision.datasets.CelebA(str(root), split=split, target_type=[], download=True)
        except Exception as exc:  # Google Drive quota, no gdown, offline: all leave the files missing
            raise not_found("celeba64", expected, "Offline? Copy the files there.", cause=exc) from exc
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
    check_split("tinyimagenet", split, ("train", "test"))
    check_count("tinyimagenet", "limit", limit)
    base = Path(root) / "tiny-imagenet-200"
    expected = [base / "train/<wnid>/images/*.JPEG", base / "val/images/*.JPEG", base / "val/val_annotations.txt"]
    if not (base / "train").is_dir() or (split == "test" and not (base / "val/val_annotations.txt").is_file()):
        raise not_found("tinyimagenet", expected, "Get tiny-imagenet-200.zip from the CS231n site and unzip it there.")
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
    no official split: "all" is every render (Deasy et al. train and score on all 86,366, their ImageFolder loader
    ignoring `train`), "test" a fixed 10 % of the files chosen by a permutation seeded with 0, "train" the other
    90 %. `image_size` defaults to 64; `download` is ignored (no torchvision loader exists).
    """
    check_split("chairs", split, ("train", "test", "all"))
    check_count("chairs", "limit", limit)
    base = Path(root) / (path if path is not None else "chairs")
    files = sorted(p.relative_to(base).as_posix() for p in base.rglob("*")
                   if p.suffix.lower() == ".png" and p.is_file()) if base.is_dir() else []
    if not files:
        raise not_found("chairs", [base / "**/*.png"], "Get rendered_chairs.tar from the 3D Chairs (Aubry et al.) "
                         "site and extract it there, or pass path=...")
    selected = (files if split == "all" else [files[i] for i in holdout(len(files), split).tolist()])[:limit]
    return ImageFiles("chairs", FolderSource(base, selected), "L", cache=cache, cacheable=limit is None,
                      image_size=64 if image_size is None else image_size, pad_to=pad_to)

