"""Windows of a video network (Video Depth Anything) over a stream of frames, streamed.

A clip estimator (`predict_clip`, see models.plugins) sees at most 32 frames at once, so a
video goes through it in windows, exactly as the official `infer_video_depth` does:

- window k starts at frame s_k = 22 k (0-based) and holds 32 frames; from the second
  window on, its first 10 inputs are replaced by the previous window's inputs at positions
  0, 12, 24, 25, ..., 31 ("keyframes"), so window k (k >= 1) sees frames
  [a_k, s_k - 10, s_k + 2, ..., s_k + 31] where the anchor a_k is frame 0 of the shot
  (`anchor="official"`: every window keeps the first frame) or frame s_k - 20
  (`anchor="local"`: the previous window's position 2, so that a window depends on a
  fixed span of frames and a chunk of a shot can start anywhere; the 360 path uses it);
- window k's positions 10..31 are new frames; its positions 2..9 (frames s_k + 2 ..
  s_k + 9) are blended into the 8 previous results, weights 0, 1/7, ..., 1 on the new;
- a stream that ends (or breaks off) within a window is padded with copies of its last
  frame, and windows are run while they start before the end (the official padding).

How a window's output is brought in line with the previous ones is the subclass's:
`OfficialVideoDepth` does the official least-squares scale and shift against a
reference pair (metric models: none). `view_streams.ViewStreamFusion` aligns the views of
a 360 video. Frames are pushed in order with their 0-based index within the shot; a jump
in the indices ends the segment (as the end of the stream does) and the next frame starts
a new one, on the same window grid. A segment's first window emits from its position 10
on (positions 0 to 9 need the previous window); only the shot's window 0 emits them all.
`reach(t)` says which frames a run must push for frame t to come out as in a run over
the whole shot. Memory: one window of inputs and the 8 frames of the blend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

from ..models.plugins import check_clip_prediction

WINDOW = 32  # frames per window: Video Depth Anything's temporal tables
OVERLAP = 10  # inputs a window takes from the previous one
STRIDE = WINDOW - OVERLAP  # 22: new frames per window
INTERP = 8  # frames blended between consecutive windows
ALIGN = OVERLAP - INTERP  # 2: the positions the official alignment fits
KEYFRAMES = (0, 12, *range(WINDOW - INTERP, WINDOW))  # previous positions a window reuses
LOCAL_ANCHOR = 2  # with anchor="local", position 0 reuses the previous window's position 2
Anchor = Literal["official", "local"]


def window_frames(k: int, anchor: Anchor = "official") -> list[int]:
    """The 0-based shot frames that window k sees, position by position (module docstring)."""
    if k == 0:
        return list(range(WINDOW))
    start = STRIDE * k
    first = 0 if anchor == "official" else start - STRIDE + LOCAL_ANCHOR
    return [first, start - STRIDE + KEYFRAMES[1], *range(start + ALIGN, start + WINDOW)]


def frame_window(t: int) -> int:
    """The window whose positions 10..31 (or, for window 0, 0..31) hold frame t."""
    return 0 if t < WINDOW else (t - OVERLAP) // STRIDE


def reach(t: int, anchor: Anchor = "official") -> tuple[int, int]:
    """(first, last) 0-based frames whose inputs frame t's result depends on.

    A run that pushes every frame of that span (clipped to the shot) gives frame t as a run
    over the whole shot does: with `official` anchors that means from frame 0 on (and the
    official alignment chains every window to the first); with `local` ones, the frames of
    t's window and of the next one where t is blended.
    """
    k = frame_window(t)
    first = 0 if anchor == "official" or k == 0 else STRIDE * k - STRIDE + LOCAL_ANCHOR
    blended = t - STRIDE * k >= WINDOW - INTERP
    return first, STRIDE * (k + blended) + WINDOW - 1


def compact_frame(frame: np.ndarray) -> np.ndarray:
    """A float32 RGB frame as uint8 where that holds it exactly (decoded 8-bit footage), else as it is."""
    quantised = np.clip(np.rint(frame * np.float32(255)), 0, 255).astype(np.uint8)
    if np.array_equal(np.divide(quantised, np.float32(255), dtype=np.float32), frame):
        return quantised
    return frame


def restore_frame(frame: np.ndarray) -> np.ndarray:
    """The float32 frame `compact_frame` was given."""
    if frame.dtype == np.uint8:
        return np.divide(frame, np.float32(255), dtype=np.float32)
    return frame


def blend_weights() -> np.ndarray:
    """The official weights of the new window over the 8 blended frames: 0, 1/7, ..., 1."""
    step = 1.0 / (INTERP - 1)
    return np.array([0.0] + [i * step for i in range(1, INTERP - 1)] + [1.0])


class ClipStream:
    """Pushes frames into windows and runs them (module docstring); subclasses say what a window does.

    Subclasses implement `_run(k, items, first_in_segment) -> list[(index, result)]`: `items`
    are the 32 stored inputs of window k, position by position; the results are the frames
    that are final after this window (in order). `_flush() -> list[(index, result)]` gives the
    frames still held when a segment ends. `store(frame)` may turn a pushed frame into what is kept.
    """

    def __init__(self, anchor: Anchor = "official"):
        if anchor not in ("official", "local"):
            raise ValueError(f"anchor must be 'official' or 'local', got {anchor!r}")
        self.anchor = anchor
        self._items: dict[int, object] = {}
        self._segment_start: int | None = None
        self._last: int | None = None
        self._next = 0  # the next window to run
        self._first_window = 0  # the current segment's first window

    def store(self, frame):
        """What is kept of a pushed frame (default: the frame itself)."""
        return frame

    def push(self, index: int, frame) -> list[tuple[int, object]]:
        """Add frame `index` (0-based within the shot); the results that became final, in order."""
        if index < 0:
            raise ValueError(f"frame index must be >= 0, got {index}")
        out = []
        if self._last is not None and index <= self._last:
            raise ValueError(f"frames must be pushed in increasing order; got {index} after {self._last}")
        if self._last is not None and index != self._last + 1:
            out += self.end_segment()
        if self._segment_start is None:
            self._start_segment(index)
        self._items[index] = self.store(frame)
        self._last = index
        while self._last >= max(window_frames(self._next, self.anchor)):
            out += self._run_next()
        return out

    def end_segment(self) -> list[tuple[int, object]]:
        """End the current segment (a jump, or the end of the stream): pad, run, give every remaining result."""
        if self._segment_start is None:
            return []
        out = []
        last = self._last
        while STRIDE * self._next <= last:
            out += self._run_next(pad_after=last)
        out += self._flush()
        self._items.clear()
        self._segment_start = None
        return [(index, result) for index, result in out if index <= last]

    def finish(self) -> list[tuple[int, object]]:
        """The end of the stream: every remaining result."""
        return self.end_segment()

    def _start_segment(self, index: int) -> None:
        self._segment_start = index
        k = 0
        if index > 0:  # the first window whose inputs all lie in this segment
            k = 1
            while min(window_frames(k, self.anchor)) < index:
                k += 1
        self._next = self._first_window = k

    def _run_next(self, pad_after: int | None = None) -> list[tuple[int, object]]:
        k = self._next
        frames = window_frames(k, self.anchor)
        if pad_after is not None:
            frames = [min(f, pad_after) for f in frames]
        out = self._run(k, [self._items[f] for f in frames], k == self._first_window)
        self._next = k + 1
        keep = set(window_frames(k + 1, self.anchor)) | {self._last}
        for f in [f for f in self._items if f not in keep]:
            del self._items[f]
        return out

    def _run(self, k: int, items: list, first_in_segment: bool) -> list[tuple[int, object]]:
        raise NotImplementedError

    def _flush(self) -> list[tuple[int, object]]:
        raise NotImplementedError


def scale_and_shift(prediction: np.ndarray, target: np.ndarray) -> tuple[np.float32, np.float32]:
    """Least-squares (scale, shift) of `prediction` onto `target`, float32 sums as the official code.

    (1, 0) where the system is singular.
    """
    prediction = np.asarray(prediction, dtype=np.float32)
    target = np.asarray(target, dtype=np.float32)
    mask = np.ones_like(target)
    a_00 = np.sum(mask * prediction * prediction)
    a_01 = np.sum(mask * prediction)
    a_11 = np.sum(mask)
    b_0 = np.sum(mask * prediction * target)
    b_1 = np.sum(mask * target)
    det = a_00 * a_11 - a_01 * a_01
    if det == 0:
        return np.float32(1.0), np.float32(0.0)
    return (a_11 * b_0 - a_01 * b_1) / det, (-a_01 * b_0 + a_00 * b_1) / det


class OfficialVideoDepth(ClipStream):
    """`infer_video_depth` for one perspective stream, streamed: push frames, get depth frames.

    `predict_clip(images [T, 1, h, w, 3], rays) -> [T, 1, h, w]` is the clip estimator's call
    (models.plugins); `rays` float32 [h, w, 3] are the frames' rays (passed on, broadcast).
    `metric`: no scale and shift between windows (the official `metric` flag), only the blend.
    `source`: the estimator's name, for the message when its output has the wrong shape.
    With `anchor="local"` the reference pair is the previous window's positions 2 and 12 (the
    frames the next window sees at positions 0 and 1); the official one keeps the first frame.
    `alignments` records each later window's (scale, shift). Results are float32 [h, w] arrays.
    """

    def __init__(self, predict_clip: Callable, rays: np.ndarray | None = None, *, metric: bool = False,
                 anchor: Anchor = "official", source: str = "predict_clip"):
        super().__init__(anchor)
        self.predict_clip = predict_clip
        self.source = source
        self.rays = rays
        self.metric = metric
        self.alignments: list[tuple[float, float]] = []
        self._reference: list[np.ndarray] = []
        self._tail: list[tuple[int, np.ndarray]] = []

    def store(self, frame: np.ndarray) -> np.ndarray:
        """A frame in its compact form (8-bit where exact): a window of 4K frames stays small."""
        return compact_frame(np.asarray(frame, dtype=np.float32))

    def _predict(self, items: list) -> np.ndarray:
        images = np.stack([restore_frame(item) for item in items])[:, None]
        rays = None if self.rays is None else np.broadcast_to(self.rays, images.shape)
        return check_clip_prediction(self.predict_clip(images, rays), images, self.source)[:, 0]

    def _run(self, k: int, items: list, first_in_segment: bool) -> list[tuple[int, np.ndarray]]:
        depth = self._predict(items)
        start = STRIDE * k
        anchor = 0 if self.anchor == "official" else LOCAL_ANCHOR  # where the next window's position 0 is
        if first_in_segment:
            self._reference = [depth[anchor], depth[KEYFRAMES[1]]]
            first = 0 if k == 0 else OVERLAP
            final = [(start + i, depth[i]) for i in range(first, WINDOW - INTERP)]
            self._tail = [(start + i, depth[i]) for i in range(WINDOW - INTERP, WINDOW)]
            return final
        if self.metric:
            scale, shift = np.float32(1.0), np.float32(0.0)
        else:
            scale, shift = scale_and_shift(np.concatenate(depth[:ALIGN]), np.concatenate(self._reference))
            self.alignments.append((float(scale), float(shift)))

        def aligned(i: int) -> np.ndarray:
            return np.maximum(depth[i] * scale + shift, 0).astype(np.float32, copy=False)

        weights = blend_weights()
        final = [(index, (previous * (1 - w) + aligned(ALIGN + i) * w).astype(np.float32))
                 for i, ((index, previous), w) in enumerate(zip(self._tail, weights, strict=True))]
        final += [(start + i, aligned(i)) for i in range(OVERLAP, WINDOW - INTERP)]
        self._tail = [(start + i, aligned(i)) for i in range(WINDOW - INTERP, WINDOW)]
        first = self._reference[0] if self.anchor == "official" else aligned(anchor)
        self._reference = [first, aligned(KEYFRAMES[1])]
        return final

    def _flush(self) -> list[tuple[int, np.ndarray]]:
        tail, self._tail = self._tail, []
        return tail
