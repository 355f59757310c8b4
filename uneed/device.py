"""Numeric precision on a device: the one rule that training and inference (CRS and LLM) share.

torch is imported when it is used, so the data layer stays importable without it."""
from __future__ import annotations

from contextlib import nullcontext


def autocast(device, bf16: bool | None = None):
    """bf16 autocast on a GPU that supports it (the default there); full precision on CPU."""
    import torch

    use = (device.type == "cuda" and torch.cuda.is_bf16_supported()) if bf16 is None else bf16
    if use and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()
