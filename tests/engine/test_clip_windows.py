"""The windows of a clip estimator (video.clip_windows): schedule, streaming, segments, reach.

A synthetic clip estimator stands in for the network: each frame is a constant image whose
value is its index, and the estimator returns, for every clip, that value under an affine
map of its own (seeded by the clip's frames), as a relative video network is consistent
within a clip and not across clips. Its results make every step checkable.
"""

from __future__ import annotations

import numpy as np
import pytest

from depth360.estimators.video import clip_windows as cw


class AffinePerClip:
    """predict_clip: the frames' values (index + 1) times a, plus b, a and b drawn per clip."""

    def __init__(self, height: int = 4, width: int = 6):
        self.shape = (height, width)
        self.clips: list[list[int]] = []

    def frame(self, index: int) -> np.ndarray:
        return np.full((*self.shape, 3), index / 1000.0, np.float32)

    def __call__(self, images, rays):
        indices = [int(round(v * 1000)) for v in images[:, 0, 0, 0, 0]]
        self.clips.append(indices)
        rng = np.random.default_rng(indices)
        a, b = rng.uniform(0.5, 2.0), rng.uniform(0.0, 0.5)
        ramp = np.linspace(0.9, 1.1, self.shape[1], dtype=np.float32)  # not constant: a well-posed fit
        values = np.array(indices, np.float32) + 1
        return np.broadcast_to(a * values[:, None, None, None] * ramp + b, images.shape[:4]).astype(np.float32)


def run(stream, indices, estimator) -> dict[int, np.ndarray]:
    results = [r for i in indices for r in stream.push(i, estimator.frame(i))] + stream.finish()
    numbers = [i for i, _ in results]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    return dict(results)


def test_window_schedule_is_the_official_one():
    assert cw.STRIDE == 22 and cw.KEYFRAMES == (0, 12, 24, 25, 26, 27, 28, 29, 30, 31)
    assert cw.window_frames(0) == list(range(32))
    assert cw.window_frames(1) == [0, 12, *range(24, 54)]
    assert cw.window_frames(2) == [0, 34, *range(46, 76)]  # position 0 stays the shot's first frame
    assert cw.window_frames(2, "local") == [24, 34, *range(46, 76)]
    assert [cw.frame_window(t) for t in (0, 31, 32, 53, 54)] == [0, 0, 1, 1, 2]
    np.testing.assert_allclose(cw.blend_weights(), np.arange(8) / 7)


def test_official_stream_emits_every_frame_once_aligned_to_the_first_window():
    estimator = AffinePerClip()
    stream = cw.OfficialVideoDepth(estimator)
    depth = run(stream, range(70), estimator)
    assert sorted(depth) == list(range(70))
    # windows at 0, 22, 44, 66 (the last padded with copies of frame 69)
    assert [clip[0] for clip in estimator.clips] == [0, 0, 0, 0] and estimator.clips[3][-1] == 69
    assert len(stream.alignments) == 3
    # Exact affine data: after alignment every frame is the first window's map of its value.
    first = estimator.clips[0]
    rng = np.random.default_rng(first)
    a, b = rng.uniform(0.5, 2.0), rng.uniform(0.0, 0.5)
    ramp = np.linspace(0.9, 1.1, 6)
    for t in (5, 30, 40, 60, 69):
        np.testing.assert_allclose(depth[t], np.broadcast_to(a * (t + 1) * ramp + b, (4, 6)), rtol=2e-5)


def test_frames_are_final_once_their_windows_ran():
    estimator = AffinePerClip()
    stream = cw.OfficialVideoDepth(estimator)
    emitted = {}
    for t in range(60):
        for index, _ in stream.push(t, estimator.frame(t)):
            emitted[index] = t
    assert emitted[0] == 31 and emitted[23] == 31 and emitted[24] == 53  # 24..31: blended with window 1
    assert emitted[32] == 53 and emitted[45] == 53 and 46 not in emitted  # waits for window 2
    with pytest.raises(ValueError, match="increasing order"):
        stream.push(59, estimator.frame(59))


@pytest.mark.parametrize("first", [25, 40, 70])
def test_a_local_segment_from_reach_gives_the_whole_runs_values_up_to_one_scale(first):
    """With local anchors, pushing only reach(t) of a chunk gives the whole run's values for it
    (window by window the alignment chain restarts: one affine map for the whole chunk)."""
    estimator = AffinePerClip()
    whole = run(cw.OfficialVideoDepth(estimator, anchor="local"), range(100), estimator)
    low = cw.reach(first, "local")[0]
    high = max(cw.reach(t, "local")[1] for t in range(first, first + 10))
    chunk = run(cw.OfficialVideoDepth(estimator, anchor="local"), range(low, min(high, 99) + 1), estimator)
    frames = list(range(first, first + 10))
    assert set(frames) <= set(chunk)
    x = np.concatenate([chunk[t].ravel() for t in frames])
    y = np.concatenate([whole[t].ravel() for t in frames])
    a, b = np.polyfit(x, y, 1)
    np.testing.assert_allclose(a * x + b, y, rtol=1e-5)


def test_a_jump_ends_the_segment_and_the_next_starts_on_the_same_grid():
    estimator = AffinePerClip()
    stream = cw.OfficialVideoDepth(estimator, anchor="local")
    depth = run(stream, [*range(0, 40), *range(64, 120)], estimator)
    # the first segment (0..39) is padded from frame 39 on; the second starts with window 4
    assert set(range(40)) <= set(depth) and not set(range(40, 98)) & set(depth)
    assert set(range(98, 120)) <= set(depth)  # window 4 (start 88) emits from its position 10 on
    assert estimator.clips[1][0] == 2 and max(estimator.clips[1]) == 39  # window 1, padded at the jump
    assert estimator.clips[2][:3] == [68, 78, 90]  # window 4: anchors s - 20 and s - 10, then s + 2


def test_metric_windows_are_only_blended():
    estimator = AffinePerClip()
    stream = cw.OfficialVideoDepth(estimator, metric=True)
    run(stream, range(50), estimator)
    assert stream.alignments == []


def test_scale_and_shift_is_the_least_squares_fit():
    x = np.linspace(0, 1, 50, dtype=np.float32).reshape(5, 10)
    scale, shift = cw.scale_and_shift(x, 3 * x - 0.5)
    assert scale == pytest.approx(3.0, rel=1e-5) and shift == pytest.approx(-0.5, abs=1e-5)
    assert cw.scale_and_shift(np.ones((2, 2)), np.ones((2, 2))) == (1.0, 0.0)  # singular: identity
