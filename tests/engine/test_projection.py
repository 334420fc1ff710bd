"""Equirect <-> perspective views: layouts, rays, sampling at the poles and across the wrap."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from depth360.estimators.panorama.blending import blend_to_equirect, border_weight
from depth360.estimators.panorama.equirect import ray_directions
from depth360.estimators.panorama.projection import (
    View,
    default_view_size,
    equirect_to_views,
    equirect_views,
    footprint,
    ico_views,
    look_at,
    make_views,
    planar_to_ray_disparity,
)


def smooth_field(directions: np.ndarray) -> np.ndarray:
    """A smooth function on the sphere (continuous at the poles and across the wrap)."""
    d = np.asarray(directions, dtype=np.float64)
    return 2.0 + 0.6 * d[..., 0] - 0.4 * d[..., 1] + 0.5 * d[..., 2] + 0.3 * d[..., 0] * d[..., 2]


def test_cube_views_look_along_the_axes_unmirrored():
    views = make_views("cube", 256, 512)
    assert len(views) == 6
    forwards = np.array([v.forward for v in views])
    expected = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    np.testing.assert_allclose(forwards, expected, atol=1e-12)
    for v in views:
        m = v.matrix
        np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(m) == pytest.approx(1.0)
        assert v.fov_deg == 110.0
        assert (v.height, v.width) == (default_view_size(110.0, 512),) * 2
    # The +X view shows the panorama's centre the same way round: columns of the
    # equirect image increase left to right in the view too, and the zenith is up.
    cols = np.broadcast_to(np.arange(512, dtype=np.float32), (256, 512))
    rows = np.broadcast_to(np.arange(256, dtype=np.float32)[:, None], (256, 512))
    front = views[0]
    col_in_view, row_in_view = equirect_to_views(np.stack((cols, rows), axis=-1), (front,))[0].transpose(2, 0, 1)
    assert np.all(np.diff(col_in_view[front.height // 2]) > 0)
    assert np.all(np.diff(row_in_view[:, front.width // 2]) > 0)


def test_ico_views_are_the_twenty_face_centres():
    views = make_views("ico", 256, 512)
    assert len(views) == 20
    centres = np.array([v.forward for v in views])
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 1.0, atol=1e-12)
    nearest = [min(math.degrees(math.acos(np.clip(a @ b, -1, 1))) for b in np.delete(centres, i, 0)) for i, a in enumerate(centres)]
    np.testing.assert_allclose(nearest, 41.81, atol=0.01)  # neighbouring face centres of an icosahedron
    # Every direction is within the faces' circumradius (37.38 deg) of some centre.
    rays = ray_directions(64, 128).reshape(-1, 3).astype(np.float64)
    worst = math.degrees(math.acos((rays @ centres.T).max(axis=1).min()))
    assert worst <= 37.39


def test_view_rays_are_unit_and_centred_on_the_axis():
    view = View(look_at((1.0, 2.0, -0.5)), 100.0, 60, 80)
    rays = view.rays()
    assert rays.shape == (60, 80, 3) and rays.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rays, axis=-1), 1.0, atol=1e-6)
    centre = rays[29:31, 39:41].reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(centre / np.linalg.norm(centre), view.forward, atol=1e-6)
    # Horizontal field of view: the outer pixel edges are fov/2 from the axis.
    edge = math.degrees(math.atan((view.width / 2) / view.focal_px))
    assert edge == pytest.approx(50.0)
    np.testing.assert_allclose(view.cos_to_axis(), rays @ view.forward.astype(np.float32), atol=1e-6)


def test_footprint_inverts_the_view_rays():
    """Equirect pixels seen by a view land on the view pixels whose rays point at them."""
    view = make_views("cube", 128, 256)[4]  # the zenith view: covers the pole
    height, width = 128, 256
    fp = footprint(view, height, width)
    rays_eq = ray_directions(height, width).reshape(-1, 3)[fp.pixels]
    ray_at = fp.sample(view.rays()).astype(np.float64)
    ray_at /= np.linalg.norm(ray_at, axis=-1, keepdims=True)
    inner = (np.abs(fp.a) < 0.95) & (np.abs(fp.b) < 0.95)
    assert np.degrees(np.arccos(np.clip((ray_at[inner] * rays_eq[inner]).sum(-1), -1, 1))).max() < 0.05
    assert fp.pixels.size > 0 and np.all(np.abs(fp.a) <= 1) and np.all(np.abs(fp.b) <= 1)


@pytest.mark.parametrize("preset", ["cube", "ico"])
def test_sampling_into_views_matches_the_field_at_poles_and_wrap(preset):
    height, width = 128, 256
    field = smooth_field(ray_directions(height, width))
    views = make_views(preset, height, width)
    for view, sampled in zip(views, equirect_to_views(field, views), strict=True):
        truth = smooth_field(view.rays())
        assert np.abs(sampled - truth).max() < 2e-3, view.forward


def test_sampling_across_the_pole_is_continuous():
    """A view straight up sees no seam where longitudes meet at the zenith."""
    height, width = 64, 128
    # A field that is continuous on the sphere but whose pixels differ a lot near the pole
    # between opposite longitudes: sampling must mirror across the pole, not clamp.
    d = ray_directions(height, width).astype(np.float64)
    field = d[..., 0] * 5.0
    view = View(look_at((0, 0, 1), up=(1, 0, 0)), 30.0, 32, 32)
    sampled = equirect_to_views(field, (view,))[0]
    truth = view.rays()[..., 0] * 5.0
    assert np.abs(sampled - truth).max() < 0.02


def test_view_straddling_the_wrap_samples_both_sides():
    height, width = 64, 128
    cols = np.broadcast_to(np.arange(width, dtype=np.float32), (height, width))
    back = View(look_at((-1, 0, 0)), 60.0, 32, 32)  # centred on the 0/360 seam
    sampled = equirect_to_views(np.sin(2 * np.pi * (cols + 0.5) / width), (back,))[0]
    truth = np.sin(2 * np.pi * (0.5 - np.arctan2(back.rays()[..., 1], back.rays()[..., 0]) / (2 * np.pi)))
    assert np.abs(sampled - truth).max() < 0.01


@pytest.mark.parametrize("preset", ["cube", "ico", "equirect"])
def test_round_trip_views_to_equirect(preset):
    height, width = 128, 256
    field = smooth_field(ray_directions(height, width))
    views = make_views(preset, height, width)
    merged, weight = blend_to_equirect(equirect_to_views(field, views), views, height, width)
    assert np.all(weight > 0), "every equirect pixel is seen by some view"
    err = np.abs(merged - field)
    assert err.max() < 3e-3
    # The bands where seams would show: poles and the wrap.
    assert err[:4].max() < 3e-3 and err[-4:].max() < 3e-3 and err[:, [0, 1, -2, -1]].max() < 3e-3


def test_equirect_view_round_trip_is_exact():
    image = np.random.default_rng(0).random((32, 64)).astype(np.float32)
    views = equirect_views(32, 64)
    sampled = equirect_to_views(image, views)[0]
    np.testing.assert_allclose(sampled, image, atol=1e-5)
    merged, _ = blend_to_equirect([sampled], views, 32, 64)
    np.testing.assert_allclose(merged, image, atol=1e-5)


def test_blend_weights_vanish_at_view_borders():
    a = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    w = border_weight(a, np.zeros_like(a))
    np.testing.assert_allclose(w, [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-6)
    # A view's share of the blend fades to ~0 at its border, so the border leaves no step.
    height, width = 128, 256
    views = make_views("cube", height, width)
    ones = [np.ones((v.height, v.width), dtype=np.float32) for v in views]
    _, total = blend_to_equirect(ones, views, height, width)
    for view in views:
        fp = footprint(view, height, width)
        share = border_weight(fp.a, fp.b) / total.ravel()[fp.pixels]
        at_border = np.maximum(np.abs(fp.a), np.abs(fp.b)) > 0.97
        assert at_border.any() and share[at_border].max() < 0.01


def test_planar_to_ray_disparity_of_a_plane():
    """A wall at x = 2: planar depth z = 2 in the +X view, distance = 2 / cos."""
    view = View(look_at((1, 0, 0)), 90.0, 16, 16)
    planar = np.full((16, 16), 0.5, dtype=np.float32)  # 1 / z
    distance = 2.0 / view.rays()[..., 0]
    np.testing.assert_allclose(planar_to_ray_disparity(planar, view), 1.0 / distance, rtol=1e-5)


def test_view_layout_errors_are_named():
    with pytest.raises(ValueError, match="field of view"):
        make_views("cube", 64, 128, fov_deg=80.0)
    with pytest.raises(ValueError, match="field of view"):
        make_views("ico", 64, 128, fov_deg=60.0)
    with pytest.raises(ValueError, match="unknown view preset"):
        make_views("octahedron", 64, 128)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="parallel"):
        look_at((0, 0, 1), up=(0, 0, 2))
    with pytest.raises(ValueError, match="size"):
        View(look_at((1, 0, 0)), 90.0, 0, 10)


def test_views_are_hashable_and_sampling_grids_cached():
    a = ico_views(90.0, 32)
    b = ico_views(90.0, 32)
    assert a == b and hash(a) == hash(b)
    assert footprint(a[0], 32, 64) is footprint(b[0], 32, 64)
    assert len({v.forward.tobytes() for v in a}) == 20
    assert all(np.isclose(np.linalg.det(v.matrix), 1.0) for v in a)
    assert len(list(itertools.combinations(a, 2))) == 190
