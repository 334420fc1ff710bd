"""Pixels at infinity on a torch device (panorama.infinity's rules).

The per-pixel work stays on the device: the fused disparity brought to the work size, its
floor band, the metric ceiling, the flatness test, masks through the views, the result
brought back to the frame. Two parts stay on the host, as the reference computes them:
the picture at the work size (`cv2.resize` INTER_AREA of the frame, which the host holds
anyway, started on a worker thread as soon as a batch arrives, so it overlaps the device
work) and the connected-component labelling of the sky (`infinity.connected_sky`, the
reference's own function on a frame at most WORK_HEIGHT rows high: sequential by nature,
a few milliseconds, and the same answer bit for bit).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..panorama import infinity
from ..panorama.projection import View
from . import stats
from .geometry import nearest_pixels


def work_size(height: int, width: int) -> tuple[int, int]:
    """(width, height) find_sky works at (infinity.WORK_HEIGHT rows at most)."""
    scale = min(1.0, infinity.WORK_HEIGHT / height)
    return max(2, round(width * scale)), max(1, round(height * scale))


def work_picture(rgb: np.ndarray) -> np.ndarray:
    """The frame at the work size, as find_sky makes it (host, OpenCV)."""
    import cv2

    height, width = rgb.shape[:2]
    return cv2.resize(np.asarray(rgb, np.float32), work_size(height, width), interpolation=cv2.INTER_AREA)


@functools.lru_cache(maxsize=16)
def _nearest_index(source: int, target: int) -> np.ndarray:
    """The source index cv2.resize INTER_NEAREST reads for each of `target` outputs (found by asking it)."""
    import cv2

    ramp = np.arange(source, dtype=np.float32)[None, :]
    return cv2.resize(ramp, (target, 1), interpolation=cv2.INTER_NEAREST)[0].astype(np.int64)


def _resize_nearest(values: torch.Tensor, width: int, height: int) -> torch.Tensor:
    rows = torch.from_numpy(_nearest_index(values.shape[0], height)).to(values.device)
    cols = torch.from_numpy(_nearest_index(values.shape[1], width)).to(values.device)
    return values[rows][:, cols]


def is_flat(maps: torch.Tensor) -> bool:
    """infinity.is_flat on [V, h, w]: every map's 0.5..99.5th percentile range under FLAT_OUTPUT of its level."""
    for values in maps:
        finite = values[torch.isfinite(values)]
        if finite.numel() == 0:
            continue
        low, high = stats.percentiles(finite, [0.5, 99.5])
        if high - low > infinity.FLAT_OUTPUT * max(abs(float(low)), abs(float(high)), 1e-12):
            return False
    return True


def find_sky(disparity: torch.Tensor, valid: torch.Tensor, picture: np.ndarray, flat_output: bool,
             rgb: np.ndarray) -> torch.Tensor:
    """infinity.find_sky: bool [H, W] on the device. `picture`: work_picture(rgb)."""
    height, width = disparity.shape
    if not bool(valid.any()):
        return torch.zeros((height, width), dtype=torch.bool, device=disparity.device)
    if flat_output:  # nothing to see depth in, perhaps: the reference decides, on the host
        sky = infinity.find_sky(disparity.cpu().numpy(), valid.cpu().numpy(), rgb, flat_output=True)
        return torch.from_numpy(sky).to(disparity.device)
    size = work_size(height, width)
    nan = torch.tensor(float("nan"), dtype=torch.float32, device=disparity.device)
    small = _resize_nearest(torch.where(valid, disparity.to(torch.float32), nan), *size)
    known = torch.isfinite(small)
    low, high = stats.percentiles(small[known], [0.5, 99.5])
    threshold = np.float32(low + infinity.FLOOR_BAND * max(float(high - low), 1e-12))
    candidates = known & (small <= float(threshold))
    sky = torch.from_numpy(infinity.connected_sky(candidates.cpu().numpy(), picture)).to(disparity.device)
    if size == (width, height):
        return sky
    return _resize_nearest(sky, width, height)


def beyond_range(depth: torch.Tensor, max_depth: float | None) -> torch.Tensor:
    """infinity.beyond_range: metric output at infinity (not finite, not positive, at the ceiling)."""
    out = ~torch.isfinite(depth) | (depth <= 0)
    if max_depth:
        out |= depth >= infinity.METRIC_CEILING * float(max_depth)
    return out


def sample_mask(mask: torch.Tensor, views: tuple[View, ...]) -> torch.Tensor:
    """infinity.sample_mask for every view: bool [V, h, w] (nearest pixel)."""
    height, width = mask.shape
    return mask.reshape(-1)[nearest_pixels(tuple(views), height, width, mask.device)]
