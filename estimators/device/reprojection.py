"""video.reprojection's per-pixel work and video.temporal's point samples on a torch device.

The host samples with `cv2.remap` (BORDER_WRAP): coordinates rounded to 1/32 pixel, OpenCV's
bilinear weights of that grid, float32 sums in its order for float maps, 15-bit fixed point
for 8-bit colour, round half to even for the nearest pixel. The reads here take the same
taps with the same weights, so they give cv2's values (the float64 geometry before them
differs from numpy's by an ulp or so, which moves a coordinate across a 1/32 step only
rarely).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..video.reprojection import FAR, Pose, rays64
from .sampler import INTER_TAB_SIZE, WEIGHTS, cv2_taps

FIXED_SCALE = 1 << 15  # OpenCV's INTER_REMAP_COEF_SCALE: 8-bit images are interpolated in 15-bit fixed point


@functools.lru_cache(maxsize=4)
def _rays(height: int, width: int, device) -> torch.Tensor:
    """reprojection.rays64 on the device: float64 [H, W, 3]."""
    return torch.tensor(rays64(height, width), device=device)


@functools.lru_cache(maxsize=4)
def _tables(device) -> tuple[torch.Tensor, torch.Tensor]:
    weights = torch.from_numpy(WEIGHTS).to(device)
    return weights, torch.round(weights.to(torch.float64) * FIXED_SCALE).to(torch.int32)


def sample_points(values: torch.Tensor, xy: np.ndarray) -> np.ndarray:
    """temporal.sample_at for a map [H, W] on the device: cv2.remap's bilinear values (BORDER_WRAP) at
    continuous (x, y) [N, 2] (pixel centres at c + 0.5), float32 on the host."""
    height, width = values.shape
    xy = np.asarray(xy, np.float32).reshape(-1, 2) - np.float32(0.5)
    cols, rows, weights = cv2_taps(xy[:, 0], xy[:, 1])
    index = np.mod(rows, height) * width + np.mod(cols, width)
    taps = values.reshape(-1).to(torch.float32)[torch.from_numpy(index).to(values.device)]
    w = torch.from_numpy(weights).to(values.device)
    out = taps[:, 0] * w[:, 0]
    for k in range(1, 4):
        out = out + taps[:, k] * w[:, k]
    return out.cpu().numpy()


def _taps(rows: torch.Tensor, cols: torch.Tensor, height: int, width: int):
    """cv2's bilinear taps of float32 coordinates: flat indices [4, ...] (wrapped) and the 1/32 grid code."""
    qx = torch.round(cols.to(torch.float32) * INTER_TAB_SIZE).to(torch.int64)
    qy = torch.round(rows.to(torch.float32) * INTER_TAB_SIZE).to(torch.int64)
    ix, iy = qx >> 5, qy >> 5
    code = (qy & (INTER_TAB_SIZE - 1)) * INTER_TAB_SIZE + (qx & (INTER_TAB_SIZE - 1))
    x0, x1 = torch.remainder(ix, width), torch.remainder(ix + 1, width)
    y0, y1 = torch.remainder(iy, height) * width, torch.remainder(iy + 1, height) * width
    return (y0 + x0, y0 + x1, y1 + x0, y1 + x1), code


def remap_linear(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """cv2.remap(values, cols, rows, INTER_LINEAR, BORDER_WRAP) for a float32 map [H, W] or 8-bit
    colour [H, W, C] on the device; float32 or uint8 [*rows.shape(, C)]."""
    height, width = values.shape[:2]
    indices, code = _taps(rows, cols, height, width)
    weights, fixed = _tables(values.device)
    flat = values.reshape(height * width, -1)
    if values.dtype == torch.uint8:
        total = None
        for k, index in enumerate(indices):
            term = flat[index].to(torch.int32) * fixed[code, k].unsqueeze(-1)
            total = term if total is None else total.add_(term)
        out = ((total + FIXED_SCALE // 2) >> 15).clamp_(0, 255).to(torch.uint8)
    else:
        out = None
        for k, index in enumerate(indices):
            term = flat[index].to(torch.float32) * weights[code, k].unsqueeze(-1)
            out = term if out is None else out.add_(term)
    return out if values.dim() == 3 else out[..., 0]


def remap_nearest(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """cv2.remap(values, cols, rows, INTER_NEAREST, BORDER_WRAP) of a map [H, W] on the device."""
    height, width = values.shape
    col = torch.remainder(torch.round(cols.to(torch.float32)).to(torch.int64), width)
    row = torch.remainder(torch.round(rows.to(torch.float32)).to(torch.int64), height)
    return values.reshape(-1)[row * width + col]


def _matrix(values: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, np.float64), device=device)


def _points_in(target: Pose, source: Pose, rays: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """reprojection._points_in on the device (float64)."""
    device = rays.device
    relative = _matrix(target.rotation.T @ source.rotation, device)
    directions = rays @ relative.T
    far = inverse <= FAR
    offset = _matrix(target.rotation.T @ (source.location - target.location), device)
    distance = torch.where(far, 0.0, 1.0 / torch.where(far, 1.0, inverse))
    return torch.where(far.unsqueeze(-1), directions, directions * distance.unsqueeze(-1) + offset)


def _pixels(vectors: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, z = vectors.unbind(-1)
    theta = torch.atan2(torch.hypot(x, y), z)
    phi = torch.atan2(y, x)
    col = torch.remainder(0.5 - phi / (2.0 * np.pi), 1.0) * width - 0.5
    return theta / np.pi * height - 0.5, col


def backward_sample(inverse: torch.Tensor, pose: Pose, other_inverse: torch.Tensor, other_valid: torch.Tensor,
                    other_pose: Pose, other_colour: torch.Tensor):
    """reprojection.backward_sample on the device: (inverse, expected, carried, valid, colour) of the
    other frame where this frame's points fall (float32 maps, bool, uint8 colour)."""
    height, width = inverse.shape
    rays = _rays(height, width, inverse.device)
    inverse64 = inverse.to(torch.float64)
    vectors = _points_in(other_pose, pose, rays, inverse64)
    norm = torch.linalg.vector_norm(vectors, dim=-1)
    far = inverse64 <= FAR
    expected = torch.where(far, 0.0, 1.0 / torch.clamp(norm, min=1e-300))
    rows, cols = _pixels(vectors, height, width)
    rows, cols = rows.to(torch.float32), cols.to(torch.float32)
    sampled = remap_linear(other_inverse.to(torch.float32), rows, cols).to(torch.float64)
    valid = remap_nearest(other_valid, rows, cols)
    colour = remap_linear(other_colour, rows, cols)
    unit = vectors / torch.clamp(norm, min=1e-300).unsqueeze(-1)
    back = _points_in(pose, other_pose, unit, sampled)
    carried = torch.where(sampled <= FAR, 0.0, 1.0 / torch.clamp(torch.linalg.vector_norm(back, dim=-1), min=1e-300))
    return (sampled.to(torch.float32), expected.to(torch.float32), carried.to(torch.float32), valid & ~far, colour)
