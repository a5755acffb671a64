"""Datasets. Importing this package registers every dataset in `zoo.registry.DATASETS`."""
from zoo.data.datasets import (
    MAX_IN_MEMORY_BYTES,
    CIFAR10Batches,
    ColorMNIST,
    DatasetNotFoundError,
    DSprites,
    ImageDataset,
    ImageFiles,
    MNISTLike,
    cache_dir,
    load_dataset,
    resolve_root,
)
from zoo.data.synthetic import AffineGaussian, GaussianMixture, VectorDataset

__all__ = [
    "MAX_IN_MEMORY_BYTES",
    "AffineGaussian",
    "CIFAR10Batches",
    "ColorMNIST",
    "DSprites",
    "DatasetNotFoundError",
    "GaussianMixture",
    "ImageDataset",
    "ImageFiles",
    "MNISTLike",
    "VectorDataset",
    "cache_dir",
    "load_dataset",
    "resolve_root",
]
