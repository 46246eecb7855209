"""The one interface every user-facing part of genaug talks to."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import nn

from genaug._io import CheckpointError, check_state, creation_provenance, read_weights_and_card, write_weights_and_card
from genaug._validation import check_choice, check_float
from genaug.device import AMP_MODES, autocast, resolve_amp
from genaug.registry import build_from_card

G = TypeVar("G", bound="BaseGenerator")


class SamplingError(RuntimeError):
    """A generator could not make what was asked, e.g. too few samples passed a confidence filter."""


@runtime_checkable
class Generator(Protocol):
    """A class-labelled image sampler.

    ``sample`` returns float32 images of shape (N, C, H, W) in [0, 1], one per
    label. The same ``torch.Generator`` state gives identical output.
    ``num_classes`` is 0 for an unconditional generator, whose labels must all be -1.
    """

    num_classes: int
    classes: list[str]
    image_shape: tuple[int, int, int]
    latent_dim: int

    def sample(
        self,
        labels: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        truncation: float = 1.0,
    ) -> torch.Tensor: ...


class BaseGenerator(nn.Module):
    """Shared behaviour of genaug's generator wrappers (inference only).

    Subclasses set ``family``, implement ``_decode(z, labels)`` returning images in [0, 1]
    (or override ``sample``) and ``from_card(card)`` (a fresh generator of the card's
    architecture), and register with :func:`~genaug.registry.register_generator_class`.
    ``truncation`` scales the latent noise (a sampling temperature): 1.0 samples the prior,
    smaller values trade diversity for typicality.

    Saving and loading follow diffusers: :meth:`save_pretrained` writes ``config.json`` and
    ``model.safetensors``; :meth:`from_pretrained` reads the card, builds from it, loads the
    weights and calls ``eval()``.
    """

    family: str = ""

    def __init__(
        self,
        *,
        config: Any,
        classes: list[str],
        image_shape: tuple[int, int, int],
        latent_dim: int,
    ) -> None:
        super().__init__()
        self.config = config
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.provenance: dict[str, Any] = {}

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def check_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Validate a 1-D integer label tensor against this generator's classes."""
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a 1-D integer torch.Tensor, got {type(labels).__name__}")
        if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(
                f"labels must be a 1-D integer tensor, got dtype {labels.dtype} and shape "
                f"{tuple(labels.shape)}"
            )
        if labels.numel():
            lo, hi = int(labels.min()), int(labels.max())
            if self.num_classes == 0 and (lo != -1 or hi != -1):
                raise ValueError(
                    "this generator is unconditional (num_classes=0): labels must all be -1, "
                    f"got values in [{lo}, {hi}]"
                )
            if self.num_classes and (lo < 0 or hi >= self.num_classes):
                raise ValueError(
                    f"labels must be in [0, {self.num_classes - 1}], got values in [{lo}, {hi}]"
                )
        return labels.long()

    def noise(
        self, n: int, *, generator: torch.Generator | None, truncation: float
    ) -> torch.Tensor:
        """Latent noise drawn on the generator's device, so the draw is device independent."""
        check_float("truncation", truncation, low=0.0, high=1.0, low_open=True)
        noise_device = generator.device if generator is not None else torch.device("cpu")
        z = torch.randn(n, self.latent_dim, generator=generator, device=noise_device)
        return (z * truncation).to(self.device)

    def sample(
        self,
        labels: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        truncation: float = 1.0,
    ) -> torch.Tensor:
        """Sample one image per label.

        Args:
            labels: 1-D integer class indices (all -1 for an unconditional generator).
            generator: source of randomness; the same state gives identical images.
            truncation: latent scale in (0, 1].

        Returns:
            float32 tensor (N, C, H, W) in [0, 1] on this generator's device.
        """
        labels = self.check_labels(labels)
        z = self.noise(labels.numel(), generator=generator, truncation=truncation)
        was_training = self.training
        self.eval()
        try:
            # no_grad, not inference_mode: samples must stay usable as training inputs.
            with torch.no_grad():
                out = self._decode_chunked(z, labels.to(self.device))
        finally:
            self.train(was_training)
        return out.float().clamp_(0.0, 1.0)

    #: True when an image is a pure function of its latent and label (``decode`` works);
    #: False for generators that sample by rejection (labelled, filtered).
    supports_latents: bool = True

    @torch.no_grad()
    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images (float32 in [0, 1]) for given latents and labels: the deterministic half of ``sample``."""
        if not self.supports_latents:
            raise TypeError(f"{type(self).__name__} samples by rejection and has no latent-to-image map")
        labels = self.check_labels(labels)
        was_training = self.training
        self.eval()
        try:
            out = self._decode_chunked(z.to(self.device), labels.to(self.device))
        finally:
            self.train(was_training)
        return out.float().clamp_(0.0, 1.0)

    #: Rows decoded at once by :meth:`sample` and :meth:`decode`. The noise is drawn for the whole
    #: batch first and each image depends only on its own latent and label (batch norm runs in eval
    #: mode), so the chunk changes no image; it keeps each layer's activations in cache, which on CPU
    #: makes batches of 1024 and more about 1.4x faster (benchmarks/sampling.py).
    decode_chunk: int = 256

    #: Mixed precision of the network's forward passes when sampling: "off" (float32, the default),
    #: "bf16" (bf16 autocast on any device, the CPU included) or "auto" (bf16 on a CUDA GPU that has
    #: it). Set it with :meth:`set_amp`.
    amp: str = "off"

    def set_amp(self: G, amp: str) -> G:
        """Sample under mixed precision ``amp`` ("off", "bf16" or "auto"; see :attr:`amp`): this
        generator and every generator inside it (a gate's base, a mixture's components). A gate's
        classifier keeps float32. Returns ``self``.

        bf16 changes the samples slightly (each image is still a function of its latent and
        label on a given machine); on a 2-core CPU with AVX512-BF16 the bundled generators sample
        1.3-2.4x as fast, the gated diffusion model 1.65x, with the same validation scores
        (``benchmarks/sampling.py --amp``). On a CPU without bf16 instructions it is slower.

        Example:
            >>> import genaug
            >>> gen = genaug.load_generator("mnist-cvae").set_amp("bf16")
            >>> gen.sample(torch.tensor([3, 7])).dtype
            torch.float32
        """
        check_choice("amp", amp, AMP_MODES)
        for module in self.modules():
            if isinstance(module, BaseGenerator):
                module.amp = amp
        return self

    def _decode_chunked(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        c = self.decode_chunk
        with autocast(z.device, self.amp):
            if z.shape[0] <= c:
                return self._decode(z, labels)
            return torch.cat([self._decode(z[i : i + c], labels[i : i + c]) for i in range(0, z.shape[0], c)])

    def _decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def card(self) -> dict[str, Any]:
        """The JSON-serialisable description saved next to the weights."""
        return {
            "family": self.family,
            "config": self.config.to_dict(),
            "classes": self.classes,
            "image_shape": list(self.image_shape),
            "latent_dim": self.latent_dim,
            "value_range": [0.0, 1.0],
        }

    @classmethod
    def from_card(cls: type[G], card: dict[str, Any]) -> G:
        """A generator with fresh weights of the architecture a card describes."""
        raise NotImplementedError(f"{cls.__name__} does not implement from_card")

    def save_pretrained(self, path: str | os.PathLike[str], *, provenance: dict[str, Any] | None = None,
                        dtype: torch.dtype | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to the folder ``path`` (created if needed).

        ``dtype``: store the floating-point weights as, e.g., ``torch.float16`` (half the size of
        float32; :meth:`from_pretrained` casts them back). Samples then differ from the unsaved
        model's by the rounding of its weights: evaluate the saved copy.
        """
        prov = {**creation_provenance(), **self.provenance, **(provenance or {})}
        return write_weights_and_card(path, self, self.card(), provenance=prov, dtype=dtype)

    @classmethod
    def from_pretrained(cls: type[G], path: str | os.PathLike[str]) -> G:
        """Load a generator saved with :meth:`save_pretrained` (a folder, or a ``.safetensors``
        file with a ``.json`` beside it). Only safetensors and JSON are read; nothing is
        unpickled. Called on a subclass, the saved generator must be of that class.

        Example:
            >>> gen = BaseGenerator.from_pretrained("runs/cvae")  # doctest: +SKIP
        """
        state, card, weights_path, config_path = read_weights_and_card(
            path, required=("family", "config", "classes"))
        try:
            gen = build_from_card(card)
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{config_path}: cannot build the generator ({err})") from None
        if not isinstance(gen, cls):
            raise CheckpointError(
                f"{config_path}: expected a {cls.__name__}, got a {type(gen).__name__} (family {card['family']!r})")
        _check_card_fields(card, gen, config_path)
        check_state(gen, state, source=weights_path)
        gen.load_state_dict(state, strict=True)
        gen.provenance = dict(card.get("provenance", {}))
        return gen.eval()

    def extra_repr(self) -> str:
        return (
            f"family={self.family!r}, num_classes={self.num_classes}, "
            f"image_shape={self.image_shape}, latent_dim={self.latent_dim}"
        )


def _check_card_fields(card: dict[str, Any], gen: BaseGenerator, config_path: Path) -> None:
    """The card's top-level description must agree with the generator its config builds."""
    built = gen.card()
    for key in ("image_shape", "latent_dim", "value_range", "classes"):
        if key in card and key in built and card[key] != built[key]:
            raise CheckpointError(
                f"{config_path}: {key} is {card[key]!r} but the config builds a generator with {built[key]!r}; "
                "the card was edited or is damaged")


def sampling_amp(model: Any) -> str:
    """"bf16" if ``model`` or a generator inside it samples under bf16 autocast on its device
    (:meth:`BaseGenerator.set_amp`), else "off": what export and evaluate record."""
    modules = model.modules() if isinstance(model, nn.Module) else ()
    modes = {resolve_amp(m.device, m.amp) for m in modules if isinstance(m, BaseGenerator)}
    return "bf16" if "bf16" in modes else "off"


def check_generator(model: Any, *, name: str = "model", conditional: bool = False) -> None:
    """Refuse, with a ``TypeError``, anything that is not a :class:`Generator`; with
    ``conditional``, refuse an unconditional one (``ValueError``)."""
    if isinstance(model, (str, os.PathLike)):
        raise TypeError(f"{name} must be a Generator object, got the path {os.fspath(model)!r}; "
                        "load it first with genaug.load_generator")
    if not isinstance(model, Generator):
        raise TypeError(f"{name} must be a Generator (num_classes, classes, image_shape, latent_dim and "
                        f"sample()), got {type(model).__name__}")
    if conditional and model.num_classes < 1:
        raise ValueError(f"{name}: expected a class-labelled generator (num_classes >= 1), got num_classes=0")


def default_classes(num_classes: int) -> list[str]:
    return [str(i) for i in range(num_classes)]


def check_classes(classes: list[str] | None, num_classes: int) -> list[str]:
    if classes is None:
        return default_classes(num_classes)
    classes = list(classes)
    if len(classes) != num_classes or not all(isinstance(c, str) for c in classes):
        raise ValueError(
            f"classes must be {num_classes} strings (one per class of the model), got {classes!r}"
        )
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must be unique, got {classes!r}")
    return classes
