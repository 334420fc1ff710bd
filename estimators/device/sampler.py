"""Bilinear sampling on a torch device that matches OpenCV's `remap`, and equirect padding.

The numpy reference samples with `cv2.remap` (INTER_LINEAR, BORDER_REPLICATE), which does not
interpolate at the exact coordinate: it rounds each coordinate to 1/32 of a pixel
(`INTER_BITS` = 5) and uses the weights of that grid. At a depth edge the difference from
exact bilinear interpolation reaches 1/64 of the step, far more than the 1e-4 the device
trip must agree within. So the grids here are rounded the same way (round half to even, as
OpenCV's `cvRound`) before `grid_sample` (bilinear, border padding = replicate) reads them.
What remains is the float32 arithmetic of the normalised grid: about 1e-7 of the source's
width, in pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

INTER_TAB_SIZE = 32  # OpenCV's remap grid: 1 / 32 pixel


def quantised(coordinate: np.ndarray) -> np.ndarray:
    """float64 coordinates rounded to OpenCV remap's 1/32 pixel grid (from its float32 maps)."""
    scaled = np.asarray(coordinate, dtype=np.float32).astype(np.float64) * INTER_TAB_SIZE
    return np.rint(scaled) / INTER_TAB_SIZE


def make_grid(x: np.ndarray, y: np.ndarray, height: int, width: int, device, offset: float = 0.0) -> torch.Tensor:
    """A `grid_sample` grid [1, 1, P, 2] for pixel coordinates (x, y) (flat, float32 as cv2 gets
    them) in a source `height` x `width`, less `offset` after rounding (cv2 read a source padded
    by `offset` pixels, the grid reads the unpadded one); align_corners=True normalisation."""
    gx = (quantised(x).reshape(-1) - offset) * (2.0 / max(width - 1, 1)) - 1.0
    gy = (quantised(y).reshape(-1) - offset) * (2.0 / max(height - 1, 1)) - 1.0
    grid = np.stack((gx, gy), axis=-1).astype(np.float32)
    return torch.from_numpy(grid).reshape(1, 1, -1, 2).to(device)


def cv2_taps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV remap's bilinear taps of float32 coordinates: (columns [P, 4], rows [P, 4], weights [P, 4]
    float32), taps in the order top-left, top-right, bottom-left, bottom-right."""
    qx = np.rint(np.asarray(x, np.float32).astype(np.float64) * INTER_TAB_SIZE).astype(np.int64).reshape(-1)
    qy = np.rint(np.asarray(y, np.float32).astype(np.float64) * INTER_TAB_SIZE).astype(np.int64).reshape(-1)
    ix, iy = qx >> 5, qy >> 5
    fx = ((qx & (INTER_TAB_SIZE - 1)) / INTER_TAB_SIZE).astype(np.float32)
    fy = ((qy & (INTER_TAB_SIZE - 1)) / INTER_TAB_SIZE).astype(np.float32)
    one = np.float32(1.0)
    cols = np.stack((ix, ix + 1, ix, ix + 1), axis=1)
    rows = np.stack((iy, iy, iy + 1, iy + 1), axis=1)
    weights = np.stack(((one - fy) * (one - fx), (one - fy) * fx, fy * (one - fx), fy * fx), axis=1)
    return cols, rows, weights


def sample(source: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample `source` [N, C, h, w] at `grid` [N or 1, 1, P, 2]: [N, C, P] (as cv2.remap would)."""
    if grid.shape[0] != source.shape[0]:
        grid = grid.expand(source.shape[0], *grid.shape[1:])
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[:, :, 0, :]


def pad_equirect(frames: torch.Tensor, pad: int = 2) -> torch.Tensor:
    """projection.pad_equirect on [N, C, H, W] (any strides): columns wrap, rows past a pole are
    the rows just before it, half a turn away in longitude. One copy of the frames."""
    height, width = frames.shape[-2:]
    if pad > height:
        raise ValueError(f"equirect image of {height} rows is too small to pad by {pad}")
    half = width // 2
    out = torch.empty((*frames.shape[:-2], height + 2 * pad, width + 2 * pad), dtype=frames.dtype,
                      device=frames.device)
    body = out[..., pad:pad + width]
    body[..., pad:pad + height, :] = frames
    for row in range(pad):  # padded row `row` is frame row pad-1-row; the bottom ones mirror the last rows
        top, bottom = frames[..., pad - 1 - row, :], frames[..., height - 1 - row, :]
        body[..., row, :half], body[..., row, half:] = top[..., width - half:], top[..., :width - half]
        below = pad + height + row
        body[..., below, :half], body[..., below, half:] = bottom[..., width - half:], bottom[..., :width - half]
    out[..., :pad] = body[..., width - pad:]
    out[..., pad + width:] = body[..., :pad]
    return out
