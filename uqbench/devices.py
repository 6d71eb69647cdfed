"""Compute device names (``cpu``, ``cuda``, ``cuda:N``, ``auto``): parsing and resolution.

Part of the contract: the harness passes a suite's ``device`` to every adapter whose
constructor takes ``device``, and the in-tree torch adapters resolve it with
:func:`resolve_device`. torch is imported only to answer a question about CUDA, so a
CPU-only run of numpy adapters never imports it here.
"""

from __future__ import annotations

import re

__all__ = ["DEVICE_PATTERN", "check_device_name", "resolve_device"]

# What a suite or ``--device`` may name. Adapters themselves accept any torch device string.
DEVICE_PATTERN = re.compile(r"cpu|auto|cuda(:\d+)?")


def check_device_name(name: object) -> str:
    """``name`` if it is ``cpu``, ``auto``, ``cuda`` or ``cuda:N``; else ValueError naming it."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise ValueError(f"device must be 'cpu', 'auto', 'cuda' or 'cuda:N', got {name!r}")
    return name


def resolve_device(name: str) -> str:
    """The concrete device for ``name``: ``auto`` is ``cuda`` when torch sees a GPU, else ``cpu``.

    Other names are returned unchanged after checking that a CUDA device exists.

    Raises
    ------
    ValueError
        ``cuda``/``cuda:N`` requested where torch sees no such device (the message says
        how many it sees).
    """
    if name == "cpu":
        return name
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            seen = "no CUDA device" if count == 0 else f"{count} CUDA device(s) (cuda:0..cuda:{count - 1})"
            raise ValueError(f"device {name!r} requested, but torch sees {seen}; use --device cpu or auto")
    return name
