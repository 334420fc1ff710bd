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

Interpolation = Literal["bilinear", "bicubic", "nearest"]
_PAD = 2  # source padding: enough for bicubic taps
_REMAP_COLUMNS = 4096  # OpenCV's remap needs both output sides below 32767


def _cv2_interpolation(interpolation: Interpolation) -> int:
    import cv2

    modes = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}
    if interpolation not in modes:
        raise ValueError(f"interpolation must be one of {', '.join(modes)}, got {interpolation!r}")
    return modes[interpolation]


def pad_equirect(image: np.ndarray, pad: int = _PAD) -> np.ndarray:
    """Pad an equirect image so plain interpolation is right at the wrap and the poles.

    Columns wrap; the rows above the top (below the bottom) are the rows just past the
    pole: the same rows mirrored, half a turn away in longitude.
    """
    height, width = image.shape[:2]
    if pad > height:
        raise ValueError(f"equirect image of {height} rows is too small to pad by {pad}")
    half = width // 2
    # Filled in place (one copy of the frame: this runs on every 4K or 8K frame).
    out = np.empty((height + 2 * pad, width + 2 * pad, *image.shape[2:]), dtype=image.dtype)
    body = out[:, pad : pad + width]
    body[pad : pad + height] = image
    body[:pad] = np.roll(image[pad - 1 :: -1], half, axis=1)
    body[pad + height :] = np.roll(image[: height - pad - 1 : -1], half, axis=1)
    out[:, :pad] = body[:, width - pad :]
    out[:, pad + width :] = body[:, :pad]
    return out


def _remap(source: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, interpolation: Interpolation) -> np.ndarray:
    """cv2.remap of float32 `source` [h, w] or [h, w, C] at float32 maps of any shape."""
    import cv2

    flag = _cv2_interpolation(interpolation)
    shape = map_x.shape
    flat_x = map_x.reshape(-1)
    flat_y = map_y.reshape(-1)
    n = flat_x.size
    if n == 0:
        return np.zeros((*shape, *source.shape[2:]), dtype=np.float32)
    cols = min(n, _REMAP_COLUMNS)
    rows = -(-n // cols)
    if rows * cols != n:
        flat_x = np.concatenate((flat_x, np.zeros(rows * cols - n, np.float32)))
        flat_y = np.concatenate((flat_y, np.zeros(rows * cols - n, np.float32)))
    grid_x = flat_x.reshape(rows, cols)
    grid_y = flat_y.reshape(rows, cols)
    channels = source.shape[2] if source.ndim == 3 else 0
    if channels <= 4:
        out = cv2.remap(source, grid_x, grid_y, flag, borderMode=cv2.BORDER_REPLICATE)
        if channels == 1:
            out = out[..., None]
    else:
        out = np.stack(
            [cv2.remap(np.ascontiguousarray(source[..., c]), grid_x, grid_y, flag, borderMode=cv2.BORDER_REPLICATE) for c in range(channels)],
            axis=-1,
        )
    out = out.reshape(rows * cols, *source.shape[2:])[:n]
    return out.reshape(*shape, *source.shape[2:])


@functools.lru_cache(maxsize=64)
def _view_source_maps(view: View, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each view pixel lies in the padded H x W equirect image: (map_x, map_y) float32."""
    rows, cols = direction_to_pixel(view.rays(), height, width)
    map_x = (cols + _PAD).astype(np.float32)
    map_y = (rows + _PAD).astype(np.float32)
    map_x.setflags(write=False)
    map_y.setflags(write=False)
    return map_x, map_y


def equirect_to_views(
    image: np.ndarray, views: tuple[View, ...], interpolation: Interpolation = "bilinear"
) -> list[np.ndarray]:
    """Sample an equirect image [H, W] or [H, W, C] into each view, right at poles and wrap.

    Returns one float32 array [h, w] or [h, w, C] per view (views may differ in size).
    Bicubic may overshoot the input's range; clip where that matters.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"equirect image must be [H, W] or [H, W, C], got shape {image.shape}")
    height, width = image.shape[:2]
    padded = pad_equirect(image.astype(np.float32, copy=False))
    out = []
    for view in views:
        map_x, map_y = _view_source_maps(view, height, width)
        out.append(_remap(padded, map_x, map_y, interpolation))
    return out


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


@dataclass(frozen=True)
class Footprint:
    """Where one view lands in an H x W panorama.

    `pixels`: flat equirect indices (int32, ascending) seen by the view; `x`, `y`: their
    fractional view pixel coordinates (float32). `a`, `b`: the same normalised to [-1, 1]
    across the view (horizontal, vertical; the view's edges are at +-1).
    """

    view: View
    pixels: np.ndarray
    x: np.ndarray
    y: np.ndarray

    @property
    def a(self) -> np.ndarray:
        return 2.0 * (self.x + 0.5) / self.view.width - 1.0

    @property
    def b(self) -> np.ndarray:
        return 2.0 * (self.y + 0.5) / self.view.height - 1.0

    def subset(self, keep: np.ndarray) -> Footprint:
        """The footprint restricted to `keep` (a bool mask or indices into its pixels)."""
        return Footprint(self.view, self.pixels[keep], self.x[keep], self.y[keep])

    def sample(self, view_values: np.ndarray, interpolation: Interpolation = "bilinear") -> np.ndarray:
        """Sample a view's map [h, w] (or [h, w, C]) at the footprint's pixels: float32 [P(, C)]."""
        view = self.view
        values = np.asarray(view_values, dtype=np.float32)
        if values.shape[:2] != (view.height, view.width):
            raise ValueError(f"view map shape {values.shape} does not match the view's {(view.height, view.width)}")
        if view.projection == "equirect":
            return _remap(pad_equirect(values), self.x + _PAD, self.y + _PAD, interpolation)
        return _remap(values, self.x, self.y, interpolation)


@functools.lru_cache(maxsize=64)
def footprint(view: View, height: int, width: int) -> Footprint:
    """The equirect pixels of an H x W panorama that `view` sees, with their view coordinates."""
    if view.projection == "equirect":
        rays = ray_directions(height, width).reshape(-1, 3)
        rows, cols = direction_to_pixel(rays, view.height, view.width)
        pixels = np.arange(height * width, dtype=np.int32)
        x, y = cols, rows
    else:
        pixels, x, y = _perspective_footprint(view, height, width)
    result = Footprint(
        view, pixels.astype(np.int32, copy=False), x.astype(np.float32, copy=False), y.astype(np.float32, copy=False)
    )
    for arr in (result.pixels, result.x, result.y):
        arr.setflags(write=False)
    return result


# Rows of the panorama handled at once by _perspective_footprint (bounds its memory at 8K).
_FOOTPRINT_ROWS = 256


def _perspective_footprint(view: View, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat pixels, x, y) of the equirect pixels a perspective view sees, in ascending order.

    Candidates are the pixels inside the cone that circumscribes the view: on each row
    of the panorama that is one interval of longitude, found in closed form, since a
    direction's camera-frame coordinates are separable in (theta, phi):
    ``d . m_k = sin(theta) (m_xk cos(phi) + m_yk sin(phi)) + cos(theta) m_zk``.
    Only candidates are visited (a few rows at a time), and the exact test of whether
    a candidate projects inside the view decides.
    """
    half_x = view.width / 2.0 / view.focal_px
    half_y = view.height / 2.0 / view.focal_px
    cos_max = 1.0 / math.sqrt(1.0 + half_x * half_x + half_y * half_y) - 1e-3
    m = view.matrix  # columns right, down, forward: camera coordinate k of d is d . m[:, k]
    theta = np.pi * (np.arange(height) + 0.5) / height
    sin_theta, cos_theta = np.sin(theta), np.cos(theta)
    phi = 2.0 * np.pi * (0.5 - (np.arange(width) + 0.5) / width)
    cos_phi, sin_phi = np.cos(phi), np.sin(phi)
    # Per-pixel arithmetic in float32 (~1e-4 px in x, y): footprints of 4K and 8K frames
    # are built for every still, and float64 doubles their memory traffic.
    along = [(m[0, k] * cos_phi + m[1, k] * sin_phi).astype(np.float32) for k in range(3)]  # [W] each
    sin_rows, cos_rows = sin_theta.astype(np.float32), cos_theta.astype(np.float32)
    m32 = m.astype(np.float32)

    # Forward's z along a row: sin(theta) * amp * cos(phi - phi_f) + cos(theta) * m_zz >= cos_max
    # holds for |phi - phi_f| <= half, a run of columns centred on the forward's column.
    amp = math.hypot(m[0, 2], m[1, 2])
    phi_f = math.atan2(m[1, 2], m[0, 2])
    with np.errstate(divide="ignore", invalid="ignore"):
        q = (cos_max - cos_theta * m[2, 2]) / (sin_theta * amp)
    q = np.where(sin_theta * amp > 1e-12, q, np.where(cos_theta * m[2, 2] >= cos_max, -2.0, 2.0))
    rows = np.flatnonzero(q <= 1.0)
    half = np.arccos(np.clip(q[rows], -1.0, 1.0)) * width / (2.0 * np.pi) + 1.0  # columns, +1 margin
    centre = width * (0.5 - phi_f / (2.0 * np.pi)) - 0.5
    first = np.ceil(centre - half).astype(np.int64)
    count = np.minimum(np.floor(centre + half).astype(np.int64) - first + 1, width)
    first = np.where(count >= width, 0, np.mod(first, width))
    # A run that crosses the wrap is two runs: [first, W) and [0, rest).
    rest = np.maximum(first + count - width, 0)
    seg_row = np.concatenate((rows, rows))
    seg_first = np.concatenate((np.zeros_like(first), first))
    seg_count = np.concatenate((rest, count - rest))
    order = np.lexsort((seg_first, seg_row))
    keep = order[seg_count[order] > 0]
    seg_row, seg_first, seg_count = seg_row[keep], seg_first[keep], seg_count[keep]

    f = view.focal_px
    # Filled in place, chunk by chunk, at their final dtypes (large copies cost page faults).
    capacity = int(seg_count.sum())
    out_pixels = np.empty(capacity, np.int32)
    out_x = np.empty(capacity, np.float32)
    out_y = np.empty(capacity, np.float32)
    filled = 0
    bounds = np.searchsorted(seg_row, rows[::_FOOTPRINT_ROWS])
    for lo, hi in zip(bounds, np.r_[bounds[1:], seg_row.size], strict=True):
        counts = seg_count[lo:hi]
        total = int(counts.sum())
        starts = np.cumsum(counts) - counts
        r = np.repeat(seg_row[lo:hi], counts)
        c = np.arange(total) - np.repeat(starts - seg_first[lo:hi], counts)
        st, ct = sin_rows[r], cos_rows[r]
        z = np.maximum(st * along[2][c] + ct * m32[2, 2], np.float32(1e-9))
        scale = np.float32(f) / z
        x = (st * along[0][c] + ct * m32[2, 0]) * scale + np.float32(view.width / 2.0 - 0.5)
        y = (st * along[1][c] + ct * m32[2, 1]) * scale + np.float32(view.height / 2.0 - 0.5)
        inside = np.flatnonzero(
            (z > 1e-6)
            & (x >= -0.5) & (x <= view.width - 0.5)
            & (y >= -0.5) & (y <= view.height - 0.5)
        )
        end = filled + inside.size
        out_pixels[filled:end] = r[inside] * width + c[inside]
        out_x[filled:end] = x[inside]
        out_y[filled:end] = y[inside]
        filled = end
    return out_pixels[:filled].copy(), out_x[:filled].copy(), out_y[:filled].copy()


def planar_to_ray_disparity(disparity: np.ndarray, view: View) -> np.ndarray:
    """Inverse planar depth of a view [.., h, w] -> inverse distance along each pixel's ray.

    1 / distance = cos(angle to the optical axis) / z. Identity for an equirect view.
    """
    return (np.asarray(disparity, dtype=np.float32) * view.cos_to_axis()).astype(np.float32)
