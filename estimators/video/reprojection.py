"""Moving depth between posed equirect frames: what motion-compensated stabilisation is built on.

A `Pose` is (rotation, location) as the camera solve gives it (camera_motion): an image
direction d of the frame points along rotation @ d in the world, from `location`, in the
same units as the depth (shot units, or metres for metric input). Depth is inverse
distance (disparity) along each pixel's ray (DESIGN.md conventions).

- `forward_warp`: a frame's inverse-distance map carried into another frame's pixels
  by reprojecting its 3D points (splatted, the nearest surface kept), for building a
  reference: rotation is exact, translation uses the depth itself for the scale.
- `backward_sample`: for every pixel of a frame (with its own inverse distance), where
  its 3D point falls in another frame, that frame's values there, and the inverse
  distance the point should have seen from there, to check that the two agree.

A pixel with non-positive inverse distance is taken as infinitely far: it moves with
the rotation only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..panorama.equirect import ray_directions

FAR = 1e-9  # inverse distance below which a point is at infinity


@dataclass(frozen=True)
class Pose:
    """Camera rotation [3, 3] and location [3] (see the module docstring)."""

    rotation: np.ndarray
    location: np.ndarray

    @staticmethod
    def identity() -> Pose:
        return Pose(np.eye(3), np.zeros(3))

    def same_as(self, other: Pose, angle: float, distance: float) -> bool:
        """True when `other` differs by less than `angle` radians and `distance` units."""
        cos = (np.trace(self.rotation.T @ other.rotation) - 1.0) / 2.0
        return bool(np.arccos(np.clip(cos, -1.0, 1.0)) < angle
                    and np.linalg.norm(self.location - other.location) < distance)


@functools.lru_cache(maxsize=16)
def rays64(height: int, width: int) -> np.ndarray:
    """Unit ray directions [H, W, 3] of an equirect frame in float64, read-only and cached."""
    rays = ray_directions(height, width).astype(np.float64)
    rays.setflags(write=False)
    return rays


def _pixels(vectors: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Fractional (row, col) of direction vectors [..., 3] (not necessarily unit), pixel centres at integers."""
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    theta = np.arctan2(np.hypot(x, y), z)
    phi = np.arctan2(y, x)
    col = np.mod(0.5 - phi / (2.0 * np.pi), 1.0) * width - 0.5
    return theta / np.pi * height - 0.5, col


def _points_in(target: Pose, source: Pose, rays: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """Vectors from `target`'s centre to the points of `source` along `rays` at `inverse` distance, in target's frame."""
    relative = target.rotation.T @ source.rotation
    directions = rays @ relative.T
    far = inverse <= FAR
    offset = target.rotation.T @ (source.location - target.location)
    distance = np.where(far, 0.0, 1.0 / np.where(far, 1.0, inverse))
    # a far point moves with the rotation only: leave out the translation (its vector keeps unit scale)
    return np.where(far[..., None], directions, directions * distance[..., None] + offset)


def forward_warp(inverse: np.ndarray, valid: np.ndarray, source: Pose, target: Pose,
                 shape: tuple[int, int]) -> np.ndarray:
    """`inverse` [h, w] of the `source` frame seen from `target`, on a [H, W] = `shape` grid; NaN where nothing lands.

    Each source pixel's 3D point goes to the nearest target pixel; where several land,
    the nearest surface (largest inverse distance) wins.
    """
    height, width = inverse.shape
    rays = rays64(height, width)[valid]
    values = np.asarray(inverse, np.float64)[valid]
    vectors = _points_in(target, source, rays, values)
    norm = np.linalg.norm(vectors, axis=-1)
    far = values <= FAR
    seen = np.where(far, 0.0, 1.0 / np.maximum(norm, 1e-300))
    ahead = far | (norm > 0)
    rows, cols = _pixels(vectors, *shape)
    r = np.clip(np.round(rows).astype(np.int64), 0, shape[0] - 1)
    c = np.mod(np.round(cols).astype(np.int64), shape[1])
    out = np.full(shape[0] * shape[1], -np.inf)
    np.maximum.at(out, (r * shape[1] + c)[ahead], seen[ahead])
    return np.where(np.isfinite(out), out, np.nan).reshape(shape)


@dataclass(frozen=True)
class Sampled:
    """Another frame's values where this frame's points fall in it (backward_sample)."""

    inverse: np.ndarray   # its inverse distance there (bilinear)
    expected: np.ndarray  # the inverse distance this frame's point has from its camera
    carried: np.ndarray   # its surface there, as inverse distance from this frame's camera
    valid: np.ndarray     # where it was valid (nearest)
    colour: np.ndarray | None


def _remap(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, nearest: bool = False) -> np.ndarray:
    import cv2

    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.remap(values, cols.astype(np.float32), rows.astype(np.float32), interpolation,
                     borderMode=cv2.BORDER_WRAP)


def backward_sample(inverse: np.ndarray, pose: Pose, other_inverse: np.ndarray, other_valid: np.ndarray,
                    other_pose: Pose, other_colour: np.ndarray | None = None) -> Sampled:
    """For each pixel of a frame (its `inverse` [H, W] at `pose`), the other frame's values where its point falls."""
    height, width = inverse.shape
    rays = rays64(height, width)
    vectors = _points_in(other_pose, pose, rays, np.asarray(inverse, np.float64))
    norm = np.linalg.norm(vectors, axis=-1)
    far = inverse <= FAR
    expected = np.where(far, 0.0, 1.0 / np.maximum(norm, 1e-300))
    rows, cols = _pixels(vectors, height, width)
    sampled = _remap(np.asarray(other_inverse, np.float32), rows, cols).astype(np.float64)
    valid = _remap(np.asarray(other_valid, np.uint8), rows, cols, nearest=True) > 0
    colour = None if other_colour is None else _remap(other_colour, rows, cols)
    # the other frame's surface along that ray, seen from this frame's camera
    unit = vectors / np.maximum(norm, 1e-300)[..., None]
    surface_far = sampled <= FAR
    back = _points_in(pose, other_pose, unit, sampled)
    carried = np.where(surface_far, 0.0, 1.0 / np.maximum(np.linalg.norm(back, axis=-1), 1e-300))
    return Sampled(sampled.astype(np.float32), expected.astype(np.float32), carried.astype(np.float32),
                   valid & ~far, colour)


def rotate_grid(values: np.ndarray, valid: np.ndarray, source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A map [H, W] of a camera with rotation `source` as a camera at the same place with rotation `target` sees it.

    Nearest-pixel lookup (values are not blended across edges); returns (values, valid).
    """
    height, width = values.shape
    directions = rays64(height, width) @ (source.T @ target).T
    rows, cols = _pixels(directions, height, width)
    return (_remap(np.asarray(values, np.float64), rows, cols, nearest=True),
            _remap(np.asarray(valid, np.uint8), rows, cols, nearest=True) > 0)
