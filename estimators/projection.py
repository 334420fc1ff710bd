"""Equirect <-> perspective views: view layouts, their rays, and wrap/pole-aware sampling.

A `View` is a pinhole camera at the panorama's centre (or, for the `equirect` preset,
the whole panorama again). Its `rotation` is world-from-camera with columns
(right, down, forward) in the equirect world frame of `equirect.py`, so a view looking
along +X with +Z up shows the panorama's centre unmirrored. For a perspective view of
`width` x `height` pixels and horizontal field of view `fov_deg`, pixel (row i, col j)
has the camera-frame ray (x, y, 1) with
``x = (j + 0.5 - width / 2) / f``, ``y = (i + 0.5 - height / 2) / f``,
``f = (width / 2) / tan(fov / 2)`` (square pixels).

Sampling grids are cached per (views, equirect size): building them once per clip
keeps video fast.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .equirect import direction_to_pixel, ray_directions

Preset = Literal["cube", "ico", "equirect"]
PRESETS: tuple[str, ...] = ("cube", "ico", "equirect")
DEFAULT_FOV_DEG = {"cube": 110.0, "ico": 90.0}
# The smallest field of view that still covers the sphere: the cube face (90 deg) and
# the square around an icosahedron face's circumcircle (2 * 37.38 deg).
MIN_FOV_DEG = {"cube": 90.0, "ico": 74.8}

Matrix3 = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]


@dataclass(frozen=True)
class View:
    """One view of the panorama: a pinhole camera, or the whole equirect frame.

    `rotation` is world-from-camera (columns right, down, forward); `fov_deg` is the
    horizontal field of view of a perspective view (unused for `projection="equirect"`).
    """

    rotation: Matrix3
    fov_deg: float
    height: int
    width: int
    projection: Literal["perspective", "equirect"] = "perspective"

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"view size must be positive, got {self.height}x{self.width}")
        if self.projection not in ("perspective", "equirect"):
            raise ValueError(f"view projection must be 'perspective' or 'equirect', got {self.projection!r}")
        if self.projection == "perspective" and not 0.0 < self.fov_deg < 180.0:
            raise ValueError(f"perspective field of view must be in (0, 180) degrees, got {self.fov_deg}")

    @property
    def matrix(self) -> np.ndarray:
        """World-from-camera rotation as a float64 [3, 3] array."""
        return np.array(self.rotation, dtype=np.float64)

    @property
    def forward(self) -> np.ndarray:
        """The optical axis (unit, world frame)."""
        return self.matrix[:, 2]

    @property
    def focal_px(self) -> float:
        """Focal length in pixels of a perspective view."""
        return 0.5 * self.width / math.tan(math.radians(self.fov_deg) / 2.0)

    def rays(self) -> np.ndarray:
        """Read-only float32 [height, width, 3] unit ray of every pixel, world frame."""
        return _view_rays(self)

    def cos_to_axis(self) -> np.ndarray:
        """Read-only float32 [height, width]: cosine between each pixel's ray and the optical axis.

        Planar depth z = distance * cos, so inverse distance = cos / z. All ones for an
        equirect view, whose output already is along the rays.
        """
        return _view_cos(self)


@functools.lru_cache(maxsize=64)
def _view_rays(view: View) -> np.ndarray:
    if view.projection == "equirect":
        rays = np.array(ray_directions(view.height, view.width))
    else:
        x, y = _pixel_plane_coords(view)
        cam = np.stack((x, y, np.ones_like(x)), axis=-1)
        cam /= np.linalg.norm(cam, axis=-1, keepdims=True)
        rays = (cam @ view.matrix.T).astype(np.float32)
    rays.setflags(write=False)
    return rays


@functools.lru_cache(maxsize=64)
def _view_cos(view: View) -> np.ndarray:
    if view.projection == "equirect":
        cos = np.ones((view.height, view.width), dtype=np.float32)
    else:
        x, y = _pixel_plane_coords(view)
        cos = (1.0 / np.sqrt(1.0 + x * x + y * y)).astype(np.float32)
    cos.setflags(write=False)
    return cos


def _pixel_plane_coords(view: View) -> tuple[np.ndarray, np.ndarray]:
    """Camera-plane (z = 1) coordinates of the pixel centres, float64 [h, w] each."""
    f = view.focal_px
    x = (np.arange(view.width) + 0.5 - view.width / 2.0) / f
    y = (np.arange(view.height) + 0.5 - view.height / 2.0) / f
    return np.meshgrid(x, y, indexing="xy")


def look_at(forward: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> Matrix3:
    """World-from-camera rotation (columns right, down, forward) looking along `forward`.

    `up` is the world direction that should appear upwards; it must not be parallel to
    `forward`.
    """
    f = np.asarray(forward, dtype=np.float64)
    f = f / np.linalg.norm(f)
    right = np.cross(f, np.asarray(up, dtype=np.float64))
    norm = np.linalg.norm(right)
    if norm < 1e-9:
        raise ValueError("look_at: `up` is parallel to `forward`")
    right /= norm
    down = np.cross(f, right)
    m = np.stack((right, down, f), axis=1)
    return tuple(tuple(float(v) for v in row) for row in m)  # type: ignore[return-value]


def default_view_size(fov_deg: float, equirect_width: int, multiple: int = 2) -> int:
    """Square view size whose centre matches the panorama's pixel density (pixels per radian)."""
    size = 2.0 * math.tan(math.radians(fov_deg) / 2.0) * equirect_width / (2.0 * math.pi)
    return max(multiple, int(math.ceil(size / multiple)) * multiple)


def cube_views(fov_deg: float = DEFAULT_FOV_DEG["cube"], size: int = 256) -> tuple[View, ...]:
    """Six views along +X, -X, +Y, -Y, +Z, -Z; fov > 90 deg makes neighbours overlap."""
    sides = [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0)]
    views = [View(look_at(s), fov_deg, size, size) for s in sides]
    # Up and down views keep -X ("behind" the panorama centre) at the image top / bottom.
    views.append(View(look_at((0, 0, 1), up=(-1, 0, 0)), fov_deg, size, size))
    views.append(View(look_at((0, 0, -1), up=(1, 0, 0)), fov_deg, size, size))
    return tuple(views)


@functools.lru_cache(maxsize=1)
def icosahedron_face_centres() -> np.ndarray:
    """Unit directions [20, 3] of the centres of a regular icosahedron's faces."""
    g = (1.0 + math.sqrt(5.0)) / 2.0
    verts = []
    for a, b in itertools.product((-1.0, 1.0), repeat=2):
        verts += [(0.0, a, b * g), (a, b * g, 0.0), (b * g, 0.0, a)]
    v = np.array(verts)
    faces = [
        (i, j, k)
        for i, j, k in itertools.combinations(range(12), 3)
        if all(abs(np.linalg.norm(v[p] - v[q]) - 2.0) < 1e-9 for p, q in ((i, j), (j, k), (i, k)))
    ]
    centres = np.array([v[list(f)].mean(axis=0) for f in faces])
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def ico_views(fov_deg: float = DEFAULT_FOV_DEG["ico"], size: int = 160) -> tuple[View, ...]:
    """Twenty tangent views centred on the icosahedron's faces (as 360MonoDepth), upright."""
    return tuple(View(look_at(c), fov_deg, size, size) for c in icosahedron_face_centres())


def equirect_views(height: int, width: int) -> tuple[View, ...]:
    """One view: the whole panorama, passed to the estimator as it is."""
    identity: Matrix3 = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    return (View(identity, 360.0, height, width, projection="equirect"),)


def make_views(
    preset: Preset,
    equirect_height: int,
    equirect_width: int,
    *,
    fov_deg: float | None = None,
    view_size: int | None = None,
) -> tuple[View, ...]:
    """The views of `preset` for an equirect frame of the given size.

    `view_size` defaults to the panorama's pixel density; for `equirect` it is the
    width of the single pass (height = width / 2), default the frame's own size.
    """
    if preset == "equirect":
        if view_size is None:
            return equirect_views(equirect_height, equirect_width)
        return equirect_views(max(1, view_size // 2), view_size)
    if preset not in DEFAULT_FOV_DEG:
        raise ValueError(f"unknown view preset {preset!r}; expected one of {', '.join(PRESETS)}")
    fov = DEFAULT_FOV_DEG[preset] if fov_deg is None else float(fov_deg)
    if not MIN_FOV_DEG[preset] < fov < 180.0:
        raise ValueError(
            f"{preset} views need a field of view in ({MIN_FOV_DEG[preset]}, 180) degrees "
            f"to cover the sphere, got {fov}"
        )
    size = default_view_size(fov, equirect_width) if view_size is None else int(view_size)
    if size < 2:
        raise ValueError(f"view size must be at least 2 pixels, got {size}")
    return cube_views(fov, size) if preset == "cube" else ico_views(fov, size)


# --- sampling ---------------------------------------------------------------------------


def equirect_bilinear_taps(
    rows: np.ndarray, cols: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices [..., 4] and weights [..., 4] of bilinear taps into an H x W panorama.

    Columns wrap; a tap above the top row (below the bottom row) is the pixel mirrored
    across the pole, half a turn away in longitude, so sampling is continuous there.
    """
    r0 = np.floor(rows).astype(np.int64)
    c0 = np.floor(cols).astype(np.int64)
    fr = (rows - r0).astype(np.float32)
    fc = (cols - c0).astype(np.float32)
    idx = []
    wts = []
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        r = r0 + dr
        over_top = r < 0
        under_bottom = r >= height
        r_fixed = np.where(over_top, -1 - r, np.where(under_bottom, 2 * height - 1 - r, r))
        flip = np.where(over_top | under_bottom, width // 2, 0)
        for dc, wc in ((0, 1.0 - fc), (1, fc)):
            c = np.mod(c0 + dc + flip, width)
            idx.append(r_fixed * width + c)
            wts.append(wr * wc)
    return np.stack(idx, axis=-1), np.stack(wts, axis=-1)


def plane_bilinear_taps(
    x: np.ndarray, y: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices [..., 4] and weights [..., 4] of bilinear taps into an h x w view, edges clamped."""
    x = np.clip(x, 0.0, width - 1.0)
    y = np.clip(y, 0.0, height - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), max(width - 2, 0))
    y0 = np.minimum(np.floor(y).astype(np.int64), max(height - 2, 0))
    fx = (x - x0).astype(np.float32)
    fy = (y - y0).astype(np.float32)
    x1 = np.minimum(x0 + 1, width - 1)
    y1 = np.minimum(y0 + 1, height - 1)
    idx = np.stack((y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1), axis=-1)
    wts = np.stack(((1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx), axis=-1)
    return idx, wts


def gather(values: np.ndarray, idx: np.ndarray, wts: np.ndarray) -> np.ndarray:
    """Weighted sum of taps: values [P] or [P, C] (flattened image), idx/wts [..., 4]."""
    taps = values[idx]  # [..., 4] or [..., 4, C]
    if values.ndim == 1:
        return np.einsum("...k,...k->...", taps, wts)
    return np.einsum("...kc,...k->...c", taps, wts)


@functools.lru_cache(maxsize=16)
def _view_sampling_taps(view: View, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = direction_to_pixel(view.rays(), height, width)
    idx, wts = equirect_bilinear_taps(rows, cols, height, width)
    idx.setflags(write=False)
    wts.setflags(write=False)
    return idx, wts


def equirect_to_views(image: np.ndarray, views: tuple[View, ...]) -> list[np.ndarray]:
    """Bilinearly sample an equirect image [H, W] or [H, W, C] into each view.

    Returns one float32 array [h, w] or [h, w, C] per view (views may differ in size).
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"equirect image must be [H, W] or [H, W, C], got shape {image.shape}")
    height, width = image.shape[:2]
    flat = image.reshape(height * width, *image.shape[2:]).astype(np.float32, copy=False)
    out = []
    for view in views:
        idx, wts = _view_sampling_taps(view, height, width)
        out.append(gather(flat, idx, wts).astype(np.float32, copy=False))
    return out


@dataclass(frozen=True)
class Footprint:
    """Where one view lands in an H x W panorama.

    `pixels`: flat equirect indices seen by the view; `x`, `y`: their fractional view
    pixel coordinates; `a`, `b`: the same normalised to [-1, 1] across the view
    (horizontal, vertical; the view's edges are at +-1).
    """

    pixels: np.ndarray
    x: np.ndarray
    y: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def sample(self, view_values: np.ndarray, view: View) -> np.ndarray:
        """Bilinearly sample a view's map [h, w] (or [h, w, C]) at the footprint's pixels."""
        flat = view_values.reshape(view.height * view.width, *view_values.shape[2:])
        if view.projection == "equirect":
            idx, wts = equirect_bilinear_taps(self.y, self.x, view.height, view.width)
        else:
            idx, wts = plane_bilinear_taps(self.x, self.y, view.height, view.width)
        return gather(flat, idx, wts)


@functools.lru_cache(maxsize=64)
def footprint(view: View, height: int, width: int) -> Footprint:
    """The equirect pixels of an H x W panorama that `view` sees, with their view coordinates."""
    rays = ray_directions(height, width).reshape(-1, 3).astype(np.float64)
    if view.projection == "equirect":
        rows, cols = direction_to_pixel(rays, view.height, view.width)
        pixels = np.arange(height * width)
        x, y = cols, rows
        a = 2.0 * (x + 0.5) / view.width - 1.0
        b = 2.0 * (y + 0.5) / view.height - 1.0
    else:
        cam = rays @ view.matrix  # camera-frame coordinates: R^T d for each row d
        in_front = cam[:, 2] > 1e-6
        z = np.where(in_front, cam[:, 2], 1.0)
        px = cam[:, 0] / z
        py = cam[:, 1] / z
        f = view.focal_px
        x = px * f + view.width / 2.0 - 0.5
        y = py * f + view.height / 2.0 - 0.5
        a = 2.0 * (x + 0.5) / view.width - 1.0
        b = 2.0 * (y + 0.5) / view.height - 1.0
        inside = in_front & (np.abs(a) <= 1.0) & (np.abs(b) <= 1.0)
        pixels = np.flatnonzero(inside)
        x, y, a, b = x[inside], y[inside], a[inside], b[inside]
    arrays = [pixels, x.astype(np.float32), y.astype(np.float32), a.astype(np.float32), b.astype(np.float32)]
    for arr in arrays:
        arr.setflags(write=False)
    return Footprint(*arrays)


def planar_to_ray_disparity(disparity: np.ndarray, view: View) -> np.ndarray:
    """Inverse planar depth of a view [.., h, w] -> inverse distance along each pixel's ray.

    1 / distance = cos(angle to the optical axis) / z. Identity for an equirect view.
    """
    return (np.asarray(disparity, dtype=np.float32) * view.cos_to_axis()).astype(np.float32)
