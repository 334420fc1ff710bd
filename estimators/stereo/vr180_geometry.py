"""VR180 stereo: two parallel half-equirect eyes, their rectification, disparity <-> distance.

The VR180 layout (DESIGN.md): side by side, each eye a half equirect of 180 x 180 degrees
(W x W pixels), left eye on the left, centre looking along +X. A half-equirect pixel (r, c)
looks along the equirect direction of ``theta = pi (r + 0.5) / W`` (from the zenith) and
``phi = pi (0.5 - (c + 0.5) / W)`` (column 0 looks along +Y, the last one along -Y): the
middle half of a full equirect image of the same pixel size.

Camera model (a VR180 camera after its lens calibration, and Blender's ordinary stereo
camera with a panoramic camera limited to 180 degrees): two eyes with parallel axes, the
left eye at ``+Y b/2`` and the right at ``-Y b/2`` (b = the interpupillary distance; +Y is
to the left of a viewer looking along +X). Depth belongs to the left eye: the distance of a
left-eye pixel is measured from the left eye's centre along its ray.

Rectification. Every plane through the baseline (the Y axis) is an epipolar plane. The
rectified image of an eye is the same half sphere parametrised about the baseline: row ``r``
holds the plane at angle ``beta = pi (0.5 - (r + 0.5) / W)`` about the Y axis (from -Z
through +X to +Z), column ``c`` the angle ``gamma = pi (0.5 - (c + 0.5) / W)`` within that
plane from the plane's forward direction toward +Y::

    direction(beta, gamma) = (cos gamma cos beta, sin gamma, cos gamma sin beta)

A point is on the same row in both rectified eyes, and its columns differ by the angular
disparity ``delta = gamma_R - gamma_L > 0`` (the left eye sees a near point further right,
col_L > col_R, as in rectified perspective stereo). By the sine rule in the triangle of the
two eyes and the point, its distance from the left eye is::

    d_L = b cos(gamma_L + delta) / sin(delta)

Toward the epipoles (+-Y, the left and right edges of the rectified image) the disparity of
every distance falls to zero: stereo says less and less there, and the mask says so.
"""

from __future__ import annotations

import functools

import numpy as np


def half_equirect_angles(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(theta [size], phi [size]): polar angle of each row and longitude of each column of a
    size x size half-equirect eye."""
    centres = (np.arange(size) + 0.5) / size
    return np.pi * centres, np.pi * (0.5 - centres)


def half_equirect_directions(size: int) -> np.ndarray:
    """float64 [size, size, 3]: the unit direction of each pixel of a half-equirect eye."""
    theta, phi = half_equirect_angles(size)
    theta, phi = theta[:, None], phi[None, :]
    sin_theta = np.sin(theta)
    return np.stack(np.broadcast_arrays(sin_theta * np.cos(phi), sin_theta * np.sin(phi), np.cos(theta)), axis=-1)


def rectified_angles(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(beta [size], gamma [size]): the epipolar plane of each row and the in-plane angle of
    each column of a size x size rectified eye (radians, see the module docstring)."""
    centres = (np.arange(size) + 0.5) / size
    angles = np.pi * (0.5 - centres)
    return angles, angles


def rectified_directions(size: int) -> np.ndarray:
    """float64 [size, size, 3]: the unit direction of each pixel of a rectified eye."""
    beta, gamma = rectified_angles(size)
    beta, gamma = beta[:, None], gamma[None, :]
    cos_gamma = np.cos(gamma)
    return np.stack(np.broadcast_arrays(cos_gamma * np.cos(beta), np.sin(gamma), cos_gamma * np.sin(beta)), axis=-1)


def _half_equirect_pixel(directions: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Fractional (row, column) of unit `directions` in a size x size half-equirect eye."""
    theta = np.arccos(np.clip(directions[..., 2], -1.0, 1.0))
    phi = np.arctan2(directions[..., 1], directions[..., 0])
    return theta / np.pi * size - 0.5, (0.5 - phi / np.pi) * size - 0.5


def _rectified_pixel(directions: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Fractional (row, column) of unit `directions` in a size x size rectified eye."""
    gamma = np.arcsin(np.clip(directions[..., 1], -1.0, 1.0))
    beta = np.arctan2(directions[..., 2], directions[..., 0])
    return (0.5 - beta / np.pi) * size - 0.5, (0.5 - gamma / np.pi) * size - 0.5


@functools.lru_cache(maxsize=8)
def rectify_maps(size: int, rectified_size: int) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (x, y float32 [rectified_size, rectified_size]) that sample a size x size
    half-equirect eye at the rectified eye's pixels."""
    rows, cols = _half_equirect_pixel(rectified_directions(rectified_size), size)
    return cols.astype(np.float32), rows.astype(np.float32)


@functools.lru_cache(maxsize=8)
def unrectify_maps(size: int, rectified_size: int) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (x, y float32 [size, size]) that sample a rectified eye at the pixels of a
    size x size half-equirect eye."""
    rows, cols = _rectified_pixel(half_equirect_directions(size), rectified_size)
    return cols.astype(np.float32), rows.astype(np.float32)


def rectify(eye: np.ndarray, rectified_size: int | None = None, interpolation: str = "cubic") -> np.ndarray:
    """A half-equirect eye [W, W(, C)] resampled onto its rectified grid (rows are epipolar lines)."""
    import cv2

    size = eye.shape[0]
    if eye.shape[1] != size:
        raise ValueError(f"a VR180 eye must be square, got {eye.shape[1]}x{eye.shape[0]}")
    map_x, map_y = rectify_maps(size, int(rectified_size or size))
    flag = cv2.INTER_CUBIC if interpolation == "cubic" else cv2.INTER_LINEAR
    return cv2.remap(np.ascontiguousarray(eye), map_x, map_y, flag, borderMode=cv2.BORDER_REPLICATE)


def unrectify(image: np.ndarray, size: int, interpolation: str = "linear") -> np.ndarray:
    """A rectified map [R, R(, C)] resampled at the pixels of a size x size half-equirect eye."""
    import cv2

    map_x, map_y = unrectify_maps(size, image.shape[0])
    flag = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}[interpolation]
    return cv2.remap(np.ascontiguousarray(image), map_x, map_y, flag, borderMode=cv2.BORDER_REPLICATE)


def _check_baseline(ipd: float) -> None:
    if not ipd > 0:
        raise ValueError(f"ipd (the stereo baseline) must be positive metres, got {ipd}")


def vr180_distance_from_disparity(disparity_rad: np.ndarray, gamma: np.ndarray, *, ipd: float = 0.064,
                                  max_distance: float = 100.0) -> np.ndarray:
    """Distance from the left eye of a rectified left-eye pixel at in-plane angle `gamma` whose
    angular disparity is ``gamma_R - gamma_L``; disparities at or beyond infinity give `max_distance`."""
    _check_baseline(ipd)
    delta = np.asarray(disparity_rad)
    dtype = np.float32 if delta.dtype == np.float32 else np.float64
    delta = delta.astype(dtype, copy=False)
    gamma = np.asarray(gamma, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        distance = ipd * np.cos(gamma + delta) / np.sin(delta)
    finite = (delta > 0) & (gamma + delta < np.pi / 2) & np.isfinite(distance) & (distance > 0)
    return np.where(finite, np.minimum(distance, max_distance), max_distance).astype(dtype, copy=False)


def vr180_disparity_from_distance(distance: np.ndarray, gamma: np.ndarray, *, ipd: float = 0.064) -> np.ndarray:
    """Angular disparity ``gamma_R - gamma_L`` of a rectified left-eye pixel at in-plane angle
    `gamma` whose ray hits a surface `distance` from the left eye (inverse of the above)."""
    _check_baseline(ipd)
    distance = np.asarray(distance, dtype=np.float64)
    gamma = np.asarray(gamma, dtype=np.float64)
    forward, sideways = distance * np.cos(gamma), distance * np.sin(gamma)  # in the epipolar plane
    return np.arctan2(sideways + ipd, forward) - gamma


def eye_positions(ipd: float = 0.064) -> tuple[np.ndarray, np.ndarray]:
    """World positions of the (left, right) eye centres relative to the rig's centre."""
    _check_baseline(ipd)
    return np.array([0.0, ipd / 2, 0.0]), np.array([0.0, -ipd / 2, 0.0])
