"""Datasets. Importing this package registers every dataset in `zoo.registry.DATASETS`.

`zoo.data.base` holds the data roots, `load_dataset` and the `ImageDataset` base; `zoo.data.arrays` the array-file
datasets (MNIST-like, CIFAR-10 batches, dSprites); `zoo.data.coloured` the colour sets built from MNIST digits;
`zoo.data.files` the image-file datasets (folders and tars); `zoo.data.synthetic` the toy vector sets.
"""
from zoo.data.arrays import CIFAR10Batches, DSprites, MNISTLike
from zoo.data.base import (
    MAX_IN_MEMORY_BYTES,
    BadImageError,
    DatasetNotFoundError,
    ImageDataset,
    TensorImages,
    cache_dir,
    dataset_version,
    load_dataset,
    open_split,
    resolve_root,
)
from zoo.data.coloured import ColorMNIST, StackedMNIST
from zoo.data.files import ImageFiles
from zoo.data.synthetic import AffineGaussian, GaussianMixture, VectorDataset

__all__ = [
    "MAX_IN_MEMORY_BYTES",
    "BadImageError",
    "AffineGaussian",
    "CIFAR10Batches",
    "ColorMNIST",
    "StackedMNIST",
    "DSprites",
    "DatasetNotFoundError",
    "GaussianMixture",
    "ImageDataset",
    "ImageFiles",
    "MNISTLike",
    "TensorImages",
    "VectorDataset",
    "cache_dir",
    "dataset_version",
    "load_dataset",
    "open_split",
    "resolve_root",
]
