"""Tests of zoo.data: real MNIST/Fashion-MNIST from ../shared/data, every other loader on tiny synthetic files."""
from __future__ import annotations

import gzip
import math
import pickle
import struct
import tarfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

import zoo.data as data
from zoo.data import DatasetNotFoundError, dataset_version, load_dataset, resolve_root
from zoo.registry import DATASETS

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # <repo>/../shared/data
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Keep decoded caches in tmp and ignore a developer's ZOO_DATA."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("ZOO_DATA", raising=False)


def _shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the offline shared data lives at <repo>/../shared/data (always in CI)")
    return SHARED


def _tree(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


# --------------------------------------------------------------------------------------------------------------
# synthetic file writers
# --------------------------------------------------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    payload = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny MNIST root (train 50, test 20 images) in torchvision's raw layout, gzipped like the shared copy."""
    root = tmp_path_factory.mktemp("fake_mnist")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", 50), ("t10k", 20)):
        images = rng.integers(1, 256, (n, 28, 28), dtype=np.uint8)  # no zeros, so padding is recognisable
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress=True)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress=True)
        arrays[prefix] = (images, labels)
    return root, arrays


def _png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def _write_image_folder(base: Path, rng: np.random.Generator, size=(8, 8)) -> dict[str, list[np.ndarray]]:
    """``<base>/<split>/<class>/*.png`` with 3 classes; returns the arrays in sorted file order per split."""
    out = {}
    for split, per_class in (("train", 3), ("test", 2)):
        out[split] = []
        for cls in ("cat", "airplane", "dog"):  # created unsorted: the loader must sort
            (base / split / cls).mkdir(parents=True)
            for j in range(per_class):
                array = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                (base / split / cls / f"{j:04d}.png").write_bytes(_png_bytes(array))
        for cls in ("airplane", "cat", "dog"):
            out[split] += [np.array(Image.open(p)) for p in sorted((base / split / cls).iterdir())]
    return out


# --------------------------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST (real files, read-only shared root)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, folder, mean, first_labels",
    [("mnist", "MNIST", 33.3184, [5, 0, 4, 1, 9]), ("fashion_mnist", "FashionMNIST", 72.9404, [9, 0, 0, 3, 0, 2])],
)
def test_mnist_like_from_shared(name, folder, mean, first_labels):
    root = _shared(folder, "raw")
    before = _tree(root / folder)
    train, test = load_dataset(name, root=root), load_dataset(name, "test", root=root)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.shape == test.shape == (1, 28, 28)
    images = train.as_uint8_tensor()
    assert images.shape == (60000, 1, 28, 28) and images.dtype == torch.uint8
    assert images.double().mean().item() == pytest.approx(mean, abs=0.01)  # MNIST: 0.1307 * 255
    assert train.targets.dtype == torch.long and train.targets[: len(first_labels)].tolist() == first_labels
    assert torch.equal(train[123], images[123])
    assert _tree(root / folder) == before, "the reader must not write next to the (read-only) shared files"


def test_idx_reader_prefers_extracted_and_never_writes(fake_mnist, tmp_path):
    src, arrays = fake_mnist
    root = tmp_path / "ro"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images, labels = arrays["t10k"]
    _write_idx(raw / "t10k-images-idx3-ubyte", images, compress=False)  # extracted, as torchvision leaves it
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes((src / "MNIST/raw/t10k-labels-idx1-ubyte.gz").read_bytes())
    before = _tree(root)
    raw.chmod(0o555)
    try:
        ds = data.arrays.mnist(root, "test", download=False)
        assert ds.images_path.name == "t10k-images-idx3-ubyte"
        assert torch.equal(ds.as_uint8_tensor()[:, 0], torch.from_numpy(images))
        assert ds.targets.tolist() == labels.tolist()
    finally:
        raw.chmod(0o755)
    assert _tree(root) == before


def test_idx_reader_rejects_corrupt_file(tmp_path):
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 12)
    with pytest.raises(ValueError, match="not a uint8 idx file"):
        data.arrays.read_idx(bad)


def test_pad_and_resize(fake_mnist):
    root, arrays = fake_mnist
    plain = load_dataset("mnist", root=root)
    padded = load_dataset("mnist", root=root, pad_to=32)
    assert padded.shape == (1, 32, 32)
    x = padded.as_uint8_tensor()
    assert torch.equal(x[:, :, 2:30, 2:30], plain.as_uint8_tensor())  # the centre is kept
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert x[:, 0][:, border].eq(0).all()  # the border is zero
    assert torch.equal(padded[7], x[7])  # per-item and whole-split paths agree
    odd = load_dataset("mnist", root=root, pad_to=31)[0]
    assert odd.shape == (1, 31, 31) and odd[0, :1].eq(0).all() and odd[0, 1:29, 1:29].ne(0).all()
    small = load_dataset("mnist", root=root, image_size=14)
    assert small.shape == (1, 14, 14) and torch.equal(small[3], small.as_uint8_tensor()[3])
    # antialiased 2x downsampling of a constant image stays constant
    assert small._resize(torch.full((1, 28, 28), 77, dtype=torch.uint8)).eq(77).all()
    with pytest.raises(ValueError, match="pad_to=20 is smaller than the 28x28"):
        load_dataset("mnist", root=root, pad_to=20)
    with pytest.raises(ValueError, match="image_size must be an integer >= 1"):
        load_dataset("mnist", root=root, image_size=0)


def test_as_uint8_tensor_cap(fake_mnist):
    root, _ = fake_mnist
    ds = load_dataset("mnist", root=root)
    assert ds.as_uint8_tensor(max_bytes=50 * 784 - 1) is None
    assert ds.as_uint8_tensor(max_bytes=50 * 784).shape == (50, 1, 28, 28)
    assert ds.as_uint8_tensor() is ds.as_uint8_tensor()  # cached


# --------------------------------------------------------------------------------------------------------------
# stacked_mnist and color_mnist
# --------------------------------------------------------------------------------------------------------------


def test_stacked_mnist_deterministic_and_consistent(fake_mnist):
    root, arrays = fake_mnist
    images, labels = torch.from_numpy(arrays["train"][0]), torch.from_numpy(arrays["train"][1]).long()
    ds = load_dataset("stacked_mnist", root=root, size=200)
    x = ds.as_uint8_tensor()
    assert x.shape == (200, 3, 28, 28) and ds.shape == (3, 28, 28)
    src = ds.source_indices
    assert src.shape == (200, 3) and 0 <= src.min() and src.max() < 50
    for i in (0, 17, 199):
        for c in range(3):
            assert torch.equal(x[i, c], images[src[i, c]])
        assert ds.targets[i] == 100 * labels[src[i, 0]] + 10 * labels[src[i, 1]] + labels[src[i, 2]]
    assert torch.equal(ds.targets, (labels[src] * torch.tensor([100, 10, 1])).sum(1))
    assert torch.equal(ds[5], x[5])
    assert torch.equal(load_dataset("stacked_mnist", root=root, size=200).as_uint8_tensor(), x)
    assert torch.equal(load_dataset("stacked_mnist", root=root, size=200, limit=20).as_uint8_tensor(), x[:20])
    assert not torch.equal(load_dataset("stacked_mnist", root=root, size=200, seed=1).source_indices, src)
    assert not torch.equal(load_dataset("stacked_mnist", "test", root=root, size=200).source_indices, src)
    assert len(load_dataset("stacked_mnist", root=root)) == 50  # default size: the MNIST split


def test_stacked_mnist_shared_modes():
    root = _shared("MNIST", "raw")
    ds = load_dataset("stacked_mnist", "test", root=root)
    assert len(ds) == 10000 and ds.targets.min() >= 0 and ds.targets.max() < 1000
    assert ds.targets.unique().numel() > 990  # 10k uniform draws over 1000 modes miss ~0 of them


def test_color_mnist_is_one_digit_in_one_colour(fake_mnist):
    """Metz et al.'s Color MNIST (Rosca et al.'s [33]): every example is one MNIST digit times one RGB colour, so its
    three channels are the same digit scaled by the colour, the brightest channel equal to the digit itself."""
    root, arrays = fake_mnist
    images, labels = torch.from_numpy(arrays["train"][0]), torch.from_numpy(arrays["train"][1]).long()
    ds = load_dataset("color_mnist", root=root)
    x = ds.as_uint8_tensor()
    assert x.shape == (50, 3, 28, 28) and torch.equal(ds.source_indices, torch.arange(50))  # the split, in order
    assert torch.equal(ds.targets, labels)  # ten digit classes, not 1000 stacked modes
    colours = ds.colours
    assert colours.shape == (50, 3) and (colours >= 0).all() and torch.allclose(colours.amax(1), torch.ones(50))
    for i in range(50):
        expected = (images[i].float() * colours[i][:, None, None]).round().to(torch.uint8)
        assert torch.equal(x[i], expected)
        brightest = int(colours[i].argmax())
        assert torch.equal(x[i, brightest], images[i])  # one digit: the brightest channel is the digit itself
    assert torch.equal(ds[7], x[7])
    assert torch.equal(load_dataset("color_mnist", root=root, limit=10).as_uint8_tensor(), x[:10])
    assert not torch.equal(load_dataset("color_mnist", root=root, seed=1).colours, colours)
    assert len(load_dataset("color_mnist", root=root, size=80)) == 80  # `size` draws digits at random


def test_color_mnist_of_the_shared_mnist_is_one_digit_per_image():
    """On the real MNIST test split: every image's three channels are proportional (one colour), each image's digit
    is that MNIST test image, and the colours cover hues evenly (each channel is the brightest for about a third)."""
    ds = load_dataset("color_mnist", "test", root=_shared("MNIST", "raw"))
    mnist = load_dataset("mnist", "test", root=_shared("MNIST", "raw")).as_uint8_tensor()
    x = ds.as_uint8_tensor().float()
    assert x.shape == (10000, 3, 28, 28)
    brightest = ds.colours.argmax(1)
    assert torch.equal(x[torch.arange(10000), brightest], mnist[:, 0].float())
    # channel c = round(digit * colour_c): within rounding of the brightest channel times the colour
    assert ((x - mnist.float() * ds.colours[:, :, None, None]).abs() <= 0.5 + 1e-4).all()
    shares = torch.bincount(brightest, minlength=3) / 10000
    assert ((shares > 0.30) & (shares < 0.37)).all(), shares
    assert ds.targets.unique().numel() == 10
    assert dataset_version("color_mnist") == "metz2017-single-digit" and dataset_version("stacked_mnist") is None


# --------------------------------------------------------------------------------------------------------------
# cifar10 (python pickle batches)
# --------------------------------------------------------------------------------------------------------------


def _write_cifar_batches(root: Path, n: int = 4) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(n)]
        names = [f"{j}.png" for j in range(n)]
        batch = {"batch_label": f"batch {i}", "labels": labels, "data": rows, "filenames": names}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))  # the official files are protocol-2 pickles
        written[name] = (rows, labels)
    meta = {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": n, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written


def test_cifar10_pickle_batches(tmp_path):
    written = _write_cifar_batches(tmp_path)
    train, test = load_dataset("cifar10", root=tmp_path), load_dataset("cifar10", "test", root=tmp_path)
    assert (len(train), len(test), train.shape) == (20, 4, (3, 32, 32))
    assert train.classes == CIFAR10_CLASSES
    rows, labels = written["data_batch_2"]
    x = train.as_uint8_tensor()
    assert x.dtype == torch.uint8
    # a row holds the 1024 red values (row-major 32x32), then green, then blue
    assert torch.equal(x[4, 0], torch.from_numpy(rows[0, :1024].reshape(32, 32)))
    assert torch.equal(x[5, 2], torch.from_numpy(rows[1, 2048:].reshape(32, 32)))
    assert train.targets[4:8].tolist() == labels and test.targets.tolist() == written["test_batch"][1]
    assert torch.equal(train[6], x[6])
    assert len(load_dataset("cifar10", root=tmp_path, limit=7)) == 7


def test_cifar10_refuses_foreign_pickles(tmp_path):
    _write_cifar_batches(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": Evil()}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"test_batch: refusing to unpickle (__builtin__|builtins)\.print"):
        len(load_dataset("cifar10", "test", root=tmp_path))


# --------------------------------------------------------------------------------------------------------------
# image folders and tars
# --------------------------------------------------------------------------------------------------------------


def test_cifar10_folder_and_tar_round_trip(tmp_path):
    folder = tmp_path / "cifar10_folder"
    arrays = _write_image_folder(folder, np.random.default_rng(2))
    ds = load_dataset("cifar10_folder", root=tmp_path)
    assert (len(ds), ds.shape, ds.classes) == (9, (3, 8, 8), ["airplane", "cat", "dog"])
    assert ds.targets.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    x = ds.as_uint8_tensor()
    for i, array in enumerate(arrays["train"]):  # PNG is lossless: exact round trip, in sorted order
        assert torch.equal(x[i], torch.from_numpy(array).permute(2, 0, 1))
    assert torch.equal(ds[4], x[4])

    tar_path = tmp_path / "other" / "images.tar"
    tar_path.parent.mkdir()
    with tarfile.open(tar_path, "w") as tar:
        tar.add(folder, arcname=".")  # "./train/cat/0000.png": the loader strips the "./"
    from_tar = load_dataset("cifar10_folder", "test", root=tmp_path, path="other/images.tar")
    assert len(from_tar) == 6 and from_tar.targets.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(from_tar[3], torch.from_numpy(arrays["test"][3]).permute(2, 0, 1))
    from_folder = load_dataset("cifar10_folder", "test", root=tmp_path)
    assert torch.equal(from_tar.as_uint8_tensor(), from_folder.as_uint8_tensor())


def test_image_folder_layouts_channels_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    arrays = _write_image_folder(tmp_path / "split", np.random.default_rng(4), size=(6, 10))
    ds = load_dataset("image_folder", "test", root=tmp_path, path="split")  # train/ and test/ folders: used as is
    assert (len(ds), ds.shape, ds.classes) == (6, (3, 6, 10), ["airplane", "cat", "dog"])  # any size, not square
    assert torch.equal(ds.as_uint8_tensor()[5], torch.from_numpy(arrays["test"][5]).permute(2, 0, 1))
    assert ds.cache_path() is not None and ds.cache_path().is_file()  # decoded once, cached like the built-in sets
    grey = load_dataset("image_folder", "test", root=tmp_path, path="split", channels=1, cache=False)
    expected = Image.fromarray(arrays["test"][0]).convert("L")
    assert grey.shape == (1, 6, 10) and torch.equal(grey[0][0], torch.from_numpy(np.array(expected)))

    flat = tmp_path / "flat"  # <class>/* with no split folders: a fixed seeded 90 / 10 split of the 40 files
    for i in range(40):
        (flat / ("b" if i % 2 else "a")).mkdir(parents=True, exist_ok=True)
        (flat / ("b" if i % 2 else "a") / f"{i:02d}.png").write_bytes(_png_bytes(np.full((5, 5, 3), i, np.uint8)))
    train, test = (load_dataset("image_folder", s, root=tmp_path, path="flat", cache=False) for s in ("train", "test"))
    assert (len(train), len(test)) == (36, 4) and train.classes == ["a", "b"]
    seen = {int(x[0, 0, 0]) for x in train.as_uint8_tensor()} | {int(x[0, 0, 0]) for x in test.as_uint8_tensor()}
    assert seen == set(range(40))  # disjoint halves covering every file
    tar_path = tmp_path / "flat.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(flat, arcname=".")
    assert torch.equal(load_dataset("image_folder", "test", root=tmp_path, path="flat.tar", cache=False)
                       .as_uint8_tensor(), test.as_uint8_tensor())

    with pytest.raises(ValueError, match="needs path="):
        load_dataset("image_folder", root=tmp_path)
    with pytest.raises(ValueError, match="channels must be 1 .* got 4"):
        load_dataset("image_folder", root=tmp_path, path="flat", channels=4)
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        load_dataset("image_folder", root=tmp_path, path="nowhere")



def test_16_bit_pngs_are_scaled_not_clipped_to_white(tmp_path):
    """Issue 21 (round 2), item 3: a 16-bit grey PNG holds 0..65535; each value becomes round(v * 255 / 65535)."""
    wide = np.array([[0, 128, 257, 1000, 32768, 65535]], np.uint16).repeat(3, axis=0)  # (3, 6)
    folder = tmp_path / "wide" / "train" / "all"
    folder.mkdir(parents=True)
    Image.fromarray(wide).save(folder / "0.png")
    assert Image.open(folder / "0.png").mode == "I;16"  # what PIL reads a 16-bit PNG as
    expected = torch.tensor([0, 0, 1, 4, 128, 255], dtype=torch.uint8)  # 128 -> 0.498 -> 0; 32768 -> 127.5 -> 128
    grey = load_dataset("image_folder", "train", root=tmp_path, path="wide", channels=1, cache=False)
    assert torch.equal(grey.as_uint8_tensor()[0, 0], torch.from_numpy(np.rint(wide.astype(np.float64) * 255 / 65535).astype(np.uint8)))
    assert torch.equal(grey.as_uint8_tensor()[0, 0, 0], expected)
    rgb = load_dataset("image_folder", "train", root=tmp_path, path="wide", channels=3, cache=False)
    assert torch.equal(rgb.as_uint8_tensor()[0], grey.as_uint8_tensor()[0].expand(3, -1, -1))


@pytest.mark.parametrize("limit", [30, 40])  # 64 pixels: beyond 2x the limit PIL raises, between 1x and 2x it warns
def test_a_decompression_bomb_is_one_error_naming_the_file_and_the_limit(tmp_path, monkeypatch, limit):
    """Issue 21 (round 2), item 4; PIL's limit is lowered so that an 8x8 PNG stands for a 'bomb'."""
    folder = tmp_path / "big" / "train" / "all"
    folder.mkdir(parents=True)
    (folder / "huge.png").write_bytes(_png_bytes(np.zeros((8, 8), np.uint8)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(data.BadImageError) as caught:
        load_dataset("image_folder", "train", root=tmp_path, path="big", channels=1, cache=False)
    message = str(caught.value)
    assert str(folder / "huge.png") in message and "\n" not in message
    assert f"too large to decode safely: 64 pixels, beyond PIL's guard against decompression bombs ({limit} " in message
    assert "ZOO_MAX_IMAGE_PIXELS=<pixels> (0: no limit)" in message
    monkeypatch.setenv("ZOO_MAX_IMAGE_PIXELS", "0")  # the image is genuine: lift the limit
    assert load_dataset("image_folder", "train", root=tmp_path, path="big", channels=1, cache=False).shape == (1, 8, 8)
    monkeypatch.setenv("ZOO_MAX_IMAGE_PIXELS", "100")
    assert len(load_dataset("image_folder", "train", root=tmp_path, path="big", channels=1, cache=False)) == 1
    assert Image.MAX_IMAGE_PIXELS == limit  # PIL's own setting is left as it was


def test_decoded_cache_round_trip(tmp_path, monkeypatch):
    _write_image_folder(tmp_path / "cifar10_folder", np.random.default_rng(3))
    ds = load_dataset("cifar10_folder", root=tmp_path)
    x = ds.as_uint8_tensor()
    cache = ds.cache_path()
    assert cache.is_file() and cache.is_relative_to(tmp_path / "xdg-cache" / "zoo" / "decoded")
    assert torch.equal(torch.load(cache, weights_only=True), x)

    decode = data.files._decode_image

    def no_decoding(*args):
        raise AssertionError("decoded again although the cache is valid")

    again = load_dataset("cifar10_folder", root=tmp_path)  # decodes the first image to learn the shape
    monkeypatch.setattr(data.files, "_decode_image", no_decoding)
    assert torch.equal(again.as_uint8_tensor(), x)
    monkeypatch.setattr(data.files, "_decode_image", decode)
    assert load_dataset("cifar10_folder", root=tmp_path, limit=2).cache_path() is None  # partial splits: no cache


def test_image_folder_mixed_sizes_need_image_size(tmp_path):
    split = tmp_path / "cifar10_folder" / "train" / "a"
    split.mkdir(parents=True)
    (split / "0.png").write_bytes(_png_bytes(np.zeros((8, 8, 3), np.uint8)))
    (split / "1.png").write_bytes(_png_bytes(np.full((12, 16, 3), 200, np.uint8)))
    with pytest.raises(ValueError, match="pass image_size"):
        load_dataset("cifar10_folder", root=tmp_path, cache=False).as_uint8_tensor()
    x = load_dataset("cifar10_folder", root=tmp_path, image_size=4, cache=False).as_uint8_tensor()
    assert x.shape == (2, 3, 4, 4) and x[0].eq(0).all() and x[1].eq(200).all()


def test_shared_cifar10_jpeg_tar_limit():
    root = _shared("cifar10-jpeg-q75-lossy.tar")
    test = load_dataset("cifar10_folder", "test", root=root)  # lists the tar, decodes nothing
    assert len(test) == 10000 and test.classes == CIFAR10_CLASSES
    assert test.targets.bincount().tolist() == [1000] * 10  # the 10 class folders map to targets 0..9
    ds = load_dataset("cifar10_folder", "train", root=root, limit=64)
    x = ds.as_uint8_tensor()
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.uint8 and ds.targets.eq(0).all()  # airplane first
    assert 40 < x.float().mean() < 220 and test[9999].shape == (3, 32, 32)
    assert test.targets[9999] == 9


def _jpeg(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=95)


def test_celeba64(tmp_path):
    base = tmp_path / "celeba"
    face = np.zeros((218, 178, 3), np.uint8)
    face[39:179, 19:159] = 255  # exactly the 140 px centre crop is white
    partition = [0, 0, 0, 1, 2, 2]
    for i in range(len(partition)):
        _jpeg(base / "img_align_celeba" / f"{i + 1:06d}.jpg", face)
    (base / "list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {p}\n" for i, p in enumerate(partition)))
    splits = {s: load_dataset("celeba64", s, root=tmp_path) for s in ("train", "valid", "test")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 3, "valid": 1, "test": 2}
    x = splits["train"].as_uint8_tensor()
    assert x.shape == (3, 3, 64, 64) and x.dtype == torch.uint8
    assert x.float().mean() > 250  # the crop kept only the white face box (JPEG ringing aside)
    assert splits["train"].as_uint8_tensor(max_bytes=100) is not None  # cached already
    assert load_dataset("celeba64", root=tmp_path).as_uint8_tensor(max_bytes=3 * 3 * 64 * 64 - 1) is None
    assert load_dataset("celeba64", root=tmp_path, image_size=32).shape == (3, 32, 32)


def test_tinyimagenet(tmp_path):
    base = tmp_path / "tiny-imagenet-200"
    rng = np.random.default_rng(4)
    for w in ("n02", "n01"):
        for j in range(2):
            _jpeg(base / "train" / w / "images" / f"{w}_{j}.JPEG", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (base / "train" / "n01" / "n01_boxes.txt").write_text("not an image\n")
    _jpeg(base / "val" / "images" / "val_0.JPEG", rng.integers(0, 256, (64, 64), dtype=np.uint8))  # greyscale
    _jpeg(base / "val" / "images" / "val_1.JPEG", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (base / "val" / "val_annotations.txt").write_text("val_1.JPEG\tn01\t0\t0\t63\t63\nval_0.JPEG\tn02\t0\t0\t63\t63\n")
    train, test = load_dataset("tinyimagenet", root=tmp_path), load_dataset("tinyimagenet", "test", root=tmp_path)
    assert (len(train), len(test), train.classes) == (4, 2, ["n01", "n02"])
    assert train.targets.tolist() == [0, 0, 1, 1] and test.targets.tolist() == [1, 0]
    x = test.as_uint8_tensor()
    assert x.shape == (2, 3, 64, 64) and torch.equal(x[0, 0], x[0, 1])  # the grey image became RGB


def test_dsprites(tmp_path):
    rng = np.random.default_rng(5)
    imgs = (rng.random((50, 64, 64)) < 0.3).astype(np.uint8)
    folder = tmp_path / "dsprites"
    folder.mkdir()
    metadata = np.array({"description": "pickled dict, like the official file"}, dtype=object)
    np.savez_compressed(folder / data.arrays.DSPRITES_FILE, imgs=imgs, latents_classes=np.zeros((50, 6), np.int64),
                        metadata=metadata)
    train, test = load_dataset("dsprites", root=tmp_path), load_dataset("dsprites", "test", root=tmp_path)
    assert (len(train), len(test), train.shape) == (50, 5, (1, 64, 64))
    x = train.as_uint8_tensor()
    assert x.dtype == torch.uint8 and set(x.unique().tolist()) == {0, 255}
    assert torch.equal(x[:, 0], torch.from_numpy(imgs) * 255)
    assert torch.equal(test.as_uint8_tensor(), x[test.indices])  # test: a fixed 10 % subset of all images
    assert torch.equal(load_dataset("dsprites", "test", root=tmp_path).indices, test.indices)
    limited = load_dataset("dsprites", root=tmp_path, path=f"dsprites/{data.arrays.DSPRITES_FILE}", limit=3)
    assert torch.equal(limited[2], x[2])


def test_chairs(tmp_path):
    rng = np.random.default_rng(6)
    colours = {}
    for i in range(20):
        colour = rng.integers(0, 256, 3, dtype=np.uint8)
        path = tmp_path / "chairs" / f"chair_{i % 4}" / "renders" / f"image_{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_png_bytes(np.broadcast_to(colour, (96, 96, 3)).copy()))
        colours[path.relative_to(tmp_path / "chairs").as_posix()] = colour
    train, test = load_dataset("chairs", root=tmp_path), load_dataset("chairs", "test", root=tmp_path)
    assert (len(train), len(test), train.shape) == (18, 2, (1, 64, 64))
    rel = train.source.relpaths + test.source.relpaths
    assert sorted(rel) == sorted(colours)  # disjoint and complete
    x = test.as_uint8_tensor()
    r, g, b = colours[test.source.relpaths[0]].astype(float)
    assert x[0].float().mean().item() == pytest.approx(0.299 * r + 0.587 * g + 0.114 * b, abs=1)  # ITU-R 601 grey
    everything = load_dataset("chairs", "all", root=tmp_path)  # Deasy et al.: train and score on every render
    assert everything.source.relpaths == sorted(colours) and len(everything) == 20
    grey = {p: 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] for p, c in colours.items()}
    means = everything.as_uint8_tensor().float().mean((1, 2, 3))
    assert all(abs(means[i].item() - grey[p]) <= 1 for i, p in enumerate(everything.source.relpaths))
    with pytest.raises(ValueError, match="no split 'val'.*'train', 'test', 'all'"):
        load_dataset("chairs", "val", root=tmp_path)


# --------------------------------------------------------------------------------------------------------------
# errors, options, roots
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mnist", "MNIST/raw/train-images-idx3-ubyte(.gz)"),
        ("fashion_mnist", "FashionMNIST/raw/train-images-idx3-ubyte(.gz)"),
        ("color_mnist", "MNIST/raw/train-labels-idx1-ubyte(.gz)"),
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
        ("cifar10_folder", "cifar10-jpeg-q75-lossy.tar"),
        ("celeba64", "celeba/list_eval_partition.txt"),
        ("tinyimagenet", "tiny-imagenet-200/val/val_annotations.txt"),
        ("dsprites", f"dsprites/{'dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz'}"),
        ("chairs", "chairs/**/*.png"),
    ],
)
def test_missing_files_raise_teaching_error(tmp_path, name, expected):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / expected) in message and name in message and "ZOO_DATA" in message
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize(
    "name, module, function",
    [
        ("mnist", "torchvision.datasets.mnist", "download_and_extract_archive"),
        ("cifar10", "torchvision.datasets.cifar", "download_and_extract_archive"),
        ("celeba64", "torchvision.datasets.celeba", "download_file_from_google_drive"),
    ],
)
def test_offline_download_raises_teaching_error(tmp_path, monkeypatch, name, module, function):
    import importlib

    def offline(*args, **kwargs):
        raise URLError("no network in this test")

    monkeypatch.setattr(importlib.import_module(module), function, offline)
    with pytest.raises(DatasetNotFoundError, match="Download failed") as info:
        load_dataset(name, root=tmp_path, download=True)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("name", DATASETS.names())
def test_unknown_option_and_split(tmp_path, name):
    factory = DATASETS.get(name)
    with pytest.raises(TypeError, match="not_an_option"):
        factory(tmp_path, "train", not_an_option=1)
    with pytest.raises(ValueError, match=r"no split 'nope'; allowed splits: 'train', .*'test'"):
        factory(tmp_path, "nope")


def test_resolve_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_root(None) == tmp_path / "xdg" / "zoo" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_root(None) == Path.home() / ".cache" / "zoo" / "data"
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "env"))
    assert resolve_root(None) == tmp_path / "env"
    assert resolve_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_root(str(tmp_path / "arg")) == tmp_path / "arg"


def test_load_dataset_uses_zoo_data(fake_mnist, monkeypatch):
    root, arrays = fake_mnist
    monkeypatch.setenv("ZOO_DATA", str(root))
    assert torch.equal(load_dataset("mnist", "test")[0][0], torch.from_numpy(arrays["t10k"][0][0]))


# --------------------------------------------------------------------------------------------------------------
# synthetic vector sets
# --------------------------------------------------------------------------------------------------------------


def test_affine_gaussian_moments_and_log_prob():
    n, d = 20000, 5
    ds = load_dataset("affine_gaussian", root=None, dim=d, size=n, seed=3)
    x = ds.as_float_tensor()
    assert x.shape == (n, d) and x.dtype == torch.float32 and ds.shape == (d,) and ds[0].shape == (d,)
    sd = ds.covariance.diagonal().sqrt()
    # the sample mean has std sd / sqrt(n): 5 standard errors
    assert ((x.mean(0) - ds.mean).abs() < 5 * sd / math.sqrt(n)).all()
    # a sample covariance entry has std <= sqrt((S_ii S_jj + S_ij^2) / n) <= sd_i sd_j sqrt(2 / n)
    err = (torch.cov(x.T.double()) - ds.covariance.double()).abs()
    assert (err < 5 * torch.outer(sd, sd).double() * math.sqrt(2 / n)).all()
    reference = torch.distributions.MultivariateNormal(ds.mean.double(), ds.covariance.double())
    torch.testing.assert_close(ds.log_prob(x[:100]), reference.log_prob(x[:100].double()).float(), rtol=1e-5, atol=1e-4)
    test = load_dataset("affine_gaussian", "test", root=None, dim=d, size=n, seed=3)
    assert torch.equal(test.mean, ds.mean) and torch.equal(test.covariance, ds.covariance)  # same distribution
    assert not torch.equal(test.as_float_tensor(), x)  # different sample
    assert torch.equal(load_dataset("affine_gaussian", root=None, dim=d, size=n, seed=3).as_float_tensor(), x)
    assert not torch.equal(load_dataset("affine_gaussian", root=None, dim=d, size=10, seed=4).mean, ds.mean)


def test_mixture_1d_weights_and_log_prob():
    n = 100_000
    ds = load_dataset("mixture_1d", root=None, size=n)
    x = ds.as_float_tensor()
    assert x.shape == (n, 1) and ds.weights.tolist() == pytest.approx([0.15, 0.35, 0.3, 0.2])
    counts = ds.targets.bincount(minlength=4).double()
    expected = ds.weights.double() * n
    # each count is Binomial(n, w): within 5 standard deviations; jointly, Pearson chi-square with 3 d.o.f.
    assert ((counts - expected).abs() < 5 * (expected * (1 - ds.weights.double())).sqrt()).all()
    assert ((counts - expected) ** 2 / expected).sum() < 16.27  # chi2(3) 0.999 quantile
    # the modes are far apart: every point lies within 6 std of the mean of its component
    assert ((x[:, 0] - ds.means[ds.targets, 0]).abs() < 6 * ds.stds[ds.targets]).all()
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=torch.tensor([0.15, 0.35, 0.3, 0.2], dtype=torch.float64)),
        torch.distributions.Normal(torch.tensor([-8.0, -3, 3, 8], dtype=torch.float64),
                                   torch.tensor([0.2, 0.8, 1, 0.2], dtype=torch.float64)),
    )
    grid = torch.linspace(-12, 12, 241).unsqueeze(1)
    torch.testing.assert_close(ds.log_prob(grid), mix.log_prob(grid[:, 0].double()).float(), rtol=1e-5, atol=1e-5)
    test = load_dataset("mixture_1d", "test", root=None, size=n)
    assert not torch.equal(test.as_float_tensor(), x)
    custom = load_dataset("mixture_1d", root=None, weights=[0.5, 0.5], means=[0, 10], stds=[1, 1], size=10)
    assert custom.means.tolist() == [[0.0], [10.0]]
    with pytest.raises(ValueError, match="sum to 1"):
        load_dataset("mixture_1d", root=None, weights=[0.5, 0.6], means=[0, 1], stds=[1, 1])


def test_mixture_2d_ring_and_log_prob():
    ds = load_dataset("mixture_2d", root=None, size=8000)
    assert ds.shape == (2,) and ds.means.shape == (8, 2)
    torch.testing.assert_close(ds.means.norm(dim=1), torch.full((8,), 2.0))
    torch.testing.assert_close(ds.means[0], torch.tensor([2.0, 0.0]))
    x = ds.as_float_tensor()
    assert ((x - ds.means[ds.targets]).norm(dim=1) < 0.02 * 6).all()
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=torch.full((8,), 1 / 8, dtype=torch.float64)),
        torch.distributions.Independent(torch.distributions.Normal(ds.means.double(), torch.full((8, 2), 0.02,
                                                                   dtype=torch.float64)), 1),
    )
    points = torch.cat([x[:50], torch.randn(50, 2, generator=torch.Generator().manual_seed(0))])
    torch.testing.assert_close(ds.log_prob(points), mix.log_prob(points.double()).float(), rtol=1e-5, atol=1e-4)
    custom = load_dataset("mixture_2d", root=None, means=[[0, 0], [3, 3]], stds=[0.1, 0.5], weights=[0.25, 0.75],
                          size=10)
    assert custom.stds.tolist() == pytest.approx([0.1, 0.5])
    with pytest.raises(ValueError, match="either means"):
        load_dataset("mixture_2d", root=None, means=[[0, 0]], num_modes=4)
    with pytest.raises(ValueError, match=r"log_prob expects \(\.\.\., 2\)"):
        ds.log_prob(torch.zeros(3, 3))


def test_tensor_images_wraps_memory_with_the_usual_options():
    from zoo.data import TensorImages

    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    ds = TensorImages(images, pad_to=32)
    assert len(ds) == 5 and ds.shape == (1, 32, 32)
    whole = ds.as_uint8_tensor()
    assert torch.equal(whole[:, :, 2:30, 2:30], images) and whole[:, :, :2].sum() == 0
    assert torch.equal(ds[3], whole[3])
    with pytest.raises(ValueError, match="uint8"):
        TensorImages(images.float())
