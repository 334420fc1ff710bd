"""Issue 5: omni-directional stereo (ODS) geometry and metric distance against Blender renders."""

from __future__ import annotations

import numpy as np
import pytest

from depth360.estimators.panorama.equirect import pixel_to_direction
from depth360.estimators.stereo.matching import estimate_stereo_equirect, match_disparity
from depth360.estimators.stereo.ods_geometry import (
    ods_disparity_from_distance,
    ods_distance_from_disparity,
    ods_eye_rays,
    ods_informative_rows,
    pole_merge_fade,
)
from tests.groundtruth import render_stereo

WIDTH = 2048
SAMPLES = 8
BAND_DEG = 60.0


@pytest.fixture(scope="module")
def room():
    # Rendered once (minutes on 2 cores), then read from tests/groundtruth's disk cache.
    return render_stereo("room", WIDTH, SAMPLES, ipd=0.064, pole_merge=(60.0, 75.0))


@pytest.fixture(scope="module")
def room_depth(room):
    return estimate_stereo_equirect(room.left_rgb, room.right_rgb, ipd=0.064, pole_merge=(60.0, 75.0))


def _band_rows(height: int) -> np.ndarray:
    theta = np.pi * (np.arange(height) + 0.5) / height
    return np.abs(90.0 - np.degrees(theta)) <= BAND_DEG


@pytest.mark.parametrize("convergence", [None, 1.95])
@pytest.mark.parametrize("polar_deg", [90.0, 60.0, 125.0, 22.0])
@pytest.mark.parametrize("distance", [0.4, 1.3, 4.0, 20.0])
def test_disparity_distance_round_trip_and_ray_tracing(convergence, polar_deg, distance):
    """The right eye's ray at the predicted longitude passes through the left eye's hit point."""
    theta = np.radians(polar_deg)
    geometry = dict(ipd=0.064, pole_merge=(60.0, 75.0), convergence_distance=convergence)
    delta = ods_disparity_from_distance(np.array(distance), np.array(theta), **geometry)
    back = ods_distance_from_disparity(delta, np.array(theta), max_distance=1e6, **geometry)
    if pole_merge_fade(np.array(theta)) == 0:
        assert delta == 0
        return
    assert back == pytest.approx(distance, rel=1e-6)
    origin, direction = ods_eye_rays(np.array(theta), np.array(0.3), "left", **geometry)
    along = origin @ direction
    hit = origin + (-along + np.sqrt(along**2 - origin @ origin + distance**2)) * direction
    assert np.linalg.norm(hit) == pytest.approx(distance, rel=1e-9)
    origin_r, direction_r = ods_eye_rays(np.array(theta), np.array(0.3 + delta), "right", **geometry)
    offset = hit - origin_r
    miss = np.linalg.norm(offset - (offset @ direction_r) * direction_r)
    assert miss < 1e-7 * distance


def test_pole_merge_fades_with_cosine_and_masks_rows():
    latitude = np.array([0.0, 60.0, 67.5, 75.0, 80.0])
    fade = pole_merge_fade(np.radians(90.0 - latitude), (60.0, 75.0))
    np.testing.assert_allclose(fade, [1.0, 1.0, np.cos(np.pi / 4), 0.0, 0.0], atol=1e-12)
    rows = ods_informative_rows(180, (60.0, 75.0))
    assert rows.sum() == 120 and rows[90] and not rows[0]


@pytest.mark.slow
def test_render_follows_the_geometry(room):
    """The rendered rays are the model's, and warping the right eye by the disparity predicted
    from ground-truth distance matches the left eye best at scale 1 (not 0.9 or 1.1, nor with
    the opposite sign)."""
    import cv2

    height, width = room.left_distance.shape
    rows, cols = np.meshgrid(np.arange(0, height, 7), np.arange(0, width, 13), indexing="ij")
    pixel_rays = pixel_to_direction(rows, cols, height, width)
    theta = np.pi * (rows + 0.5) / height
    phi = 2 * np.pi * (0.5 - (cols + 0.5) / width)
    for eye in ("left", "right"):
        _, model_rays = ods_eye_rays(theta, phi, eye)
        np.testing.assert_allclose(model_rays, pixel_rays, atol=1e-5)
        np.testing.assert_allclose(np.asarray(getattr(room, f"{eye}_ray"))[rows, cols], model_rays, atol=2e-3)
    theta = np.pi * (np.arange(height) + 0.5) / height
    distance = np.where(np.isfinite(room.left_distance), room.left_distance, 1e3)
    predicted = ods_disparity_from_distance(distance, theta[:, None]) * width / (2 * np.pi)
    left = cv2.GaussianBlur(np.asarray(room.left_rgb), (0, 0), 1.5)
    right = cv2.GaussianBlur(np.asarray(room.right_rgb), (0, 0), 1.5)
    rows = np.broadcast_to(np.arange(height)[:, None], (height, width)).astype(np.float32)
    band = _band_rows(height)
    errors = {}
    for scale in (-1.0, 0.9, 1.0, 1.1):
        columns = (np.arange(width)[None, :] - scale * predicted).astype(np.float32) % width
        warped = cv2.remap(right, columns, rows, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        errors[scale] = float(np.abs(warped - left)[band].mean())
    assert min(errors, key=errors.get) == 1.0, errors


@pytest.mark.slow
def test_room_distance_is_metric(room, room_depth):
    truth = np.asarray(room.left_distance)
    band = np.zeros(truth.shape, dtype=bool)
    band[_band_rows(truth.shape[0])] = True
    for array in (room_depth.distance, room_depth.disparity, room_depth.confidence):
        assert np.isfinite(array).all()
    assert room_depth.confidence.min() >= 0 and room_depth.confidence.max() <= 1
    assert (room_depth.confidence[~room_depth.mask] == 0).all()
    valid = room_depth.mask & band & np.isfinite(truth)
    estimate = room_depth.distance[valid]
    absrel = float(np.mean(np.abs(estimate - truth[valid]) / truth[valid]))
    delta1 = float(np.mean(np.maximum(estimate / truth[valid], truth[valid] / estimate) < 1.25))
    coverage = float(valid.sum() / band.sum())
    print(f"\nODS room {WIDTH}x{WIDTH // 2}, {SAMPLES} spp, |latitude| <= {BAND_DEG:.0f} deg: "
          f"AbsRel {absrel:.2%}, delta1 {delta1:.3f}, valid {coverage:.1%}")
    assert absrel <= 0.05
    assert delta1 >= 0.95
    assert coverage >= 0.80
    assert not room_depth.mask[~ods_informative_rows(truth.shape[0])[:, None].repeat(truth.shape[1], 1)].any()
    assert (room_depth.distance[~room_depth.mask] == 100.0).all()


@pytest.mark.slow
def test_object_across_the_seam_is_matched_on_both_sides(room, room_depth):
    truth = np.asarray(room.left_distance)
    on_box = np.asarray(room.eye("left").mask("box_wrap"))
    width = truth.shape[1]
    for side, columns in (("left edge", slice(0, 24)), ("right edge", slice(width - 24, width))):
        pixels = on_box[:, columns]
        assert pixels.sum() > 200, side
        valid = room_depth.mask[:, columns] & pixels
        assert valid.sum() >= 0.8 * pixels.sum(), side
        error = np.abs(room_depth.distance[:, columns][valid] - truth[:, columns][valid]) / truth[:, columns][valid]
        assert np.median(error) < 0.05, side


def test_wrap_padding_matches_across_the_seam():
    """A near patch straddling column 0 is matched on both sides only when columns wrap."""
    import cv2

    rng = np.random.default_rng(3)
    height, width = 128, 256
    texture = cv2.resize(rng.random((64, 128, 3), dtype=np.float32), (width, height),
                         interpolation=cv2.INTER_CUBIC)
    disparity = np.full((height, width), 2.0, dtype=np.float32)
    columns = np.arange(width)
    across = (columns < 20) | (columns >= width - 20)
    disparity[40:90, across] = 8.0
    map_x = ((columns[None, :] - disparity) % width).astype(np.float32)  # left(x) = right(x - d)
    map_y = np.broadcast_to(np.arange(height)[:, None], (height, width)).astype(np.float32)
    left = cv2.remap(texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    right = texture
    wrapped = match_disparity(left, right, min_disparity=0, max_disparity=16, wrap=True)
    inside = np.zeros((height, width), dtype=bool)
    inside[45:85] = across
    inside[:, [18, 19, width - 20, width - 19]] = False  # leave the patch's own edges out
    for name, part in (("left of seam", slice(0, 18)), ("right of seam", slice(width - 18, width))):
        region = inside[:, part]
        good = np.abs(wrapped.disparity[:, part][region] - 8.0) <= 0.5
        assert good.mean() > 0.95, name
        assert wrapped.mask[:, part][region].mean() > 0.9, name
    clamped = match_disparity(left, right, min_disparity=0, max_disparity=16, wrap=False)
    assert clamped.mask[45:85, :8].mean() < 0.05  # without wrapping the seam columns find no match


@pytest.mark.slow
def test_equirect_input_checks(room):
    with pytest.raises(ValueError, match="twice as wide"):
        estimate_stereo_equirect(np.zeros((100, 100, 3)), np.ones((100, 100, 3)))
    with pytest.raises(ValueError, match="mono image passed as stereo"):
        estimate_stereo_equirect(room.left_rgb, room.left_rgb)


@pytest.mark.slow
def test_swapped_eyes_warn(room):
    import cv2

    left = cv2.resize(np.asarray(room.left_rgb), (512, 256), interpolation=cv2.INTER_AREA)
    right = cv2.resize(np.asarray(room.right_rgb), (512, 256), interpolation=cv2.INTER_AREA)
    with pytest.warns(UserWarning, match="eyes look swapped"):
        estimate_stereo_equirect(right, left)
