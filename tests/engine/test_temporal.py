"""Temporal stabilisation (estimators/temporal.py): the oracle flicker test of issue 6, chunk rule."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from depth360.estimators import pipeline
from depth360.estimators.media import image_io
from depth360.estimators.panorama import equirect
from depth360.estimators.pipeline.frame_estimators import PlainFrameEstimator
from depth360.estimators.video import temporal
from tests.groundtruth import render_sequence

FRAMES, WIDTH, SAMPLES = 16, 128, 4


class FlickeringOracle:
    """True disparity of the matching ground-truth frame, with a random per-frame scale in
    [0.7, 1.4], a shift up to +-20% of its mean and 0.5% multiplicative noise (seeded per frame)."""

    kind = "relative-disparity"

    def __init__(self, truths):
        self.rgbs = np.stack([t.rgb for t in truths])
        self.disparities = [1.0 / t.distance for t in truths]

    def predict(self, images, rays):
        out = []
        for image in images:
            index = int(np.argmin(np.abs(self.rgbs - image[None]).mean(axis=(1, 2, 3))))
            rng = np.random.default_rng(1000 + index)
            truth = self.disparities[index]
            scale, shift = rng.uniform(0.7, 1.4), rng.uniform(-0.2, 0.2) * truth.mean()
            out.append(scale * truth * (1 + 0.005 * rng.standard_normal(truth.shape)) + shift)
        return np.stack(out).astype(np.float32)


def affine_fit(estimate, truth):
    a, b = np.linalg.lstsq(np.stack([estimate, np.ones_like(estimate)], 1), truth, rcond=None)[0]
    return a, b


def flicker_and_abs_rel(disparity, valid, truths):
    """(mean relative frame-to-frame change on static pixels, mean AbsRel on the moving object).

    Flicker is measured in true-disparity units after ONE affine fit over the whole shot
    (so it cannot hide per-frame changes); AbsRel after a per-frame affine fit (issue 4).
    """
    truth = np.stack([1.0 / t.distance for t in truths])
    mover = np.stack([t.mask("mover") for t in truths])
    near_mover = np.stack([cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0 for m in mover])
    a, b = affine_fit(disparity[valid], truth[valid])
    shot = a * disparity + b
    changes = []
    for t in range(1, len(truths)):
        static = ~near_mover[t] & ~near_mover[t - 1] & valid[t] & valid[t - 1]
        changes.append(np.mean(np.abs(shot[t][static] - shot[t - 1][static]) / np.abs(shot[t - 1][static])))
    abs_rel = []
    for t in range(len(truths)):
        a, b = affine_fit(disparity[t][valid[t]], truth[t][valid[t]])
        on = mover[t] & valid[t]
        abs_rel.append(np.mean(np.abs(a * disparity[t][on] + b - truth[t][on]) / truth[t][on]))
    return float(np.mean(changes)), float(np.mean(abs_rel))


@pytest.fixture(scope="module")
def room_sequence(tmp_path_factory):
    truths = render_sequence("room_moving", FRAMES, WIDTH, SAMPLES)
    folder = tmp_path_factory.mktemp("room") / "room"
    folder.mkdir()
    for number, truth in enumerate(truths, start=1):
        cv2.imwrite(str(folder / f"room_{number:04d}.png"), np.round(truth.rgb[..., ::-1] * 65535).astype(np.uint16))
    return truths, folder


def raw_disparity(folder, truths):
    """The estimator's own output, frame by frame: what the pipeline gets (the raw flicker)."""
    oracle = FlickeringOracle(truths)
    frames = [image_io.read_image(path) for path in sorted(folder.iterdir())]
    rays = equirect.ray_directions(*frames[0].shape[:2])
    return np.stack([oracle.predict(frame[None], rays[None])[0] for frame in frames])


def stabilised_disparity(folder, out, truths):
    """The pipeline's disparity (1 / calibrated distance), its mask, and where calibration did not clamp it."""
    request = pipeline.EstimateRequest(inputs=(str(folder),), output_dir=str(out), save=("disparity", "distance", "mask"))
    pipeline.run(request, frame_estimator=PlainFrameEstimator(FlickeringOracle(truths)))
    numbers = range(1, FRAMES + 1)
    disparity = np.stack([image_io.read_exr(out / "room" / f"disparity_{n:05d}.exr") for n in numbers])
    distance = np.stack([image_io.read_exr(out / "room" / f"distance_{n:05d}.exr") for n in numbers])
    mask = np.stack([image_io.read_exr(out / "room" / f"mask_{n:05d}.exr") > 0.5 for n in numbers])
    near, far = 1.0, 100.0  # the defaults; the near/far rule clamps about 2% of pixels to each
    return disparity, mask, mask & (distance > near) & (distance < far)


@pytest.mark.slow
def test_oracle_flicker_is_removed_without_hurting_moving_objects(room_sequence, tmp_path):
    """Scored where the calibration did not clamp, the same pixels for both (clamping is not stabilisation)."""
    truths, folder = room_sequence
    stable, mask, scored = stabilised_disparity(folder, tmp_path / "stable", truths)
    raw = raw_disparity(folder, truths)
    flicker_raw, abs_rel_raw = flicker_and_abs_rel(raw, scored, truths)
    flicker_stable, abs_rel_stable = flicker_and_abs_rel(stable, scored, truths)
    print(f"flicker: {flicker_raw:.4f} raw, {flicker_stable:.4f} stabilised; "
          f"mover AbsRel: {abs_rel_raw:.5f} raw, {abs_rel_stable:.5f} stabilised; "
          f"valid {mask.mean():.3f}, unclamped {scored.mean():.3f}")
    assert flicker_raw >= 0.10
    assert flicker_stable <= 0.01
    assert abs_rel_stable <= 1.10 * abs_rel_raw
    assert mask.mean() > 0.95


def test_robust_affine_fit_ignores_outliers():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1.0, 2000)
    y = 2.5 * x - 0.3 + 1e-4 * rng.standard_normal(x.size)
    y[:300] += rng.uniform(0.5, 2.0, 300)  # a moving object: 15% of the samples disagree
    scale, shift, inliers = temporal.robust_affine_fit(x, y)
    assert scale == pytest.approx(2.5, rel=1e-3) and shift == pytest.approx(-0.3, abs=1e-3)
    assert not inliers[:300].any()


def test_window_rule_makes_a_late_start_equal_a_whole_run():
    """Frame t depends on frames t - context .. t only: starting later with that context gives the same."""
    rng = np.random.default_rng(3)
    settings = temporal.StabiliserSettings(reference_window=3, filter_window=2)
    base = rng.uniform(0.2, 1.0, (16, 32)).astype(np.float32)
    colour = np.repeat(base[..., None], 3, axis=2)
    frames = [(rng.uniform(0.5, 2.0) * base + rng.uniform(-0.1, 0.1)).astype(np.float32) for _ in range(12)]
    valid = np.ones(base.shape, bool)

    def run(first):
        stabiliser = temporal.TemporalStabiliser("relative-disparity", 1.0, 100.0, settings)
        return {n: stabiliser.push(n, frames[n - 1], valid, colour).disparity for n in range(first, 13)}

    whole = run(1)
    start = 9 - settings.context_frames
    late = run(start)
    for number in range(9, 13):
        np.testing.assert_array_equal(late[number], whole[number])
    assert not np.array_equal(late[start], whole[start])  # context frames themselves differ
    for number in range(2, 13):  # aligned frames agree with each other (shot units)
        np.testing.assert_allclose(whole[number], whole[1], rtol=1e-4, atol=1e-5)
