"""Where tensors live: one rule for turning ``device="auto" | "cpu" | "cuda" | "cuda:N"`` into a
torch device, shared by every env, stage and command."""

from __future__ import annotations

import torch

DEVICE_CHOICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"
DEFAULT_DEVICE = "auto"
"""The default everywhere: CUDA when this torch sees a GPU, else the CPU."""


def resolve_device(device: str | torch.device | None = DEFAULT_DEVICE) -> torch.device:
    """The torch device for ``device``; ``"auto"`` (or None) takes ``cuda`` when it is there.

    Raises TypeError for a value that is not a string or device, and ValueError for an unknown
    device, a CUDA device when this torch has no CUDA or sees no GPU, or a GPU index out of range.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be {DEVICE_CHOICES} or a torch.device, got {type(device).__name__} {device!r}")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}: expected {DEVICE_CHOICES}") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise ValueError(f"unsupported device {device!r}: expected {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        why = "this torch is a CPU build" if torch.version.cuda is None else "no GPU is visible"
        raise ValueError(f"device {str(device)!r} asks for CUDA, but {why}; use device 'cpu' or 'auto'")
    if resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {str(device)!r}: this machine has {torch.cuda.device_count()} GPU(s), numbered from cuda:0"
        )
    return resolved
