"""Host <-> device copies that do not stall a CUDA device: pinned buffers, non-blocking copies.

On a CUDA device an upload goes through page-locked (pinned) host memory, copied with
`non_blocking=True`, so the host thread goes on queueing work while the DMA runs; a
download lands in pinned memory the same way and is waited for only when the host reads
it. Pinned buffers come from torch's caching host allocator, which reuses a buffer only
after the copies recorded on it have finished. On the CPU (and MPS) both are plain,
synchronous copies (on the CPU: none at all, the tensor shares the array's memory).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch


def upload(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """`array` as a tensor on `device` (non-blocking through pinned memory on CUDA)."""
    array = np.ascontiguousarray(array)
    if device.type != "cuda":
        with warnings.catch_warnings():  # a read-only array (a cached frame): the trip never writes to it
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(array).to(device)
    pinned = torch.empty(array.shape, dtype=torch.from_numpy(array[:0]).dtype, pin_memory=True)
    pinned.numpy()[...] = array
    return pinned.to(device, non_blocking=True)


@dataclass
class Download:
    """A device -> host copy in flight; `array()` waits for it and returns the numpy array."""

    host: torch.Tensor
    event: object | None = None

    def array(self) -> np.ndarray:
        if self.event is not None:
            self.event.synchronize()
            self.event = None
        return self.host.numpy()


def download(tensor: torch.Tensor) -> Download:
    """Start copying `tensor` to the host (pinned memory, non-blocking on CUDA)."""
    if tensor.device.type != "cuda":
        return Download(tensor.detach().cpu())
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    with torch.cuda.device(tensor.device):  # the event belongs to the tensor's device and stream
        host.copy_(tensor, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(tensor.device))
    return Download(host, event)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (for stage timings); a no-op off CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
