"""Three-channel sets built from MNIST digits: ``color_mnist`` (Metz et al. 2017 section 3.3.2, one digit in one
colour: Rosca et al.'s ColorMNIST) and ``stacked_mnist`` (section 3.3.1 and VEEGAN: three digits as R, G, B, 1000
modes). Both are fixed by (seed, split): example i depends only on them and i."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from zoo.data.arrays import MNISTLike, _mnist_like
from zoo.data.base import ImageDataset, check_count, split_seed
from zoo.registry import register_dataset


class _MNISTComposite(ImageDataset):
    """3-channel images built from MNIST digits: `source_indices` names the digits of each example."""

    def __init__(self, name: str, mnist: MNISTLike, source_indices: Tensor, **transform):
        super().__init__(name, **transform)
        self.mnist = mnist
        self.source_indices = source_indices
        self.shape  # noqa: B018 -- validates pad_to now

    def __len__(self) -> int:
        return len(self.source_indices)

    def _native_shape(self) -> tuple[int, int, int]:
        return (3, *self.mnist.shape[1:])


class StackedMNIST(_MNISTComposite):
    """Stacked MNIST (Srivastava et al. 2017, VEEGAN; Metz et al. 2017 section 3.3.1): three MNIST digits as the R,
    G, B channels, (3, 28, 28); 1000 modes, the set of the `modes` metric.

    ``source_indices[i]`` holds the MNIST indices of example i's channels, drawn once for the whole split from a
    generator seeded by (seed, split), so an example depends only on (seed, split, index). ``targets`` is the mode
    index ``100 * d_r + 10 * d_g + d_b``. The zoo called this set ``color_mnist`` before it followed Rosca et al.'s
    reference for ColorMNIST (see `ColorMNIST`).
    """

    def __init__(self, mnist: MNISTLike, source_indices: Tensor, **transform):
        super().__init__("stacked_mnist", mnist, source_indices, **transform)  # (N, 3) indices

    @property
    def targets(self) -> Tensor:
        digits = self.mnist.targets[self.source_indices]  # (N, 3)
        return digits @ torch.tensor([100, 10, 1])

    def _read(self, index: int) -> Tensor:
        return self.mnist.raw_images()[self.source_indices[index], 0]

    def _read_all(self) -> Tensor:
        return self._resize(self.mnist.raw_images()[self.source_indices, 0])  # (N, 3, 28, 28)


@register_dataset("stacked_mnist")
def stacked_mnist(root: Path, split: str = "train", *, seed: int = 0, size: int | None = None,
                  image_size: int | None = None, pad_to: int | None = None, download: bool = True,
                  limit: int | None = None) -> StackedMNIST:
    """Stacked MNIST (three digits, one per channel; 1000 modes): `size` examples (default: as many as the MNIST
    split)."""
    check_count("stacked_mnist", "size", size)
    check_count("stacked_mnist", "limit", limit)
    source = _mnist_like("stacked_mnist", "MNIST", root, split, download, None)
    n = len(source) if size is None else size
    # seeded under the set's former name, so the three-digit examples stay those of every earlier run and result
    generator = torch.Generator().manual_seed(split_seed(seed, split, "color_mnist"))
    indices = torch.randint(len(source), (n, 3), generator=generator)  # drawn in full, so limit keeps prefixes
    return StackedMNIST(source, indices[:limit], image_size=image_size, pad_to=pad_to)


def metz_colours(n: int, generator: torch.Generator) -> Tensor:
    """(n, 3) RGB colours of Color MNIST: uniform in the unit cube, divided by their largest component. Every hue and
    saturation occurs, and the brightest channel of each colour is at full intensity, so a coloured digit is as
    bright as the MNIST digit in that channel (a uniform cube draw alone makes some digits near-black on black)."""
    colours = torch.rand(n, 3, generator=generator)
    return colours / colours.amax(1, keepdim=True).clamp_min(1e-6)


class ColorMNIST(_MNISTComposite):
    """Color MNIST as Rosca et al. (2018) use it, after their reference [33], Metz et al. (2017, Unrolled GANs,
    section 3.3.2): each example is a single MNIST digit drawn in a single colour, (3, 28, 28): channel c of example
    i is ``round(digit_i * colour_i[c])``. Metz et al. do not print the colour distribution; the zoo draws colours
    with `metz_colours` (docs/datasets.md says why). Example i is MNIST image ``source_indices[i]`` (by default the
    split in order) in colour ``colours[i]``, both fixed by (seed, split); ``targets`` are the digit labels.
    """

    version = "metz2017-single-digit"  # part of every evaluation protocol: never ranked with the stacked set

    def __init__(self, mnist: MNISTLike, source_indices: Tensor, colours: Tensor, **transform):
        self.colours = colours  # (N, 3); source_indices (N,)
        super().__init__("color_mnist", mnist, source_indices, **transform)

    @property
    def targets(self) -> Tensor:
        return self.mnist.targets[self.source_indices]

    def _colour(self, digits: Tensor, colours: Tensor) -> Tensor:
        """(N, 1, H, W) uint8 digits, (N, 3) colours -> (N, 3, H, W) uint8."""
        return (digits.float() * colours[:, :, None, None]).round().clamp_(0, 255).to(torch.uint8)

    def _read(self, index: int) -> Tensor:
        digit = self.mnist.raw_images()[self.source_indices[index]][None]
        return self._colour(digit, self.colours[index][None])[0]

    def _read_all(self) -> Tensor:
        return self._resize(self._colour(self.mnist.raw_images()[self.source_indices], self.colours))


@register_dataset("color_mnist")
def color_mnist(root: Path, split: str = "train", *, seed: int = 0, size: int | None = None,
                image_size: int | None = None, pad_to: int | None = None, download: bool = True,
                limit: int | None = None) -> ColorMNIST:
    """Color MNIST (Metz et al. 2017; Rosca et al. 2018): one MNIST digit in one colour. By default every image of
    the MNIST split once, in order; `size` draws that many digits at random instead."""
    check_count("color_mnist", "size", size)
    check_count("color_mnist", "limit", limit)
    source = _mnist_like("color_mnist", "MNIST", root, split, download, None)
    generator = torch.Generator().manual_seed(split_seed(seed, split, "color_mnist/metz2017"))
    n = len(source) if size is None else size
    indices = torch.arange(n) if size is None else torch.randint(len(source), (n,), generator=generator)
    colours = metz_colours(n, generator)  # drawn in full, so limit keeps prefixes
    return ColorMNIST(source, indices[:limit], colours[:limit], image_size=image_size, pad_to=pad_to)


color_mnist.version = ColorMNIST.version  # type: ignore[attr-defined]  # read by zoo.data.dataset_version
