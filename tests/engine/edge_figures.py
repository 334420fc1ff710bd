"""Issue 15's boundary figures: how depth behaves at the plate's depth edges, for composites.

- True depth edges: 4-neighbours of the true distance whose relative jump exceeds EDGE_JUMP
  (sky, +inf, jumps from anything); columns wrap. The edge band: pixels within BAND_PX of one.
- Wrong-side share: of the band's pixels (within +-`band_deg` latitude), the share whose
  estimated distance lies on the other side of the edge than the truth: the near and far
  sides are the smallest and largest true distance in the pixel's (2 BAND_PX + 1) window, the
  divide their geometric mean. Its occlusion-only variant counts the band pixels whose window
  holds two objects: outdoors a third or more of the band is the ground's own row-to-row jumps
  near the horizon (over 20% beyond about 60 m for a camera at head height).
- Composite IoU: a virtual sphere put across a real depth edge (behind the nearer surface, in
  front of the farther), seen where its ray distance is below the depth's (what the
  compositor's Z combine does per pixel): IoU of the pixels it shows with the estimated
  distance and with the true one.
- Stereo's floor: the truth where stereo can measure it (a disparity of at least 1 px at the
  matched width), the far value beyond: what stereo alone writes at best, edge step or not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EDGE_JUMP = 0.2
BAND_PX = 3
FAR = 100.0


def _neighbour(values: np.ndarray, axis: int, wrap: bool = True) -> np.ndarray:
    """The next pixel along `axis` (columns wrap where `wrap`; else, as the last row, the last column
    repeats itself)."""
    if axis == 1 and wrap:
        return np.roll(values, -1, 1)
    if axis == 1:
        return np.concatenate([values[:, 1:], values[:, -1:]], axis=1)
    return np.concatenate([values[1:], values[-1:]])


def true_edges(distance: np.ndarray, jump: float = EDGE_JUMP, wrap: bool = True) -> np.ndarray:
    """Bool [H, W]: both pixels of every 4-neighbour pair whose distances differ by more than `jump`
    (columns wrap where `wrap`: an equirect's 0/360 seam)."""
    capped = np.minimum(np.where(np.isfinite(distance), distance, np.inf), 1e6)
    edges = np.zeros(distance.shape, bool)
    for axis in (0, 1):
        other = _neighbour(capped, axis, wrap)
        step = np.maximum(capped, other) > np.minimum(capped, other) * (1.0 + jump)
        edges |= step
        edges |= np.roll(step, 1, 1) if axis == 1 else np.concatenate([step[:1] & False, step[:-1]])
    return edges


def _window(values: np.ndarray, radius: int, reduce, wrap: bool = True) -> np.ndarray:
    """Square-window min or max (cv2 erode/dilate), columns wrapped (or repeated)."""
    import cv2

    padded = np.pad(values.astype(np.float32), ((radius, radius), (0, 0)), mode="edge")
    padded = np.pad(padded, ((0, 0), (radius, radius)), mode="wrap" if wrap else "edge")
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    out = (cv2.erode if reduce == "min" else cv2.dilate)(padded, kernel)
    return out[radius:-radius, radius:-radius]


def latitude_band(height: int, band_deg: float) -> np.ndarray:
    latitude = 90.0 - 180.0 * (np.arange(height) + 0.5) / height
    return np.abs(latitude) <= band_deg


def edge_band(distance: np.ndarray, band_deg: float = 60.0, wrap: bool = True) -> np.ndarray:
    """Bool: within BAND_PX of a true depth edge and within +-`band_deg` of latitude."""
    near_edge = _window(true_edges(distance, wrap=wrap).astype(np.float32), BAND_PX, "max", wrap) > 0
    return near_edge & latitude_band(distance.shape[0], band_deg)[:, None]


def wrong_side_share(estimate: np.ndarray, truth: np.ndarray, band_deg: float = 60.0, wrap: bool = True,
                     objects: np.ndarray | None = None) -> float:
    """Share of the edge band's pixels whose estimate is on the wrong side of the edge (module docstring);
    `wrap`: the columns are an equirect's (False: a VR180 eye's); `objects`: the truth's object index,
    to count only the band pixels whose window holds two objects (occlusion edges, not the row-to-row
    jumps of one surface seen at a grazing angle)."""
    capped = np.minimum(np.where(np.isfinite(truth), truth, FAR), FAR)
    near, far = _window(capped, BAND_PX, "min", wrap), _window(capped, BAND_PX, "max", wrap)
    band = edge_band(truth, band_deg, wrap) & (far > near * (1.0 + EDGE_JUMP))
    if objects is not None:
        index = np.asarray(objects, np.float32)
        band &= _window(index, BAND_PX, "min", wrap) != _window(index, BAND_PX, "max", wrap)
    divide = np.log(near * far) / 2
    true_near = np.log(capped) < divide
    estimate_near = np.log(np.clip(estimate, 1e-3, FAR)) < divide
    return float(np.mean(true_near[band] != estimate_near[band]))


def stereo_range_floor(truth: np.ndarray, limit_px: float = 1.0, match_width: int = 2048,
                       max_distance: float = FAR) -> np.ndarray:
    """The best stereo alone can write for an ODS eye's true distance (default geometry, 6.4 cm apart):
    the truth wherever its disparity at `match_width` is at least `limit_px` (the engine's
    MIN_MEASURABLE_DISPARITY_PX is 1) on the rows stereo measures, `max_distance` (the far value)
    elsewhere. Its wrong-side share is what no edge step can go below on a scene."""
    from depth360.estimators.stereo.ods_geometry import (
        ods_disparity_from_distance,
        ods_informative_rows,
    )

    height = truth.shape[0]
    theta = np.broadcast_to((np.pi * (np.arange(height) + 0.5) / height)[:, None], truth.shape)
    finite = np.where(np.isfinite(truth), truth, 1e6)
    pixels = ods_disparity_from_distance(finite, theta) * match_width / (2 * np.pi)
    measured = (pixels >= limit_px) & ods_informative_rows(height)[:, None] & (finite < max_distance)
    return np.where(measured, finite, max_distance).astype(np.float32)


def outside_band_absrel(estimate: np.ndarray, truth: np.ndarray, mask: np.ndarray, band_deg: float = 60.0,
                        max_distance: float = 8.0, wrap: bool = True) -> float:
    """AbsRel over the masked pixels away from the edge band, within the latitude band and `max_distance`."""
    scored = (mask & ~edge_band(truth, 90.0, wrap) & latitude_band(truth.shape[0], band_deg)[:, None]
              & np.isfinite(truth) & (truth <= max_distance))
    return float(np.mean(np.abs(estimate[scored] - truth[scored]) / truth[scored]))


@dataclass(frozen=True)
class Sphere:
    centre: np.ndarray
    radius: float


def ray_sphere_distance(rays: np.ndarray, sphere: Sphere) -> np.ndarray:
    """Distance along unit `rays` [..., 3] from the origin to the sphere (+inf where missed)."""
    b = rays @ sphere.centre
    disc = b * b - (sphere.centre @ sphere.centre - sphere.radius**2)
    t = b - np.sqrt(np.maximum(disc, 0.0))
    return np.where((disc > 0) & (t > 0), t, np.inf)


def straddling_spheres(truth: np.ndarray, object_index: np.ndarray, rays: np.ndarray, count: int = 3,
                       angle_deg: float = 4.0, band_deg: float = 40.0, wrap: bool = True) -> list[Sphere]:
    """Up to `count` spheres of `angle_deg` angular radius, each centred on the ray of a horizontal
    occlusion edge (an object in front of a surface >= 1.5x as far, or the sky), between the two
    surfaces: half of each is hidden. Edges of different objects, the most central row of each;
    `wrap`: the columns are an equirect's (False: a VR180 eye's)."""
    capped = np.where(np.isfinite(truth), truth, np.inf)
    right = np.roll(capped, -1, 1)
    with np.errstate(invalid="ignore"):  # sky beside sky: inf / inf
        ratio = np.maximum(capped, right) / np.minimum(capped, right)
    rows = latitude_band(truth.shape[0], band_deg)[:, None]
    edge = rows & (ratio >= 1.5) & (object_index != np.roll(object_index, -1, 1))
    if not wrap:  # a VR180 eye's last column is no neighbour of its first
        edge[:, -1] = False
    near_index = np.where(capped <= right, object_index, np.roll(object_index, -1, 1))
    candidates = []
    for obj in np.unique(near_index[edge]):
        r, c = np.nonzero(edge & (near_index == obj))
        if r.size < 20:  # too small an object to straddle
            continue
        pick = np.argsort(np.abs(r - np.median(r)))[0]
        candidates.append((r.size, int(r[pick]), int(c[pick])))
    spheres = []
    for _, r, c in sorted(candidates, reverse=True)[:count]:
        near = float(min(capped[r, c], right[r, c]))
        far = float(min(max(capped[r, c], right[r, c]), 4.0 * near))
        centre_distance = np.sqrt(near * far)
        radius = min(centre_distance * np.sin(np.radians(angle_deg)), 0.8 * (centre_distance - near),
                     0.8 * (far - centre_distance))
        ray = rays[r, c].astype(np.float64)
        ray = (ray + rays[r, (c + 1) % truth.shape[1]]) / 2
        spheres.append(Sphere(centre_distance * ray / np.linalg.norm(ray), float(radius)))
    return spheres


def composite_iou(estimate: np.ndarray, truth: np.ndarray, rays: np.ndarray, sphere: Sphere) -> float:
    """IoU of the sphere's visible pixels with the estimated distance against those with the true one."""
    hit = ray_sphere_distance(rays.astype(np.float64), sphere)
    seen_true = hit < np.where(np.isfinite(truth), truth, np.inf)
    seen = hit < estimate
    return float((seen & seen_true).sum() / max((seen | seen_true).sum(), 1))
