"""Device selection: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from genaug._validation import check_choice

#: Mixed-precision modes: "auto" (bf16 on a CUDA GPU that has it, else off), "bf16" (bf16 autocast
#: on any device, the CPU included) and "off".
AMP_MODES = ("auto", "bf16", "off")


def get_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto"`` to the best available device; pass anything else through.

    Example:
        >>> get_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise ValueError(f"device must be 'auto' or a torch device string, got {device!r}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}"
        ) from err
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r}: CUDA is not available on this machine (use 'auto' or 'cpu')")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r}: this machine has {count} CUDA device(s), numbered from 0")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {device!r}: Apple MPS is not available on this machine (use 'auto' or 'cpu')")
    return dev


def resolve_amp(device: torch.device, amp: str) -> str:
    """The mode ``amp`` means on ``device``: "bf16" or "off" ("auto": bf16 on a CUDA GPU with
    bfloat16 support, else off). Raises ValueError for an unknown mode, or "bf16" on a CUDA GPU
    without bfloat16."""
    check_choice("amp", amp, AMP_MODES)
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if amp == "auto":
        return "bf16" if cuda_bf16 else "off"
    if amp == "bf16" and device.type == "cuda" and not cuda_bf16:
        raise ValueError(f"amp='bf16' needs a GPU with bfloat16 support; {device} has none (use amp='off')")
    return amp


def autocast(device: torch.device, amp: str) -> Any:
    """A context manager running its block under ``amp`` (see :func:`resolve_amp`) on ``device``:
    ``torch.autocast(device.type, dtype=torch.bfloat16)``, or a no-op for "off".

    Example:
        >>> with autocast(torch.device("cpu"), "off"):
        ...     pass
    """
    if resolve_amp(device, amp) == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
