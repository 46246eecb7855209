"""Resolve what ``--data`` names into a labelled dataset (the CLI's data sources live here).

Example:
    >>> from genaug.data.sources import resolve_data
    >>> data, description = resolve_data("sample")
    >>> description
    'genaug bundled MNIST sample (1000 train images)'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset, TensorDataset
from torchvision.datasets import ImageFolder

from genaug.data.hdf5 import HDF5Dataset
from genaug.data.labelled import dataset_classes, dataset_labels, image_tensor, labelled_images
from genaug.data.real import MNISTSample, data_root, load_mnist

__all__ = ["labelled_tensors", "resolve_data", "resolve_splits", "resolve_test_data"]


def resolve_data(name: str, root: str | os.PathLike[str] | None = None, *, download: bool = False,
                 train: bool = True, resize: tuple[int, int] | None = None, mode: str | None = None,
                 classes: list[str] | None = None, skip_bad_files: bool = False) -> tuple[Any, str]:
    """``(dataset or (images, labels) pair, description)`` for ``name``.

    ``name`` is ``"sample"`` (bundled), ``"mnist"`` (torchvision's files under ``root``),
    ``"torchvision:NAME"`` (any torchvision dataset class whose files are under ``root``), a genaug
    ``.h5`` export, an ``.npz`` with ``images`` and ``labels``, or a folder of class sub-folders.
    Nothing downloads unless ``download=True``. ``resize=(H, W)`` and ``mode`` ("L" or "RGB")
    make every image that size and mode; without them a folder of mixed sizes or modes is
    refused. ``classes`` names the classes in label order. A folder's unreadable files are
    refused, or with ``skip_bad_files`` left out and listed in ``.skipped_files``.
    """
    if resize is not None and (len(resize) != 2 or not all(isinstance(v, int) and v > 0 for v in resize)):
        raise ValueError(f"--resize expects H or H,W as positive integers, got {resize!r}")
    if mode not in (None, "L", "RGB"):
        raise ValueError(f"--mode must be 'L' or 'RGB', got {mode!r}")
    data, description = _resolve(name, root, download=download, train=train, resize=resize, mode=mode,
                                 skip_bad_files=skip_bad_files)
    if not isinstance(data, ImageFolder) and (resize or mode):
        data = _reformat(data, resize, mode)
    if classes is not None:
        data = _named(data, classes)
    return data, description


def _resolve(name: str, root: Any, *, download: bool, train: bool, resize: tuple[int, int] | None,
             mode: str | None, skip_bad_files: bool) -> tuple[Any, str]:
    split = "train" if train else "test"
    if name == "sample":
        ds = MNISTSample(train=train)
        return ds, f"genaug bundled MNIST sample ({len(ds)} {split} images)"
    if name == "mnist":
        ds = load_mnist(root, train=train, download=download)
        return ds, f"MNIST {split} ({len(ds)} images)"
    if name.startswith("torchvision:"):
        return _torchvision(name, root, download=download, train=train)
    path = Path(name)
    if path.suffix in (".h5", ".hdf5") and path.is_file():
        return HDF5Dataset(path).tensors(), f"HDF5 file {path.name}"
    if path.suffix == ".npz" and path.is_file():
        return _npz(path), f"npz file {path.name}"
    if path.is_dir() and any(p.is_dir() for p in path.iterdir()):
        ds = _image_folder(path, resize=resize, mode=mode, skip_bad_files=skip_bad_files)
        skipped = f", {len(ds.skipped_files)} unreadable files left out" if ds.skipped_files else ""
        return ds, f"image folder {path.name}{skipped}"
    raise ValueError(
        "--data must be 'mnist', 'sample', 'torchvision:NAME', an .h5 file written by genaug export, an .npz "
        f"with 'images' and 'labels', or a folder of class sub-folders, got {name!r}")


def _torchvision(name: str, root: Any, *, download: bool, train: bool) -> tuple[Any, str]:
    """A torchvision dataset class by name, from its files under ``root`` (``--data-root``)."""
    import inspect

    import torchvision.datasets as tvd

    cls_name = name.split(":", 1)[1]
    cls = getattr(tvd, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, tvd.VisionDataset)):
        raise ValueError(f"--data {name}: torchvision.datasets has no dataset class {cls_name!r} "
                         "(e.g. torchvision:KMNIST, torchvision:FashionMNIST, torchvision:CIFAR10)")
    folder = data_root(root)
    params = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {"download": download} if "download" in params else {}
    split = "train" if train else "test"
    if "train" in params:
        kwargs["train"] = train
    elif "split" in params:
        kwargs["split"] = split
    try:
        ds = cls(str(folder), **kwargs)
    except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
        hint = "" if download else "; pass --download to fetch it"
        raise FileNotFoundError(f"--data {name}: not found under {folder} ({err}){hint}") from None
    return ds, f"torchvision {cls_name} {split} ({len(ds)} images)"


def _npz(path: Path) -> TensorDataset:
    """An .npz of ``images`` (uint8 (N, H, W), (N, H, W, C) or (N, C, H, W)) and ``labels``, with
    optional ``classes`` (names), as a TensorDataset of uint8 (N, C, H, W) images."""
    import numpy as np

    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from None
    with arrays:
        missing = [k for k in ("images", "labels") if k not in arrays.files]
        if missing:
            raise ValueError(f"{path}: expected arrays 'images' and 'labels', got {sorted(arrays.files)}")
        images, labels = arrays["images"], arrays["labels"]
        classes = [str(c) for c in arrays["classes"].tolist()] if "classes" in arrays.files else None
    if images.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 images, got dtype {images.dtype}")
    x = torch.from_numpy(images)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{path}: expected images (N, H, W), (N, H, W, C) or (N, C, H, W) with 1 or 3 channels, "
                         f"got shape {tuple(images.shape)}")
    if labels.shape != (len(x),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: expected {len(x)} integer labels, got dtype {labels.dtype} and shape {labels.shape}")
    y = torch.from_numpy(labels.astype(np.int64))
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"{path}: expected labels >= 0, got minimum {int(y.min())}")
    ds = TensorDataset(x.contiguous(), y)
    ds.classes = classes
    ds.targets = y
    return ds


def open_image(path: str, *, size: tuple[int, int] | None = None, mode: str | None = None) -> Any:
    """An image file as PIL keeps it, grayscale (L) or RGB, or converted to ``mode`` and resized to
    ``size`` (H, W); other modes (palette, alpha, 16-bit) are refused unless ``mode`` is given,
    naming the file (torchvision's default loader would turn everything into RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None
    if mode is not None and img.mode != mode:
        img = img.convert(mode)
    if img.mode not in ("L", "RGB"):
        raise ValueError(f"{path}: expected a grayscale (L) or RGB image, got mode {img.mode!r}; "
                         "pass --mode L or --mode RGB to convert")
    if size is not None and (img.height, img.width) != tuple(size):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return img


def _image_folder(path: Path, *, resize: tuple[int, int] | None = None, mode: str | None = None,
                  skip_bad_files: bool = False) -> Any:
    """torchvision's ImageFolder over class sub-folders, every file's header checked first: an
    unreadable file, mixed sizes or mixed modes are refused here, before any training."""
    import functools

    from PIL import Image, UnidentifiedImageError

    empty = sorted(d.name for d in path.iterdir() if d.is_dir() and not any(f.is_file() for f in d.rglob("*")))
    if empty:
        raise ValueError(f"{path}: class folder(s) {empty} hold no files; expected images in every class folder")
    try:
        ds = ImageFolder(str(path), loader=functools.partial(open_image, size=resize, mode=mode),
                         is_valid_file=lambda p: not Path(p).name.startswith("."))
    except (FileNotFoundError, RuntimeError) as err:
        raise ValueError(f"{path}: {err}") from None
    if len(ds.classes) < 2:
        raise ValueError(f"{path}: expected two or more class folders, got {ds.classes}")
    bad, sizes, modes = [], {}, {}
    for file, _ in ds.samples:
        try:
            with Image.open(file) as img:
                sizes.setdefault((img.height, img.width), file)
                modes.setdefault(img.mode, file)
        except (OSError, UnidentifiedImageError):
            bad.append(file)
    if bad and not skip_bad_files:
        raise ValueError(f"{bad[0]}: not a readable image ({len(bad)} such file(s) in {path}); pass "
                         "--skip-bad-files (skip_bad_files=True) to leave them out")
    if bad:
        left_out = set(bad)
        ds.samples = ds.imgs = [s for s in ds.samples if s[0] not in left_out]
        ds.targets = [s[1] for s in ds.samples]
    ds.skipped_files = bad
    if mode is None and (len(modes) > 1 or set(modes) - {"L", "RGB"}):
        examples = ", ".join(f"{f} is {m}" for m, f in modes.items())
        raise ValueError(f"{path}: expected images of one mode, L or RGB, got {examples}; pass --mode L or --mode RGB")
    if resize is None and len(sizes) > 1:
        examples = ", ".join(f"{f} is {h}x{w}" for (h, w), f in sizes.items())
        raise ValueError(f"{path}: expected images of one size, got {examples}; pass --resize H[,W]")
    return ds


class _Reformatted(Dataset):
    """Items of ``dataset`` with their image resized to (H, W) and/or converted to mode L or RGB."""

    def __init__(self, dataset: Any, size: tuple[int, int] | None, mode: str | None) -> None:
        self.dataset, self.size, self.mode = dataset, size, mode
        self.classes = dataset_classes(dataset)
        self.targets = dataset_labels(dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        from torchvision.transforms.v2 import functional as F

        img, label = self.dataset[i]
        x = image_tensor(img, i)
        if self.mode == "RGB" and x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        elif self.mode == "L" and x.shape[0] == 3:
            x = F.rgb_to_grayscale(x)
        if self.size is not None and tuple(x.shape[1:]) != tuple(self.size):
            x = F.resize(x, list(self.size), antialias=True)
        return x.contiguous(), label


def _reformat(data: Any, size: tuple[int, int] | None, mode: str | None) -> Any:
    if isinstance(data, tuple):
        data = TensorDataset(*data)
    return _Reformatted(data, size, mode)


class _Named(Dataset):
    """``dataset`` with its classes named (``--classes``)."""

    def __init__(self, dataset: Any, classes: list[str]) -> None:
        self.dataset, self.classes = dataset, list(classes)
        self.targets = dataset_labels(dataset)
        self.skipped_files = getattr(dataset, "skipped_files", [])
        k = int(self.targets.max()) + 1
        if len(self.classes) != k or len(set(self.classes)) != k:
            raise ValueError(f"--classes expects {k} distinct names (labels go from 0 to {k - 1}), got {classes}")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i]


def _named(data: Any, classes: list[str]) -> Any:
    if isinstance(data, tuple):
        data = TensorDataset(*data)
    return _Named(data, classes)


class _Relabelled(Dataset):
    """``dataset`` with its labels renamed into another class list: label ``i`` becomes ``mapping[i]``."""

    def __init__(self, dataset: Any, mapping: list[int], classes: list[str]) -> None:
        self.dataset, self.classes, self._mapping = dataset, list(classes), torch.tensor(mapping)
        self.targets = self._mapping[dataset_labels(dataset)]
        self.skipped_files = getattr(dataset, "skipped_files", [])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        image, _ = self.dataset[i]
        return image, int(self.targets[i])


def match_test_classes(data: Any, test: Any, *, name: str = "--test-data") -> Any:
    """``test`` with labels that mean what ``data``'s labels mean: its classes matched to
    ``data``'s by name (a test folder may lack a class, or list them in another order).
    Test labels are never paired with classes of other names: that is refused."""
    classes, test_classes = dataset_classes(data), dataset_classes(test)
    if classes is None or test_classes is None or list(classes) == list(test_classes):
        return test
    if all(c in classes for c in test_classes):
        return _Relabelled(test, [list(classes).index(c) for c in test_classes], list(classes))
    missing = [c for c in test_classes if c not in classes]
    raise ValueError(f"{name} has classes {list(test_classes)} but the training data {list(classes)}; "
                     f"{missing[:5]} {'is' if len(missing) == 1 else 'are'} not among the training data's classes")


def resolve_test_data(name: str, root: str | os.PathLike[str] | None = None) -> Any:
    """The test split that goes with ``name``: MNIST's for ``"mnist"``, the bundled sample's for
    ``"sample"``, a torchvision dataset's test split; other data has none (give a test set or a
    validation split: :func:`resolve_splits`)."""
    if name == "mnist":
        return load_mnist(root, train=False)
    if name == "sample":
        return MNISTSample(train=False)
    if name.startswith("torchvision:"):
        return _torchvision(name, root, download=False, train=False)[0]
    raise ValueError(f"--data {name} has no test split of its own; give --test-data (a test set in any --data "
                     "form) or --val-split F (hold out a fraction F of --data)")


def resolve_splits(name: str, root: str | os.PathLike[str] | None = None, *, test: str | None = None,
                   val_split: float | None = None, seed: int = 0, download: bool = False,
                   **options: Any) -> tuple[Any, Any, str]:
    """``(train, test, description)``: the data ``name`` resolves to and the set to measure on, which
    is ``test`` (resolved the same way), a seeded ``val_split`` fraction held out of the data, or the
    data's own test split (MNIST, the bundled sample).

    Example:
        >>> train, test, _ = resolve_splits("sample", val_split=0.2)
        >>> len(train), len(test)
        (800, 200)
    """
    if test is not None and val_split is not None:
        raise ValueError("give --test-data or --val-split, not both")
    data, description = resolve_data(name, root, download=download, **options)
    if test is not None:
        test_set, _ = resolve_data(test, root, download=download, train=False, **options)
        return data, match_test_classes(data, test_set), description
    if val_split is None:
        if name in ("mnist", "sample") or name.startswith("torchvision:"):
            return data, resolve_data(name, root, download=download, train=False, **options)[0], description
        return data, resolve_test_data(name, root), description
    if not 0 < val_split < 1:
        raise ValueError(f"--val-split must be in (0, 1), got {val_split}")
    if isinstance(data, tuple):
        data = TensorDataset(*data)
    n = len(data)
    held = round(n * val_split)
    if not 0 < held < n:
        raise ValueError(f"--val-split {val_split} of {n} items leaves an empty split")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    train, held_out = Subset(data, perm[held:]), Subset(data, perm[:held])
    return train, held_out, f"{description}, {n - held} after holding out {held} (--val-split {val_split}, seed {seed})"


def labelled_tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, C, H, W) and int64 labels of what :func:`resolve_data` returns (any labelled
    dataset, or an ``(images, labels)`` pair)."""
    return labelled_images(data)
