"""Feature tracks on equirect frames: corners followed from frame to frame, wrap-aware.

`FeatureTracker.track(grey)` follows every live track into the next frame with pyramidal
Lucas-Kanade optical flow, keeps those that come back to where they started when
tracked backwards (moving objects, occlusions and flat areas fail this), and adds new
corners (Shi-Tomasi) where the frame has none. Each track has an id that lives as long
as the feature is seen.

The sphere has no border: before tracking, each frame is padded the way the sphere
continues (columns wrap around the longitude seam; above the top row lies the top row
of the opposite meridian, likewise below the bottom), so features cross the seam and
near the poles without stopping. Corners are looked for only within
`max_latitude_deg` of the horizon, where the equirect image is not stretched too much
for a translational flow model. All of it is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .small_systems import solve_spd


@dataclass(frozen=True)
class TrackerSettings:
    """Knobs of the feature tracker (sizes in pixels of the working frame)."""

    max_features: int = 700
    min_spacing: float = 1 / 100  # of the frame width
    quality: float = 0.005
    max_latitude_deg: float = 72.0
    window: int = 0  # Lucas-Kanade window; 0: about width / 24, odd, 9..21
    levels: int = 3
    round_trip_px: float = 0.5  # forward-backward disagreement allowed
    anchor_span: int = 16  # frames a track is refined against the same template
    anchor_px: float = 1.0  # anchored and frame-to-frame positions may differ by this much


@dataclass(frozen=True)
class TrackedFrame:
    """Features seen in one frame: `ids` [N], continuous `xy` [N, 2] (pixel centres at c + 0.5), and
    how many of the previous frame's tracks came through (`followed`) out of `previous`."""

    ids: np.ndarray
    xy: np.ndarray
    followed: int
    previous: int


def pad_sphere(image: np.ndarray, pad: int) -> np.ndarray:
    """`image` [H, W(, C)] with `pad` pixels added on every side as the sphere continues."""
    height, width = image.shape[:2]
    columns = np.arange(-pad, width + pad) % width
    opposite = (columns + width // 2) % width  # the meridian on the other side of the pole
    top = image[:pad][::-1][:, opposite]
    bottom = image[height - pad:][::-1][:, opposite]
    return np.ascontiguousarray(np.concatenate([top, image[:, columns], bottom], axis=0))


def refine_affine(image: np.ndarray, groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]], window: int,
                  iterations: int = 6) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sub-pixel positions in `image` of patches of template frames (OpenCV pixel coordinates).

    `groups`: (template, start [N, 2], guess [N, 2]) per template frame: the patches around
    `start` in `template`, looked for from `guess`. Gauss-Newton on the patch difference
    under an affine warp of the patch (position and a 2 x 2 deformation) with bicubic
    sampling. A patch seen from a moving camera, or moving in latitude on the equirect
    image, deforms; a translation-only fit (pyramidal Lucas-Kanade) then slides toward its
    texture's stronger side by a few hundredths of a pixel per frame, which a camera solve
    adds up. All groups iterate together (one set of array operations per step, not one per
    template frame); each stops on its own, when its largest step is under 1e-3 pixel.
    Returns (positions [N, 2], converged [N]) per group.
    """
    import cv2

    if not groups:
        return []
    half = window // 2
    offsets = np.stack(np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1)), -1).reshape(-1, 2)
    offsets = offsets.astype(np.float32)
    weights = np.exp(-0.5 * (offsets ** 2).sum(1) / (0.5 * half) ** 2).astype(np.float32)
    image = np.asarray(image, np.float32)
    # the image and its gradients, read in one pass (per channel the same values as three reads)
    layers = cv2.merge([image, cv2.Scharr(image, cv2.CV_32F, 1, 0) / 32.0, cv2.Scharr(image, cv2.CV_32F, 0, 1) / 32.0])

    def sample(values, where):
        return cv2.remap(values, where[..., 0], where[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)

    sizes = [len(start) for _, start, _ in groups]
    owner = np.repeat(np.arange(len(groups)), sizes)
    fixed = np.concatenate([sample(np.asarray(template, np.float32),
                                   np.asarray(start, np.float32)[:, None, :] + offsets[None])
                            if len(start) else np.zeros((0, len(offsets)), np.float32)
                            for template, start, _ in groups])
    position = np.concatenate([np.asarray(guess, np.float32).reshape(-1, 2) for _, _, guess in groups])
    deformation = np.zeros((len(position), 4), np.float32)
    step = np.zeros((len(position), 6), np.float32)
    basis = np.stack([offsets[:, 0], offsets[:, 1]], -1)  # d where / d deformation rows
    active = np.ones(len(position), bool)
    for _ in range(iterations):
        moving = np.flatnonzero(active)
        if not moving.size:
            break
        here, shape = position[moving], deformation[moving]
        where = here[:, None, :] + offsets[None] + np.stack(
            [shape[:, None, :2] @ basis.T[None], shape[:, None, 2:] @ basis.T[None]], -1)[:, 0]
        read = sample(layers, where)
        residual, gx, gy = read[..., 0] - fixed[moving], read[..., 1], read[..., 2]
        jacobian = np.stack([gx, gy, gx * offsets[:, 0], gx * offsets[:, 1], gy * offsets[:, 0],
                             gy * offsets[:, 1]], 1)  # [N, 6, P]
        weighted = jacobian * weights
        normal = weighted @ jacobian.transpose(0, 2, 1) + 1e-4 * np.eye(6, dtype=np.float32)
        taken = -solve_spd(normal, (weighted @ residual[..., None])[..., 0])
        step[moving] = taken
        position[moving] = here + np.clip(taken[:, :2], -1.0, 1.0)
        deformation[moving] = shape + np.clip(taken[:, 2:], -0.1, 0.1)
        largest = np.zeros(len(groups), np.float32)
        np.maximum.at(largest, owner[moving], np.abs(taken[:, :2]).max(axis=1))
        active[moving] = largest[owner[moving]] >= 1e-3
    converged = np.linalg.norm(step[:, :2], axis=1) < 0.01
    bounds = np.cumsum([0, *sizes])
    return [(position[a:b], converged[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


class FeatureTracker:
    """Follows corners through the frames of one shot (module docstring)."""

    def __init__(self, settings: TrackerSettings | None = None):
        self.settings = settings or TrackerSettings()
        self._previous: np.ndarray | None = None
        self._next_id = 0
        self.reset()

    def reset(self) -> None:
        """Forget every track (after a cut): the next frame starts afresh."""
        self._previous = None
        self._ids = np.zeros(0, np.int64)
        self._xy = np.zeros((0, 2), np.float32)
        self._frame = 0  # frames tracked so far
        self._anchor_frame = np.zeros(0, np.int64)  # per track: the frame its template comes from
        self._anchor_xy = np.zeros((0, 2), np.float32)  # and where it was there
        self._images: dict[int, np.ndarray] = {}  # padded frames that hold live templates

    def _window(self, width: int) -> int:
        if self.settings.window:
            return self.settings.window
        return int(np.clip((width // 24) | 1, 9, 21))

    def _pad(self, width: int) -> int:
        return max(8, self._window(width) * 2)

    def _follow(self, grey_padded: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Track the live features into `grey_padded`; (ids kept, their xy in the frame)."""
        import cv2

        if self._previous is None or not len(self._ids):
            return np.zeros(0, np.int64), np.zeros((0, 2), np.float32)
        pad = self._pad(width)
        height = grey_padded.shape[0] - 2 * pad
        window = self._window(width)
        start = (self._xy - 0.5 + pad).astype(np.float32).reshape(-1, 1, 2)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 0.0005)
        lk = {"winSize": (window, window), "maxLevel": self.settings.levels, "criteria": criteria}
        forward, ok_f, _ = cv2.calcOpticalFlowPyrLK(self._previous, grey_padded, start, None, **lk)
        backward, ok_b, _ = cv2.calcOpticalFlowPyrLK(grey_padded, self._previous, forward, None, **lk)
        round_trip = np.linalg.norm((backward - start).reshape(-1, 2), axis=1)
        xy = forward.reshape(-1, 2) + 0.5 - pad
        keep = (ok_f.ravel() == 1) & (ok_b.ravel() == 1) & (round_trip < self.settings.round_trip_px)
        keep &= (xy[:, 1] > 0) & (xy[:, 1] < height)
        xy[:, 0] = np.mod(xy[:, 0], width)
        self._anchor_frame, self._anchor_xy = self._anchor_frame[keep], self._anchor_xy[keep]
        return self._ids[keep], self._anchored(grey_padded, width, xy[keep], lk)

    def _anchored(self, grey_padded: np.ndarray, width: int, xy: np.ndarray, lk: dict) -> np.ndarray:
        """Refine frame-to-frame positions against each track's template frame (no drift in between).

        Chained frame-to-frame flow adds up each step's small error; tracking from the
        frame a track's template was taken in does not. A track whose refined and
        chained positions disagree by more than `anchor_px` (its look changed), or whose
        template is `anchor_span` frames old, takes a new template from this frame.
        """
        import cv2

        pad = self._pad(width)
        refined = xy.copy()
        followed, fitted = [], []  # per template frame: (its tracks, their guesses, Lucas-Kanade's verdicts)
        for anchor in np.unique(self._anchor_frame):
            group = np.flatnonzero(self._anchor_frame == anchor)
            if anchor not in self._images:
                continue
            anchor_xy = self._anchor_xy[group]
            start = anchor_xy - 0.5 + pad  # in the padded frames
            guess = xy[group].copy()
            guess[:, 0] = anchor_xy[:, 0] + np.mod(guess[:, 0] - anchor_xy[:, 0] + width / 2, width) - width / 2
            to = (guess - 0.5 + pad).astype(np.float32).reshape(-1, 1, 2)
            moved, ok, _ = cv2.calcOpticalFlowPyrLK(self._images[anchor], grey_padded,
                                                    start.astype(np.float32).reshape(-1, 1, 2), to,
                                                    flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **lk)
            followed.append((group, guess, ok))
            fitted.append((self._images[anchor], start, moved.reshape(-1, 2)))
        for (group, guess, ok), (moved, converged) in zip(
                followed, refine_affine(grey_padded, fitted, self._window(width)), strict=True):
            moved = moved + 0.5 - pad
            good = (ok.ravel() == 1) & converged & (np.linalg.norm(moved - guess, axis=1) < self.settings.anchor_px)
            refined[group[good], 0] = np.mod(moved[good, 0], width)
            refined[group[good], 1] = moved[good, 1]
            self._anchor_frame[group[~good]] = -1  # re-anchored below
        stale = (self._anchor_frame < 0) | (self._anchor_frame <= self._frame - self.settings.anchor_span)
        self._anchor_frame[stale] = self._frame
        self._anchor_xy[stale] = refined[stale]
        return refined

    def _detection_mask(self, height: int, width: int, xy: np.ndarray, spacing: float) -> np.ndarray:
        import cv2

        mask = np.zeros((height, width), np.uint8)
        band = int(round(height * (0.5 - self.settings.max_latitude_deg / 180.0)))
        mask[band:height - band] = 255
        radius = max(1, int(round(spacing)))
        for x, y in xy:
            centre, row = int(round(x - 0.5)), int(round(y - 0.5))
            cv2.circle(mask, (centre, row), radius, 0, -1)
            if centre <= radius:  # the circle wraps past the left edge
                cv2.circle(mask, (centre + width, row), radius, 0, -1)
            if centre >= width - 1 - radius:
                cv2.circle(mask, (centre - width, row), radius, 0, -1)
        return mask

    def _detect(self, grey: np.ndarray, ids: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add corners where the frame has too few tracks."""
        import cv2

        height, width = grey.shape
        room = self.settings.max_features - len(ids)
        if room <= 0:
            return ids, xy
        spacing = self.settings.min_spacing * width
        mask = self._detection_mask(height, width, xy, spacing)
        corners = cv2.goodFeaturesToTrack(grey, maxCorners=room, qualityLevel=self.settings.quality,
                                          minDistance=spacing, mask=mask, blockSize=5)
        if corners is None:
            return ids, xy
        new_xy = corners.reshape(-1, 2).astype(np.float32) + 0.5
        new_ids = np.arange(self._next_id, self._next_id + len(new_xy), dtype=np.int64)
        self._next_id += len(new_xy)
        self._anchor_frame = np.concatenate([self._anchor_frame, np.full(len(new_xy), self._frame)])
        self._anchor_xy = np.concatenate([self._anchor_xy, new_xy])
        return np.concatenate([ids, new_ids]), np.concatenate([xy, new_xy])

    def track(self, grey: np.ndarray, corners: np.ndarray | None = None) -> TrackedFrame:
        """Follow the tracks into `grey` (uint8 [H, W], the next frame of the shot) and add corners.

        `corners`: the image to look for new corners in (default `grey`), e.g. a
        contrast-equalised copy. Tracking itself needs the frame's own brightness: an
        equalisation that depends on where content sits in the frame biases the flow.
        """
        height, width = grey.shape
        padded = pad_sphere(grey, self._pad(width))
        previous = len(self._ids)
        ids, xy = self._follow(padded, width)
        followed = len(ids)
        ids, xy = self._detect(grey if corners is None else corners, ids, xy)
        self._previous, self._ids, self._xy = padded, ids, xy
        self._images[self._frame] = padded
        self._images = {n: image for n, image in self._images.items() if n in set(self._anchor_frame.tolist())}
        self._frame += 1
        return TrackedFrame(ids.copy(), xy.copy(), followed, previous)

    def drop(self, ids: np.ndarray) -> None:
        """Stop following the tracks `ids` (found to be outliers)."""
        keep = ~np.isin(self._ids, ids)
        self._ids, self._xy = self._ids[keep], self._xy[keep]
        self._anchor_frame, self._anchor_xy = self._anchor_frame[keep], self._anchor_xy[keep]
