"""Which device and precision a network runs with: an explicit, visible choice.

`auto` takes CUDA, then Apple's MPS, then the CPU. An explicitly named device that is
not available is an error, never a silent fallback. On a GPU, `auto` precision runs
the network under float16 autocast; on the CPU it is always float32 (the official
models' own precision, and the one the reference fixtures are checked in).
"""

from __future__ import annotations

import contextlib
from typing import Literal

from ..errors import BadInputError

DeviceName = Literal["auto", "cpu", "cuda", "mps"]
PrecisionName = Literal["auto", "fp32", "fp16", "bf16"]
DEVICE_NAMES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
PRECISION_NAMES: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def choose_device(name: str = "auto"):
    """The torch.device for `name` (auto, cpu, cuda, cuda:N, mps); BadInputError if unavailable."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":", 1)[0]
    if kind == "cpu" and name == "cpu":
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise BadInputError(f"device {name!r} was asked for, but torch sees no CUDA GPU")
        try:
            device = torch.device(name)
        except RuntimeError:
            raise BadInputError(f"device {name!r} is not a valid CUDA device name") from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BadInputError(
                f"device {name!r} was asked for, but torch sees {torch.cuda.device_count()} CUDA GPU(s)"
            )
        return device
    if kind == "mps" and name == "mps":
        if not _mps_available():
            raise BadInputError("device 'mps' was asked for, but Apple MPS is not available")
        return torch.device("mps")
    raise BadInputError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_NAMES)}")


def choose_precision(device, name: str = "auto"):
    """The compute dtype for `device`: auto is float16 on a GPU, float32 on the CPU."""
    import torch

    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if name == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if name not in dtypes:
        raise BadInputError(f"unknown precision {name!r}; choose one of {', '.join(PRECISION_NAMES)}")
    if device.type == "cpu" and name != "fp32":
        raise BadInputError(f"precision {name!r} is for GPUs; on the CPU the engine runs fp32")
    return dtypes[name]


def autocast(device, dtype):
    """A context running the network in `dtype` on `device` (a no-op for float32)."""
    import torch

    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def precision_label(dtype) -> str:
    """fp32, fp16 or bf16, for sidecars and messages."""
    return {"torch.float32": "fp32", "torch.float16": "fp16", "torch.bfloat16": "bf16"}[str(dtype)]
