"""Per-sample and per-batch mixing of synthetic images into real data."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Sequence
from typing import Any

import PIL.Image
import torch
from torch.utils.data import default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2

from genaug._deprecation import renamed_kwarg, warn_deprecated
from genaug._validation import check_choice, check_float, check_int, check_probability
from genaug.generators.base import check_generator
from genaug.generators.wrappers import match_classes


class _ProcessRNG:
    """A torch.Generator (for samples) and a ``random.Random`` (for per-item decisions, which
    cost a fraction of a microsecond instead of a tensor draw's few), made on first use in each
    process and seeded from ``seed`` or, when ``seed`` is None, from ``torch.initial_seed()``
    (which DataLoader sets per worker)."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self._pid: int | None = None
        self._gen: torch.Generator | None = None
        self._coin: random.Random | None = None

    def _make(self) -> None:
        base = int(torch.initial_seed() if self.seed is None else self.seed) % (2**63)
        self._gen = torch.Generator().manual_seed(base)
        self._coin = random.Random(base)
        self._pid = os.getpid()

    def get(self) -> torch.Generator:
        if self._gen is None or self._pid != os.getpid():
            self._make()
        return self._gen

    def random(self) -> float:
        """A uniform float in [0, 1) from this process's decision stream."""
        if self._coin is None or self._pid != os.getpid():
            self._make()
        return self._coin.random()

    def __getstate__(self) -> dict[str, Any]:
        return {"seed": self.seed, "_pid": None, "_gen": None, "_coin": None}


def _as_label(x: Any) -> int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, torch.Tensor) and x.ndim == 0 and not x.is_floating_point() and x.dtype != torch.bool:
        return int(x)
    return None


def match_like(synthetic: torch.Tensor, like: Any) -> Any:
    """A float (C, H, W) image in [0, 1] converted to the type, dtype, shape and range of ``like``."""
    kind = _kind(like)
    return _fit(_convert(synthetic[None], kind)[0], kind, tuple(synthetic.shape), like)


def _kind(like: Any) -> str:
    """How a synthetic image is stored to replace ``like``: "pil", "uint8" or "float"."""
    if isinstance(like, PIL.Image.Image):
        return "pil"
    if isinstance(like, torch.Tensor) and like.dtype == torch.uint8:
        return "uint8"
    return "float"


def _convert(images: torch.Tensor, kind: str) -> Any:
    """Float (N, C, H, W) images in [0, 1] in the layout of ``kind``, converted in one pass:
    for "pil" a uint8 numpy array (N, H, W) or (N, H, W, C), what ``PIL.Image.fromarray`` takes."""
    if kind == "pil":  # what to_pil_image does: mul(255).byte(), channels last
        arr = images.clamp(0, 1).mul(255).byte().permute(0, 2, 3, 1).contiguous().numpy()
        return arr[..., 0] if arr.shape[-1] == 1 else arr
    if kind == "uint8":
        return images.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    return images


def _fit(img: Any, kind: str, shape: tuple[int, int, int], like: Any) -> Any:
    """``img`` (an item of :func:`_convert`'s output for ``kind``) checked against ``like`` and
    given its type."""
    c, h, w = shape
    if kind == "pil":
        size = like.size
        bands = len(like.getbands())
        if size[1] != h or size[0] != w or bands != c:
            raise ValueError(
                f"expected a PIL image of {c} band(s) and size {w}x{h} (the generator's shape), "
                f"got {bands} band(s) and size {size[0]}x{size[1]}"
            )
        out = PIL.Image.fromarray(img)
        return out.convert(like.mode) if out.mode != like.mode else out
    if isinstance(like, torch.Tensor):
        got = tuple(like.shape)
        if got == (h, w) and c == 1:
            img = img[0]
        elif got != (c, h, w):
            raise ValueError(f"expected an image tensor of shape {(c, h, w)} (the generator's), got {got}")
        if kind == "float":
            if not like.is_floating_point():
                raise TypeError(f"expected a uint8 or float image tensor, got dtype {like.dtype}")
            lo, hi = (float(v) for v in torch.aminmax(like))  # NaN propagates into both
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError("expected finite float images in [0, 1], got an image with NaN or inf values")
            if lo < 0 or hi > 1:
                raise ValueError(
                    f"expected float images in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
                    "place SyntheticReplace before Normalize"
                )
            img = img.to(like.dtype)
        img = img.to(like.device)
        return tv_tensors.wrap(img, like=like) if isinstance(like, tv_tensors.TVTensor) else img
    raise TypeError(f"expected a PIL image or an image tensor, got {type(like).__name__}")


#: Memory that the float banks of all classes may take together when ``bank_size`` is not given.
BANK_BYTES = 32 * 2**20


def default_bank_size(model: Any) -> int:
    """256 images per class, or fewer so that every class's bank fits in :data:`BANK_BYTES`."""
    c, h, w = model.image_shape
    per_image = 4 * c * h * w * max(model.num_classes, 1)
    return max(1, min(256, BANK_BYTES // per_image))


class _Banks:
    """Per-class banks of synthetic images, refilled ``bank_size`` at a time.

    A bank is converted to the layout that the images it replaces need (see :func:`_convert`)
    once per refill, so an item costs an index rather than a conversion.
    """

    def __init__(self, model: Any, bank_size: int, truncation: float) -> None:
        self.model, self.bank_size, self.truncation = model, bank_size, truncation
        # label -> [float images, items left, {kind: converted images}]
        self.banks: dict[int, list[Any]] = {}

    def next(self, label: int, rng: torch.Generator) -> tuple[list[Any], int]:
        """The bank of class ``label`` (refilled if it is empty) and the index of its next image."""
        bank = self.banks.get(label)
        if bank is None or bank[1] == 0:
            k = self.model.num_classes
            if not 0 <= label < k:
                raise ValueError(f"label must be in [0, {k - 1}] (the generator's classes), got {label}")
            y = torch.full((self.bank_size,), label, dtype=torch.long)
            bank = self.banks[label] = [self.model.sample(y, generator=rng, truncation=self.truncation).cpu(),
                                        self.bank_size, {}]
        bank[1] -= 1
        return bank, bank[1]  # last first, as a list's pop()

    @staticmethod
    def converted(bank: list[Any], i: int, kind: str) -> Any:
        """Image ``i`` of ``bank`` in ``kind``'s layout (see :func:`_convert`)."""
        images = bank[2].get(kind)
        if images is None:
            images = bank[2][kind] = _convert(bank[0], kind)
            if isinstance(images, torch.Tensor):
                images = bank[2][kind] = images.unbind(0)  # a tuple of views indexes faster than a tensor
        return images[i]

    def take(self, label: int, rng: torch.Generator, kind: str = "float") -> tuple[torch.Tensor, Any]:
        """The next image of class ``label``: as a float (C, H, W) image in [0, 1], and in ``kind``'s layout."""
        bank, i = self.next(label, rng)
        return bank[0][i], self.converted(bank, i, kind)


class SyntheticReplace(v2.Transform):
    """With probability ``p``, swap an ``(image, label)`` sample's image for a synthetic one of
    the same class.

    The replacement has the input's type, dtype, shape and value range (PIL image, uint8 or
    float tensor in [0, 1], ``tv_tensors.Image``), so it can sit anywhere before ``Normalize``
    in a ``v2.Compose``; put it first to send synthetic images through the same augmentation
    as real ones. Labels are kept. Synthetic images come from per-class banks refilled
    ``bank_size`` at a time.

    Args:
        model: a class-labelled generator.
        p: probability of replacement.
        bank_size: images generated per refill of a class's bank. ``None`` (the default) takes
            256, or fewer when 256 images of every class would pass :data:`BANK_BYTES`
            (e.g. 256 for MNIST's 10 classes, 27 for 100 classes of 3x32x32 images). Larger
            refills run the generator at a more efficient batch size.
        seed: seed of the decisions and samples; ``None`` takes ``torch.initial_seed()`` in
            each process, which DataLoader sets per worker.
        truncation: latent scale in (0, 1].
        classes: the class names of the labels it will see (the real dataset's ``classes``),
            when they may follow another order than the generator's; the generator's classes
            are matched to them by name (see :func:`~genaug.match_classes`).

    Example:
        >>> tf = v2.Compose([SyntheticReplace(gen, p=0.3), v2.PILToTensor()])  # doctest: +SKIP
        >>> MNIST(root, transforms=tf)  # doctest: +SKIP
        >>> ImageFolder(root, transforms=SyntheticReplace(gen, classes=folder_classes))  # doctest: +SKIP
    """

    @renamed_kwarg("generator", "model")
    def __init__(
        self, model: Any, *, p: float = 0.5, bank_size: int | None = None, seed: int | None = None,
        truncation: float = 1.0, classes: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        check_generator(model, conditional=True)
        model = match_classes(model, _names("classes", classes), name="classes")
        check_probability("p", p)
        if bank_size is None:
            bank_size = default_bank_size(model)
        check_int("bank_size", bank_size, minimum=1)
        check_float("truncation", truncation, low=0.0, high=1.0, low_open=True)
        if seed is not None:
            check_int("seed", seed, minimum=0)
        self.model = model
        self.p = p
        self._rng = _ProcessRNG(seed)
        self._banks = _Banks(model, bank_size, truncation)
        self._label: int | None = None

    @property
    def generator(self) -> Any:
        """Deprecated name of :attr:`model`."""
        warn_deprecated(f"{type(self).__name__}.generator", f"{type(self).__name__}.model")
        return self.model

    def forward(self, *inputs: Any) -> Any:
        # The usual call, (image, label) from a dataset's ``transforms=`` or a Compose, skips the
        # pytree flattening of v2.Transform.forward and the params dict, which cost more per item
        # than generation. It does what they would do: the image is the one input transformed,
        # the label passes through.
        if len(inputs) == 2 and isinstance(inputs[0], (PIL.Image.Image, torch.Tensor)):
            image, label = inputs
            lab = _as_label(label)
            if lab is not None and (not isinstance(image, tv_tensors.TVTensor) or isinstance(image, tv_tensors.Image)):
                if not self._decide():
                    return image, label
                kind = _kind(image)
                bank, i = self._banks.next(lab, self._rng.get())
                return _fit(_Banks.converted(bank, i, kind), kind, tuple(bank[0].shape[1:]), image), label
        return super().forward(*inputs)

    def _decide(self) -> bool:
        """Whether to replace this sample (a draw from the decision stream unless p is 0 or 1)."""
        p = self.p
        return p > 0 and (p >= 1 or self._rng.random() < p)

    def check_inputs(self, flat_inputs: list[Any]) -> None:
        # The label is not an image, so make_params never sees it: take it here.
        labels = [lab for lab in (_as_label(x) for x in flat_inputs) if lab is not None]
        if not labels:
            raise ValueError(
                "SyntheticReplace expects (image, label) inputs with an int label, got "
                f"{[type(x).__name__ for x in flat_inputs]}"
            )
        self._label = labels[0]

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if not self._decide():
            return {"bank": None}
        bank, i = self._banks.next(self._label, self._rng.get())
        return {"bank": bank, "index": i, "kind": _kind(flat_inputs[0]) if flat_inputs else "float"}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        bank = params["bank"]
        if bank is None:
            return inpt
        i, kind = params["index"], params["kind"]
        if _kind(inpt) != kind:  # a second image, of another type, in the same sample
            return match_like(bank[0][i], inpt)
        return _fit(_Banks.converted(bank, i, kind), kind, tuple(bank[0].shape[1:]), inpt)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        banks = _Banks(self._banks.model, self._banks.bank_size, self._banks.truncation)
        state["_banks"] = banks  # weights travel, generated images do not
        return state

    def extra_repr(self) -> str:
        return f"p={self.p}, model={getattr(self.model, 'family', '?')}"


class SyntheticBatchMix:
    """Mix synthetic samples into a batch in one forward pass on the batch's device.

    Args:
        model: a class-labelled generator (moved to the batch's device on first use).
        fraction: share of the batch to replace (``mode="replace"``) or to add (``"append"``).
        balance: ``"batch"``: synthetic samples take the labels of the batch; ``"uniform"``:
            uniformly drawn classes.
        mode: ``"replace"`` or ``"append"``.
        transform: applied to the synthetic batch (float in [0, 1], or uint8 if the batch is
            uint8) before mixing, e.g. the normalisation the real batch went through.
        seed: seed of the choices and samples (``None``: ``torch.initial_seed()`` per process).
        value_range: the value range ``(low, high)`` of float batches, to which synthetic images
            are scaled. By default a float batch must lie in [0, 1]; give ``transform`` instead
            for a normalised batch. A uint8 batch is always [0, 255]; other dtypes are refused.
        classes: the class names of the batch's labels (the real dataset's ``classes``), when
            they may follow another order than the generator's; matched by name.

    Example:
        >>> mix = SyntheticBatchMix(gen, fraction=0.25)  # doctest: +SKIP
        >>> for x, y in loader:  # doctest: +SKIP
        ...     x, y = mix(x.cuda(), y.cuda())
        >>> DataLoader(ds, batch_size=128, collate_fn=mix.collate)  # as a collate function  # doctest: +SKIP
    """

    @renamed_kwarg("generator", "model")
    def __init__(
        self, model: Any, *, fraction: float, balance: str = "batch", mode: str = "replace",
        transform: Any = None, seed: int | None = None, truncation: float = 1.0,
        value_range: tuple[float, float] | None = None, classes: Sequence[str] | None = None,
    ) -> None:
        check_generator(model, conditional=True)
        model = match_classes(model, _names("classes", classes), name="classes")
        check_probability("fraction", fraction)
        check_choice("balance", balance, ("batch", "uniform"))
        check_choice("mode", mode, ("replace", "append"))
        check_float("truncation", truncation, low=0.0, high=1.0, low_open=True)
        if seed is not None:
            check_int("seed", seed, minimum=0)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        if value_range is not None:
            if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
                raise ValueError(f"value_range must be a pair (low, high), got {value_range!r}")
            check_float("value_range[0]", value_range[0])
            check_float("value_range[1]", value_range[1])
            if not value_range[0] < value_range[1]:
                raise ValueError(f"value_range must have low < high, got {tuple(value_range)}")
            if transform is not None:
                raise ValueError("give value_range or transform, not both: transform maps [0, 1] images itself")
        self.model, self.fraction, self.balance, self.mode = model, fraction, balance, mode
        self.transform, self.truncation = transform, truncation
        self.value_range = None if value_range is None else (float(value_range[0]), float(value_range[1]))
        self._rng = _ProcessRNG(seed)

    @property
    def generator(self) -> Any:
        """Deprecated name of :attr:`model`."""
        warn_deprecated(f"{type(self).__name__}.generator", f"{type(self).__name__}.model")
        return self.model

    def _check_batch(self, images: Any, labels: Any) -> None:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"expected images as a (N, C, H, W) torch.Tensor, got {type(images).__name__}")
        if images.ndim != 4:
            raise ValueError(f"expected images as a (N, C, H, W) tensor, got shape {tuple(images.shape)}")
        if tuple(images.shape[1:]) != tuple(self.model.image_shape):
            raise ValueError(
                f"expected images of shape {tuple(self.model.image_shape)} (the generator's), "
                f"got a batch of {tuple(images.shape[1:])}"
            )
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise TypeError(f"expected a uint8 or floating-point image batch, got dtype {images.dtype}")
        if images.dtype == torch.uint8 and self.value_range not in (None, (0.0, 255.0)):
            raise ValueError(f"value_range {self.value_range} is for float batches, got a uint8 batch "
                             "(always [0, 255])")
        if images.is_floating_point() and images.numel():
            if not bool(torch.isfinite(images).all()):
                raise ValueError("expected finite images, got a batch with NaN or inf values")
            if self.transform is None:
                lo, hi = self.value_range or (0.0, 1.0)
                got_lo, got_hi = float(images.min()), float(images.max())
                if got_lo < lo or got_hi > hi:
                    raise ValueError(
                        f"expected float images in [{lo:g}, {hi:g}], got values in [{got_lo:.4g}, {got_hi:.4g}]; "
                        "pass value_range=(low, high) for another range, or transform= to map synthetic "
                        "[0, 1] images the way the batch was normalised"
                    )
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"expected labels as a 1-D integer torch.Tensor, got {type(labels).__name__}")
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise TypeError(f"expected integer labels, got dtype {labels.dtype}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"expected {images.shape[0]} labels (one per image), got shape {tuple(labels.shape)}")
        k = self.model.num_classes
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
            lo, hi = int(labels.min()), int(labels.max())
            raise ValueError(f"labels must be in [0, {k - 1}], got values in [{lo}, {hi}]")

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_batch(images, labels)
        k = self.model.num_classes
        n = images.shape[0]
        m = round(self.fraction * n)
        if m == 0:
            return images, labels
        rng = self._rng.get()
        if self.mode == "replace":
            pos = torch.randperm(n, generator=rng)[:m]
            syn_labels = labels.cpu()[pos] if self.balance == "batch" else torch.randint(k, (m,), generator=rng)
        else:
            pick = torch.randint(n, (m,), generator=rng)
            syn_labels = labels.cpu()[pick] if self.balance == "batch" else torch.randint(k, (m,), generator=rng)
        if self.model.device != images.device:
            self.model.to(images.device)
        syn = self.model.sample(syn_labels, generator=rng, truncation=self.truncation)
        if images.dtype == torch.uint8:
            syn = syn.mul(255).round_().clamp_(0, 255).to(torch.uint8)
        elif self.value_range is not None:
            lo, hi = self.value_range
            syn = syn * (hi - lo) + lo
        if self.transform is not None:
            syn = self.transform(syn)
        syn = syn.to(images.device, images.dtype)
        syn_labels = syn_labels.to(labels.device, labels.dtype)
        if self.mode == "replace":
            images, labels = images.clone(), labels.clone()
            pos = pos.to(images.device)
            images[pos] = syn
            labels[pos] = syn_labels
            return images, labels
        return torch.cat([images, syn]), torch.cat([labels, syn_labels])

    def collate(self, batch: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``default_collate`` then mix: pass as a DataLoader's ``collate_fn``."""
        images, labels = default_collate(batch)
        return self(images, labels)

    def __repr__(self) -> str:
        extra = f", value_range={self.value_range}" if self.value_range is not None else ""
        return (f"{type(self).__name__}(fraction={self.fraction}, balance={self.balance!r}, "
                f"mode={self.mode!r}{extra})")


def _names(name: str, classes: Any) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, str) or not isinstance(classes, Sequence) or not all(isinstance(c, str) for c in classes):
        raise TypeError(f"{name} must be a list of class names (strings), got {classes!r}")
    return list(classes)
