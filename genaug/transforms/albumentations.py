"""albumentations adapter (optional extra: ``pip install genaug[albumentations]``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

try:
    import albumentations as A
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "genaug.transforms.albumentations needs albumentations: pip install 'genaug[albumentations]'"
    ) from err

from genaug._deprecation import renamed_kwarg
from genaug.transforms.replace import _Banks, _ProcessRNG


class SyntheticReplaceA(A.ImageOnlyTransform):
    """albumentations version of :class:`~genaug.transforms.SyntheticReplace`.

    Pass the label as a named argument (``label_key``, "label" by default); with
    probability ``p`` the (H, W) or (H, W, C) numpy image becomes a synthetic image of
    that class with the same shape and dtype (uint8, or float32 in [0, 1]).

    Example:
        >>> aug = A.Compose([SyntheticReplaceA(gen, p=0.5), A.HorizontalFlip()])  # doctest: +SKIP
        >>> out = aug(image=img, label=3)  # doctest: +SKIP
    """

    @renamed_kwarg("generator", "model")
    def __init__(self, model: Any, *, p: float = 0.5, label_key: str = "label", bank_size: int = 64,
                 seed: int | None = None, truncation: float = 1.0) -> None:
        super().__init__(p=p)
        if model.num_classes < 1:
            raise ValueError("expected a class-labelled generator (num_classes >= 1), got num_classes=0")
        self.model, self.label_key = model, label_key
        self._rng = _ProcessRNG(seed)
        self._banks = _Banks(model, bank_size, truncation)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        if self.label_key not in data:
            raise ValueError(f"SyntheticReplaceA needs the label as {self.label_key}=..., got keys {sorted(data)}")
        label = int(data[self.label_key])
        return {"synthetic": self._banks.take(label, self._rng.get())[0]}

    def apply(self, img: np.ndarray, synthetic: torch.Tensor | None = None, **params: Any) -> np.ndarray:
        c, h, w = synthetic.shape
        want = (h, w) if c == 1 and img.ndim == 2 else (h, w, c)
        if img.shape != want:
            raise ValueError(f"expected an image of shape {want} (the generator's), got {img.shape}")
        out = synthetic.permute(1, 2, 0).numpy()
        out = out[:, :, 0] if img.ndim == 2 else out
        if img.dtype == np.uint8:
            return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)
        return out.astype(img.dtype)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("label_key",)
