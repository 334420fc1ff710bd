"""How much of a frame's trip fits the device at once, and what happens when it does not.

`plan_batches` sizes two batches from the device's memory: frames per call of the device
trip (each frame brings its own full-size tensors: the frame, its padded copy, the
footprint samples of blending, the fused maps) and views per network call (each view
brings the network's activations). The layout's fixed tensors (sampling grids, footprints)
and the network's weights are paid once. Everything is counted from the sizes alone, with
a safety margin for the allocator's fragmentation and the libraries' workspaces, so a plan
can be made for any card, a simulated one included (`capacity_bytes`).

`run_batched` runs a step over items in batches and, when the device runs out of memory,
frees the cache and retries with half the batch, down to one item; only a single item that
does not fit is an error (DeviceMemoryError, a clear message, never a traceback).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..errors import Depth360Error

# Share of the device's memory the plan may use (the rest: fragmentation, cuDNN/cuBLAS workspaces).
USABLE_SHARE = 0.8
# Bytes per footprint entry (grid 8, pixel index 8, weight 4, take index 8) and per blended
# sample in flight (value, weighted value, sampled mask: float32 each, and a temporary).
FOOTPRINT_ENTRY_BYTES = 28
SAMPLE_BYTES = 16
# Full-size float32 planes a frame holds at once on the device: RGB (3) and its padded copy (3),
# the projection's channel-first copy (3), merged, weight sum, total, sky, mask, distance (5).
FRAME_PLANES = 14
# Footprint entries per panorama pixel: overlapping views see some pixels twice (cube 110 deg
# about 1.35, ico 90 deg about 2.6); the padded batch adds a little.
OVERLAP = {"cube": 1.5, "ico": 3.0, "equirect": 1.05}
# Activation memory of one 518 x 518 view through the network at fp16/bf16, by the network's
# size (parameters): a conservative reading of Depth Anything V2 S/B/L's inference peaks; fp32
# doubles it, other sides scale with the pixel count. On a CUDA device the trip measures the
# real figure on its first batch (`measured_view_bytes`) and plans with that.
VIEW_BYTES_BY_PARAMS = ((50e6, 160 * 2**20), (150e6, 320 * 2**20), (float("inf"), 720 * 2**20))


class DeviceMemoryError(Depth360Error):
    """Even one frame (or one view through the network) does not fit the device's memory."""


@dataclass(frozen=True)
class BatchPlan:
    """Frames per device-trip call, views per network call, and the bytes the plan expects."""

    frames: int
    views: int
    fixed_bytes: int
    frame_bytes: int
    view_bytes: int
    capacity_bytes: int

    @property
    def peak_bytes(self) -> int:
        return self.fixed_bytes + self.frames * self.frame_bytes + self.views * self.view_bytes


def device_capacity(device: torch.device) -> int | None:
    """Total memory of a CUDA device in bytes (None elsewhere: no plan needed)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return None


def network_view_bytes(parameters: int, side: int, precision: str = "fp16") -> int:
    """Expected activation memory of one `side` x `side` view through a network of `parameters`."""
    per_view = next(size for limit, size in VIEW_BYTES_BY_PARAMS if parameters < limit)
    factor = (side / 518.0) ** 2 * (2.0 if precision == "fp32" else 1.0)
    return int(per_view * factor)


def plan_batches(height: int, width: int, n_views: int, view_side: int, *, preset: str = "cube",
                 weights_bytes: int = 0, view_bytes: int | None = None, capacity_bytes: int,
                 max_frames: int = 8, max_views: int = 64) -> BatchPlan:
    """The largest batches whose expected peak fits USABLE_SHARE of `capacity_bytes`.

    Views get priority up to one frame's views (the network is the frame's main cost),
    then frames, then more views. DeviceMemoryError if one frame and one view do not fit.
    """
    pixels = height * width
    entries = int(pixels * OVERLAP.get(preset, 3.0))
    fixed = weights_bytes + entries * FOOTPRINT_ENTRY_BYTES + n_views * view_side * view_side * 3 * 4 * 2
    frame = pixels * 4 * FRAME_PLANES + entries * SAMPLE_BYTES + n_views * view_side * view_side * 4 * 8
    view = view_bytes if view_bytes is not None else network_view_bytes(100_000_000, view_side)
    budget = int(capacity_bytes * USABLE_SHARE) - fixed
    if budget < frame + view:
        raise DeviceMemoryError(
            f"a {width}x{height} frame needs about {(fixed + frame + view) / 2**30:.1f} GiB of device memory, "
            f"the device has {capacity_bytes / 2**30:.1f} GiB: use a smaller frame or --device cpu")
    views = max(1, min(n_views, max_views, (budget - frame) // view))
    frames = max(1, min(max_frames, (budget - views * view) // frame))
    views = max(1, min(max_views, frames * n_views, (budget - frames * frame) // view))
    return BatchPlan(int(frames), int(views), int(fixed), int(frame), int(view), int(capacity_bytes))


def is_out_of_memory(error: BaseException) -> bool:
    """True for torch's out-of-memory errors (CUDA, MPS, or the CPU allocator's)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def free_cache(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.empty_cache()


def run_batched(step: Callable[[Sequence], list], items: Sequence, batch: int, *,
                device: torch.device | None = None, what: str = "batch",
                on_shrink: Callable[[int], None] | None = None) -> list:
    """step(items[i:j]) over consecutive batches of at most `batch`, results concatenated.

    On out-of-memory the batch is halved (and `on_shrink(new_batch)` told, so later calls
    start there) and the same items are tried again; one item that does not fit raises
    DeviceMemoryError.
    """
    results: list = []
    start = 0
    batch = max(1, int(batch))
    while start < len(items):
        stop = min(start + batch, len(items))
        try:
            results.extend(step(items[start:stop]))
        except Exception as error:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
            if not is_out_of_memory(error):
                raise
            free_cache(device)
            if stop - start == 1:
                raise DeviceMemoryError(f"out of device memory for a single {what}: {error}") from None
            batch = max(1, (stop - start) // 2)
            if on_shrink is not None:
                on_shrink(batch)
            continue
        start = stop
    return results
