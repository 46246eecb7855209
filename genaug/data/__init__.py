"""Real data sources and HDF5 files."""

from genaug.data.real import (
    MNIST_CLASSES,
    MNIST_FILES,
    MNISTSample,
    as_tensors,
    data_root,
    full_mnist_available,
    load_mnist,
)

__all__ = [
    "MNIST_CLASSES",
    "MNIST_FILES",
    "MNISTSample",
    "as_tensors",
    "data_root",
    "full_mnist_available",
    "load_mnist",
]
