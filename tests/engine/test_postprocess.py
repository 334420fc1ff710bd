"""Post-processing (estimators/postprocess.py): hole filling, filters, edge-aware upsampling, far field."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from depth360.estimators import postprocess
from tests.groundtruth import render_mono

SHAPES = st.tuples(st.integers(3, 12), st.integers(4, 16))


@st.composite
def maps_with_holes(draw):
    height, width = draw(SHAPES)
    values = draw(arrays(np.float32, (height, width), elements=st.floats(0.125, 10.0, width=32)))
    valid = draw(arrays(bool, (height, width)))
    if not valid.any():
        valid[draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))] = True
    shift = draw(st.integers(0, width - 1))
    return values, valid, shift


@settings(max_examples=60, deadline=None)
@given(maps_with_holes())
def test_fill_holes_fills_every_invalid_pixel_and_keeps_valid_ones(case):
    values, valid, _ = case
    values = np.where(valid, values, np.nan).astype(np.float32)
    filled = postprocess.fill_holes(values, valid)
    assert np.all(np.isfinite(filled))
    np.testing.assert_array_equal(filled[valid], values[valid])
    low, high = values[valid].min(), values[valid].max()
    assert filled.min() >= low - 1e-5 and filled.max() <= high + 1e-5  # averages of valid values


@settings(max_examples=60, deadline=None)
@given(maps_with_holes())
def test_fill_holes_has_no_seam_at_the_wrap(case):
    values, valid, shift = case
    rolled = postprocess.fill_holes(np.roll(values, shift, axis=1), np.roll(valid, shift, axis=1))
    np.testing.assert_allclose(rolled, np.roll(postprocess.fill_holes(values, valid), shift, axis=1), rtol=1e-6)


def test_fill_holes_crosses_the_seam():
    values = np.zeros((4, 10), np.float32)
    valid = np.zeros((4, 10), bool)
    values[:, 0], valid[:, 0] = 5.0, True
    values[:, 5], valid[:, 5] = 1.0, True
    filled = postprocess.fill_holes(values, valid)
    assert filled[0, 9] == 5.0 and filled[0, 1] == 5.0  # both neighbours of column 0 across the seam
    with pytest.raises(ValueError, match="no valid pixel"):
        postprocess.fill_holes(values, np.zeros_like(valid))


@settings(max_examples=30, deadline=None)
@given(maps_with_holes(), st.sampled_from(["median", "bilateral", "none"]))
def test_smoothing_filters_have_no_seam_at_the_wrap(case, method):
    values, _, shift = case
    smoothed = postprocess.smooth(values, method)
    assert smoothed.shape == values.shape and np.all(np.isfinite(smoothed))
    np.testing.assert_allclose(
        postprocess.smooth(np.roll(values, shift, axis=1), method), np.roll(smoothed, shift, axis=1), rtol=1e-5
    )


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 31), st.integers(0, 2**31 - 1))
def test_upsampling_has_no_seam_at_the_wrap(shift, seed):
    rng = np.random.default_rng(seed)
    low = rng.uniform(0.1, 1.0, (4, 8)).astype(np.float32)
    guide = rng.uniform(0.0, 1.0, (16, 32, 3)).astype(np.float32)
    for upsample in (
        lambda d, g: postprocess.bilinear_upsample(d, 16, 32),
        lambda d, g: postprocess.joint_bilateral_upsample(d, g, edge_threshold=0.05, min_change=0.0),
    ):
        out = upsample(low, guide)
        # rolling the low-resolution map by 1 sample rolls the output by 4 pixels
        rolled = upsample(np.roll(low, shift % 8, axis=1), np.roll(guide, 4 * (shift % 8), axis=1))
        np.testing.assert_allclose(rolled, np.roll(out, 4 * (shift % 8), axis=1), rtol=1e-5, atol=1e-6)


def test_median_removes_an_outlier_and_bilateral_keeps_an_edge():
    values = np.ones((9, 18), np.float32)
    values[4, 0] = 50.0
    assert postprocess.median_smooth(values)[4, 0] == 1.0
    step = np.where(np.arange(18) < 9, 1.0, 3.0).astype(np.float32)[None].repeat(9, 0)
    smoothed = postprocess.bilateral_smooth(step, 5, sigma_value=0.1)
    np.testing.assert_allclose(smoothed, step, atol=1e-3)


def test_mark_far_field_clamps_and_masks():
    distance = np.array([[1.0, 99.95, 150.0, np.inf]], np.float32)
    mask = np.array([[True, True, True, False]])
    out, valid = postprocess.mark_far_field(distance, mask, 100.0)
    np.testing.assert_array_equal(out, [[1.0, 100.0, 100.0, 100.0]])
    np.testing.assert_array_equal(valid, [[True, False, False, False]])


def _abs_rel(estimate, truth, where):
    return float(np.mean(np.abs(estimate[where] - truth[where]) / truth[where]))


@pytest.mark.slow
def test_edge_aware_upsampling_beats_bilinear_at_depth_edges():
    """A 4x smaller ground-truth depth brought back to full size, guided by the colour render."""
    truth = render_mono("room", 256, 16)
    disparity = (1.0 / truth.distance).astype(np.float32)
    height, width = disparity.shape
    low = cv2.resize(disparity, (width // 4, height // 4), interpolation=cv2.INTER_AREA)
    bilinear = postprocess.bilinear_upsample(low, height, width)
    refined = postprocess.joint_bilateral_upsample(low, truth.rgb)
    kernel = np.ones((3, 3), np.float32)
    high, small = cv2.dilate(disparity, kernel), cv2.erode(disparity, kernel)
    edges = (high - small) / high > 0.15  # true depth discontinuities
    band = cv2.dilate(edges.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0  # 3 pixels either side
    band_bilinear, band_refined = _abs_rel(bilinear, disparity, band), _abs_rel(refined, disparity, band)
    rest_bilinear, rest_refined = _abs_rel(bilinear, disparity, ~band), _abs_rel(refined, disparity, ~band)
    print(f"AbsRel band: bilinear {band_bilinear:.4f}, edge-aware {band_refined:.4f}; "
          f"elsewhere: bilinear {rest_bilinear:.5f}, edge-aware {rest_refined:.5f}")
    assert band_refined < 0.9 * band_bilinear
    assert rest_refined <= rest_bilinear
    # exactly bilinear wherever the low-resolution depth is smooth
    smooth = postprocess.bilinear_upsample(postprocess.depth_edges(low, threshold=0.35), height, width) == 0
    np.testing.assert_array_equal(refined[smooth], bilinear[smooth])
