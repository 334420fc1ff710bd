"""The equirectangular convention of DESIGN.md: pixel <-> unit direction.

For an H x W image, row r (0 = top) and column c:
``u = (c + 0.5) / W``, ``theta = pi (r + 0.5) / H`` (from +Z, the zenith),
``phi = 2 pi (0.5 - u)``, direction ``(sin theta cos phi, sin theta sin phi, cos theta)``.
The centre column looks along +X, u = 0.25 along +Y, the top row is the zenith, and
column W-1 neighbours column 0. This is Blender's equirectangular panoramic camera
rotated (90, 0, -90) degrees.
"""

from __future__ import annotations

import functools

import numpy as np


def angles_to_direction(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Unit directions [..., 3] for polar angle `theta` (from +Z) and longitude `phi`."""
    sin_theta = np.sin(theta)
    return np.stack(
        (sin_theta * np.cos(phi), sin_theta * np.sin(phi), np.cos(theta)), axis=-1
    ).astype(np.float32)


def pixel_to_direction(row: np.ndarray, col: np.ndarray, height: int, width: int) -> np.ndarray:
    """Unit directions [..., 3] of (possibly fractional) pixel indices; pixel centres at .0."""
    theta = np.pi * (np.asarray(row, dtype=np.float64) + 0.5) / height
    phi = 2.0 * np.pi * (0.5 - (np.asarray(col, dtype=np.float64) + 0.5) / width)
    return angles_to_direction(theta, phi)


def direction_to_pixel(direction: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Fractional (row, col) of unit directions [..., 3]; col in [-0.5, W - 0.5), wrapping."""
    d = np.asarray(direction, dtype=np.float64)
    theta = np.arccos(np.clip(d[..., 2] / np.linalg.norm(d, axis=-1), -1.0, 1.0))
    phi = np.arctan2(d[..., 1], d[..., 0])
    u = np.mod(0.5 - phi / (2.0 * np.pi), 1.0)
    return theta / np.pi * height - 0.5, u * width - 0.5


@functools.lru_cache(maxsize=8)
def _ray_directions_cached(height: int, width: int) -> np.ndarray:
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    rays = pixel_to_direction(rows, cols, height, width)
    rays.setflags(write=False)
    return rays


def ray_directions(height: int, width: int) -> np.ndarray:
    """Read-only float32 [H, W, 3] unit ray of every pixel of an H x W equirect image."""
    if height < 1 or width < 1:
        raise ValueError(f"equirect size must be positive, got {height}x{width}")
    return _ray_directions_cached(int(height), int(width))
