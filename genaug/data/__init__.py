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

from genaug.data.hdf5 import HDF5Dataset, export_hdf5  # noqa: E402
from genaug.data.mixed import MixedDataset  # noqa: E402
from genaug.data.synthetic import SyntheticDataset, SyntheticPool, SyntheticStream  # noqa: E402

__all__ += ["HDF5Dataset", "MixedDataset", "SyntheticDataset", "SyntheticPool", "SyntheticStream", "export_hdf5"]
