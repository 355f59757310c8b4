"""Numeric precision and kernel choice on a device: the one rule that training and inference (CRS and LLM) share.

torch is imported when it is used, so the data layer stays importable without it."""
from __future__ import annotations

from contextlib import nullcontext

# On a GPU every batch is padded to a multiple of this many tokens: attention and GEMM kernels are chosen (and
# cuDNN builds a plan) per tensor shape, and variable-length batches make hundreds of shapes. On CPU padding is
# pure extra work, so batches stay as long as their longest sample.
CUDA_PAD_MULTIPLE = 64

_cuda_ready = False


def pad_multiple(device) -> int:
    """The length multiple that batches on `device` are padded to (1: no rounding)."""
    return CUDA_PAD_MULTIPLE if getattr(device, "type", str(device).split(":")[0]) == "cuda" else 1


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple if multiple > 1 else n


def prepare_cuda() -> None:
    """Once per process: TF32 matmuls for fp32 work, and no cuDNN attention backend (it builds a graph for
    each new shape, which left the GPU idle in profiles; flash and memory-efficient kernels need no plan)."""
    global _cuda_ready
    if _cuda_ready:
        return
    import torch

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if hasattr(torch.backends.cuda, "enable_cudnn_sdp"):
        torch.backends.cuda.enable_cudnn_sdp(False)
    _cuda_ready = True


def cpu_bf16_matmul() -> bool:
    """Whether this CPU has bfloat16 matrix units (AMX tiles), where a bf16 prompt pass pays: 1.6x on
    a 900-token prompt of the embedded LLM on one core of this project's machine (README, replay speed)."""
    import torch

    check = getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", None)
    return bool(check and check())


def autocast(device, bf16: bool | None = None):
    """bf16 autocast: by default on a GPU that supports it, and on CPU only when asked (bf16=True). On CPU it
    pays only for large matrix products on CPUs with AMX or AVX512-BF16 units: on this project's 2-core
    machine a bare 8x384-token training step of the embedded LLM ran 1.5x faster, but its instruction
    tuning (short prompts) ran no faster and learned the same (README)."""
    import torch

    if device.type == "cuda":
        prepare_cuda()
    use = (device.type == "cuda" and torch.cuda.is_bf16_supported()) if bf16 is None else bf16
    if use and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()
