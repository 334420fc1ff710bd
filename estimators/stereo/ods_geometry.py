"""Disparity <-> distance for omni-directional stereo (ODS) and rectified perspective stereo.

ODS camera model (Blender Cycles' spherical stereo, equirect convention of DESIGN.md)
-------------------------------------------------------------------------------------
A pixel of either eye has the ordinary equirect direction ``D(theta, phi)``. Cycles moves the
ray's origin sideways, perpendicular to ``D`` in the horizontal plane::

    side   = normalize(D x up) = (sin phi, -cos phi, 0)        (up = +Z)
    s      = ipd/2 * fade(theta)                                 (eye offset)
    origin = -s * side  (left eye),  +s * side  (right eye)
    fade   = 1 for |latitude| <= a0, cos(pi/2 (|lat| - a0) / (a1 - a0)) up to a1, 0 beyond

(``pole_merge = (a0, a1)`` in degrees; the fade is Cycles' cosine, not linear). With the
parallel convergence mode the direction stays ``D``; with a convergence distance ``c`` Cycles
aims the ray at ``c D``: ``direction = normalize(c D - origin)``.

Parallel mode. Seen from above, every ray of an eye is tangent to the circle of radius ``s``
around the vertical axis. A point at horizontal distance ``rho`` (from the axis) and at
azimuth ``psi`` lies on the tangent from the left eye with ``sin(psi - phi_L) = s / rho`` and
on the right eye's with ``sin(phi_R - psi) = s / rho``; both rays climb at the same polar angle,
so the point is on the same row in both eyes (rows are the epipolar lines) and::

    delta = phi_R - phi_L = 2 asin(s / rho)   =>   rho = s / sin(delta / 2)

The ray leaves its origin horizontally offset ``s`` from the axis, so it travels
``sqrt(rho^2 - s^2)`` horizontally to the point and rises ``z = sqrt(rho^2 - s^2) cot theta``.
The distance from the camera centre is ``d = sqrt(rho^2 + z^2)`` (Cycles' Z pass of a panoramic
camera measures from the camera position).

Convergent mode (distance ``c``). Let ``b = c sin theta`` (horizontal distance of the aim point)
and ``L = sqrt(s^2 + b^2)``. The horizontal ray through the origin and the aim point is tangent
to the circle of radius ``r = s b / L``; along a tangent line the azimuth of a point at ``rho``
is offset from the tangent foot by ``acos(r / rho)``, so::

    delta = 2 (acos(r / b) - acos(r / rho))   =>   rho = r / cos(acos(r / b) - delta / 2)

(zero disparity at the convergence distance, negative beyond). The foot of the tangent lies
``s^2 / L`` ahead of the origin, and the ray rises ``c cos theta`` per ``L`` horizontally, so
``z = (s^2 / L + sqrt(rho^2 - r^2)) c cos theta / L``. As ``c -> inf`` this is the parallel case.

Pixels: ``phi`` decreases with the column, so ``delta = (col_L - col_R) 2 pi / W``: a near point
sits further right in the left eye, the ordinary sign of rectified stereo (positive disparity).
Stereo says nothing where the eye offset fades (``|lat| > a0``): those rows are masked.
"""

from __future__ import annotations

import numpy as np


def _check_geometry(ipd: float, pole_merge: tuple[float, float] | None,
                    convergence_distance: float | None) -> None:
    if not ipd > 0:
        raise ValueError(f"ipd (the stereo baseline) must be positive metres, got {ipd}")
    if pole_merge is not None:
        start, end = pole_merge
        if not 0.0 <= start < end <= 90.0:
            raise ValueError(
                f"pole_merge must be (from, to) degrees with 0 <= from < to <= 90, got {pole_merge}")
    if convergence_distance is not None and not convergence_distance > 0:
        raise ValueError(f"convergence_distance must be positive or None, got {convergence_distance}")


def pole_merge_fade(theta: np.ndarray, pole_merge: tuple[float, float] | None = (60.0, 75.0)) -> np.ndarray:
    """Factor in [0, 1] by which Cycles' pole merge scales the eye offset at polar angle `theta`."""
    theta = np.asarray(theta, dtype=np.float64)
    if pole_merge is None:
        return np.ones_like(theta)
    start, end = np.radians(pole_merge[0]), np.radians(pole_merge[1])
    altitude = np.abs(np.pi / 2 - theta)
    fac = np.clip((altitude - start) / (end - start), 0.0, 1.0)
    return np.where(altitude > end, 0.0, np.cos(fac * np.pi / 2))


def ods_eye_rays(theta: np.ndarray, phi: np.ndarray, eye: str, *, ipd: float = 0.064,
                 pole_merge: tuple[float, float] | None = (60.0, 75.0),
                 convergence_distance: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Origins and unit directions [..., 3] of an ODS eye's rays, as Cycles' spherical stereo makes them."""
    _check_geometry(ipd, pole_merge, convergence_distance)
    if eye not in ("left", "right"):
        raise ValueError(f"eye must be 'left' or 'right', got {eye!r}")
    theta = np.asarray(theta, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    sin_theta = np.sin(theta)  # the equirect direction (equirect.py), in float64
    direction = np.stack((sin_theta * np.cos(phi), sin_theta * np.sin(phi), np.cos(theta)), axis=-1)
    side = np.stack((np.sin(phi), -np.cos(phi), np.zeros_like(phi)), axis=-1)
    offset = (ipd / 2) * pole_merge_fade(theta, pole_merge) * (-1.0 if eye == "left" else 1.0)
    origin = side * offset[..., None]
    if convergence_distance is not None:
        aimed = convergence_distance * direction - origin
        direction = aimed / np.linalg.norm(aimed, axis=-1, keepdims=True)
    return origin, direction


def ods_distance_from_disparity(disparity_rad: np.ndarray, theta: np.ndarray, *, ipd: float = 0.064,
                                pole_merge: tuple[float, float] | None = (60.0, 75.0),
                                convergence_distance: float | None = None,
                                max_distance: float = 100.0) -> np.ndarray:
    """Distance from the camera centre for an angular disparity ``phi_R - phi_L`` at polar angle `theta`.

    Disparities at or beyond infinity (and rows without eye offset) give `max_distance`.
    """
    _check_geometry(ipd, pole_merge, convergence_distance)
    delta = np.asarray(disparity_rad)
    dtype = np.float32 if delta.dtype == np.float32 else np.float64
    delta = delta.astype(dtype, copy=False)
    theta = np.asarray(theta, dtype=np.float64)  # per-angle terms at theta's (broadcastable) shape
    s = ((ipd / 2) * pole_merge_fade(theta, pole_merge)).astype(dtype)
    sin_theta, cos_theta = np.sin(theta).astype(dtype), np.cos(theta).astype(dtype)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if convergence_distance is None:
            half = delta / 2
            finite = (half > 0) & (half < np.pi / 2) & (s > 0)
            rho = s / np.sin(half)
            # z = sqrt(rho^2 - s^2) cot(theta), so d^2 = rho^2 / sin^2(theta) - s^2 cot^2(theta)
            squared = (rho / sin_theta) ** 2 - (s * cos_theta / sin_theta) ** 2
        else:
            b = convergence_distance * sin_theta
            length = np.sqrt(s**2 + b**2)
            r = s * b / length
            angle = np.arccos(np.clip(r / b, -1.0, 1.0)) - delta / 2
            finite = (angle > 0) & (angle < np.pi / 2) & (s > 0) & (b > 0)
            rho = r / np.cos(angle)
            horizontal = s**2 / length + np.sqrt(np.maximum(rho**2 - r**2, 0.0))
            z = horizontal * convergence_distance * cos_theta / length
            squared = rho**2 + z**2
        distance = np.sqrt(np.maximum(squared, 0.0))
    finite &= np.isfinite(distance)
    return np.where(finite, np.minimum(distance, max_distance), max_distance).astype(dtype, copy=False)


def ods_disparity_from_distance(distance: np.ndarray, theta: np.ndarray, *, ipd: float = 0.064,
                                pole_merge: tuple[float, float] | None = (60.0, 75.0),
                                convergence_distance: float | None = None) -> np.ndarray:
    """Angular disparity ``phi_R - phi_L`` (radians) of a left-eye pixel at polar angle `theta`
    whose ray hits a surface at `distance` from the camera centre (the inverse of
    `ods_distance_from_disparity`, computed by tracing the left eye's ray)."""
    distance = np.asarray(distance, dtype=np.float64)
    theta = np.broadcast_to(np.asarray(theta, dtype=np.float64), distance.shape)
    origin, direction = ods_eye_rays(theta, np.zeros_like(theta), "left", ipd=ipd,
                                     pole_merge=pole_merge, convergence_distance=convergence_distance)
    along = np.sum(origin * direction, axis=-1)
    t = -along + np.sqrt(np.maximum(along**2 - np.sum(origin**2, axis=-1) + distance**2, 0.0))
    point = origin + t[..., None] * direction
    rho = np.hypot(point[..., 0], point[..., 1])
    s = (ipd / 2) * pole_merge_fade(theta, pole_merge)
    with np.errstate(divide="ignore", invalid="ignore"):
        if convergence_distance is None:
            return 2 * np.arcsin(np.clip(s / rho, 0.0, 1.0))
        b = convergence_distance * np.sin(theta)
        r = s * b / np.sqrt(s**2 + b**2)
        delta = 2 * (np.arccos(np.clip(r / b, -1, 1)) - np.arccos(np.clip(r / rho, -1, 1)))
    return np.where(s > 0, delta, 0.0)


def ods_informative_rows(height: int, pole_merge: tuple[float, float] | None = (60.0, 75.0),
                         polar_margin_deg: float = 5.0) -> np.ndarray:
    """Bool [H]: rows of an H-high equirect eye where the eye offset is full (stereo is informative).

    Without pole merge, rows within `polar_margin_deg` of a pole are left out (the equirect
    rows there are a handful of pixels stretched around the whole circle).
    """
    theta = np.pi * (np.arange(height) + 0.5) / height
    latitude = np.degrees(np.abs(np.pi / 2 - theta))
    limit = pole_merge[0] if pole_merge is not None else 90.0 - polar_margin_deg
    return latitude <= limit


def perspective_depth_from_disparity(disparity_px: np.ndarray, focal_px: float, baseline: float,
                                     *, max_depth: float = 1000.0) -> np.ndarray:
    """Planar depth ``f B / d`` of rectified perspective stereo; d <= 0 gives `max_depth`."""
    if not focal_px > 0 or not baseline > 0:
        raise ValueError(f"focal_px and baseline must be positive, got {focal_px}, {baseline}")
    disparity_px = np.asarray(disparity_px, dtype=np.float64)
    with np.errstate(divide="ignore"):
        depth = focal_px * baseline / disparity_px
    return np.where(disparity_px > 0, np.minimum(depth, max_depth), max_depth).astype(np.float32)
