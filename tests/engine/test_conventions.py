"""The equirect convention of DESIGN.md (estimators/equirect.py) against Blender renders.

Ground truth comes from Cycles in a worker subprocess (tests/groundtruth); this process
never loads Blender. Stereo finding (Blender's omni-directional stereo, parallel
convergence): both eyes trace the pixel's own direction; the left eye's ray starts
ipd / 2 to the viewer's left of the camera centre (for a ray along +X: at +Y), so a near
object appears further right (larger column) in the left image, by
2 asin((ipd / 2) / horizontal distance) of longitude in total. The Z pass of either eye is
the distance from the camera centre (not from the eye) to the surface point.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from depth360.estimators.panorama.equirect import direction_to_pixel, ray_directions
from tests import groundtruth

MARKER_WIDTH = 256
EQUATOR_MARKERS = ("marker+X", "marker+Y", "marker-X")


def _markers() -> groundtruth.GroundTruth:
    return groundtruth.render_mono("markers", width=MARKER_WIDTH, samples=4)


def _expected_pixel(truth: groundtruth.GroundTruth, location) -> tuple[float, float]:
    row, col = direction_to_pixel(np.asarray(location, dtype=np.float64), truth.height, truth.width)
    return float(row), float(col)


def _circular_mean_column(mask: np.ndarray) -> float:
    """Mean column of a mask on the wrapping longitude axis, in [-0.5, W - 0.5)."""
    width = mask.shape[1]
    cols = np.nonzero(mask)[1]
    angle = np.angle(np.exp(2j * np.pi * (cols + 0.5) / width).mean())
    return float(np.mod(angle / (2 * np.pi), 1.0) * width - 0.5)


def _column_gap(a: float, b: float, width: int) -> float:
    gap = abs(a - b) % width
    return min(gap, width - gap)


@pytest.mark.parametrize("name", EQUATOR_MARKERS)
def test_equator_markers_appear_at_their_convention_column(name):
    truth = _markers()
    mask = truth.mask(name)
    row, col = _expected_pixel(truth, truth.object(name).location)
    assert mask.sum() > 20
    assert _column_gap(_circular_mean_column(mask), col, truth.width) < 1.0
    assert abs(np.nonzero(mask)[0].mean() - row) < 1.0


def test_plus_y_is_a_quarter_and_plus_x_the_centre_and_minus_x_the_wrap():
    truth = _markers()
    width = truth.width
    assert _circular_mean_column(truth.mask("marker+Y")) == pytest.approx(0.25 * width - 0.5, abs=1.0)
    assert _circular_mean_column(truth.mask("marker+X")) == pytest.approx(0.5 * width - 0.5, abs=1.0)
    wrap_cols = np.nonzero(truth.mask("marker-X"))[1]
    assert (wrap_cols < 8).any() and (wrap_cols >= width - 8).any()
    assert np.all((wrap_cols < 8) | (wrap_cols >= width - 8))
    assert _column_gap(_circular_mean_column(truth.mask("marker-X")), -0.5, width) < 1.0


def test_zenith_marker_fills_the_top_rows():
    truth = _markers()
    mask = truth.mask("marker+Z")
    marker = truth.object("marker+Z")
    angular_radius = np.arcsin(0.25 / np.linalg.norm(marker.location))
    last_row = angular_radius / np.pi * truth.height - 0.5
    rows = np.nonzero(mask)[0]
    assert mask[0].all()  # the whole top row looks at the zenith
    assert rows.max() <= last_row + 1.0
    assert not truth.mask("marker+Z")[-truth.height // 2:].any()


def test_rendered_rays_are_the_convention_rays():
    truth = groundtruth.render_mono("sphere", width=MARKER_WIDTH, samples=1, radius=3.0)
    expected = ray_directions(truth.height, truth.width)
    pixel_angle = 2 * np.pi / truth.width
    assert np.abs(truth.ray - expected).max() < 0.05 * pixel_angle
    rows, cols = direction_to_pixel(truth.ray, truth.height, truth.width)
    grid_rows, grid_cols = np.indices((truth.height, truth.width))
    assert np.abs(rows - grid_rows).max() < 0.05
    col_error = np.abs(cols - grid_cols)
    assert np.minimum(col_error, truth.width - col_error).max() < 0.05


@pytest.mark.parametrize("radius", [3.0, 0.7])
def test_distance_inside_a_sphere_is_its_radius_everywhere(radius):
    truth = groundtruth.render_mono("sphere", width=MARKER_WIDTH, samples=1, radius=radius)
    assert truth.distance.shape == (MARKER_WIDTH // 2, MARKER_WIDTH)
    assert np.isfinite(truth.distance).all()
    assert np.abs(truth.distance / radius - 1.0).max() < 0.005


def test_sky_is_infinitely_far_and_has_no_object():
    truth = groundtruth.render_mono("room", width=128, samples=1, sky=True)
    top = slice(0, truth.height // 8)
    assert np.isinf(truth.distance[top]).all()
    assert (truth.object_index[top] == 0).all()
    assert truth.rgb[top, :, 2].mean() > truth.rgb[top, :, 0].mean()  # blue sky
    bottom = slice(truth.height // 2, None)
    assert np.isfinite(truth.distance[bottom]).all()
    assert (truth.distance[bottom] > 0.9).all() and (truth.distance[bottom] < 7.0).all()


@pytest.mark.slow
def test_moving_object_follows_its_location_through_a_sequence():
    frames = groundtruth.render_sequence("room_moving", frames=3, width=128, samples=1)
    assert [truth.frame for truth in frames] == [1, 2, 3]
    columns = []
    for truth in frames:
        location = truth.object("mover").location
        row, col = _expected_pixel(truth, location)
        mask = truth.mask("mover")
        assert mask.sum() > 10
        assert _column_gap(_circular_mean_column(mask), col, truth.width) < 1.5
        columns.append(col)
    assert frames[1].object("mover").location[1] - frames[0].object("mover").location[1] == pytest.approx(0.25)
    assert columns[0] > columns[1] > columns[2]  # moving toward +Y: toward u = 0.25


def _right_eye_pixel(stereo: groundtruth.StereoGroundTruth) -> tuple[np.ndarray, np.ndarray]:
    """Fractional right-eye column of every left-eye pixel's surface point, and its latitude."""
    height, width = stereo.left_distance.shape
    rays = ray_directions(height, width).astype(np.float64)
    half_ipd = stereo.ipd / 2
    up = np.array([0.0, 0.0, 1.0])
    left_side = np.cross(up, rays)
    left_side /= np.linalg.norm(left_side, axis=-1, keepdims=True)
    distance = stereo.left_distance.astype(np.float64)
    along = np.sqrt(np.maximum(distance**2 - half_ipd**2, 0.0))
    points = half_ipd * left_side + along[..., None] * rays
    horizontal = np.hypot(points[..., 0], points[..., 1])
    shift = 2 * np.arcsin(np.clip(half_ipd / horizontal, 0.0, 1.0)) * width / (2 * np.pi)
    cols = np.arange(width)[None, :] - shift
    latitude = np.pi / 2 - np.arccos(np.clip(rays[..., 2], -1.0, 1.0))
    return cols, latitude


def _sample_columns(image: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Linear interpolation of `image` [H, W, C] along wrapping columns, per row."""
    width = image.shape[1]
    c0 = np.floor(cols).astype(int)
    t = (cols - c0)[..., None]
    rows = np.arange(image.shape[0])[:, None]
    return (1 - t) * image[rows, c0 % width] + t * image[rows, (c0 + 1) % width]


@pytest.mark.slow
def test_ods_stereo_left_eye_matches_mono_and_right_eye_is_shifted_by_the_ipd():
    stereo = groundtruth.render_stereo("room", width=512, samples=4, ipd=0.064)
    mono = groundtruth.render_mono("room", width=512, samples=1)
    assert np.array_equal(stereo.left_ray, mono.ray) and np.array_equal(stereo.right_ray, mono.ray)
    relative = np.abs(stereo.left_distance / mono.distance - 1.0)
    assert np.median(relative) < 1e-3
    assert (relative < 0.01).mean() > 0.95  # only occlusion edges move

    cols, latitude = _right_eye_pixel(stereo)
    rows = np.arange(cols.shape[0])[:, None]
    same_surface = stereo.right_object_index[rows, np.rint(cols).astype(int) % cols.shape[1]] == stereo.left_object_index
    shift = np.arange(cols.shape[1])[None, :] - cols
    # Away from the pole merge, not occluded, and with a disparity worth telling apart.
    usable = (np.abs(latitude) < np.radians(30)) & same_surface & (shift > 1.5)
    assert usable.mean() > 0.05

    def warp_error(right_cols):
        warped = _sample_columns(stereo.right_rgb.astype(np.float64), right_cols)
        return np.abs(warped - stereo.left_rgb)[usable].mean()

    predicted = warp_error(cols)
    assert predicted < 0.02
    assert predicted < 0.5 * warp_error(cols + shift)  # no disparity
    assert predicted < 0.4 * warp_error(cols + 2 * shift)  # eyes swapped
    # Pole merge (60..75 degrees): beyond 75 degrees both eyes sit at the centre.
    def eye_difference(rows):
        return np.abs(stereo.left_rgb[rows] - stereo.right_rgb[rows]).mean()

    row_latitude = np.degrees(latitude[:, 0])
    polar = eye_difference(np.abs(row_latitude) > 76)
    assert polar < 0.25 * eye_difference(np.abs(row_latitude) < 30)
    for name in ("box_near", "cylinder_near"):
        left_col = np.nonzero(stereo.eye("left").mask(name))[1].mean()
        right_col = np.nonzero(stereo.eye("right").mask(name))[1].mean()
        assert left_col - right_col > 3.0  # the left eye sees near objects further right


def test_second_call_is_served_from_the_caches():
    arguments = {"scene": "sphere", "width": 32, "samples": 1, "radius": 1.5}
    groundtruth.clear_memory_cache()
    first = groundtruth.render_mono(**arguments)  # renders only if not on disk yet
    runs = groundtruth.worker_runs()
    start = time.perf_counter()
    again = groundtruth.render_mono(**arguments)
    assert again.distance is first.distance  # the in-process memo
    groundtruth.clear_memory_cache()
    from_disk = groundtruth.render_mono(**arguments)
    elapsed = time.perf_counter() - start
    assert groundtruth.worker_runs() == runs
    assert elapsed < 1.0
    assert np.array_equal(from_disk.distance, first.distance)
    assert np.array_equal(from_disk.rgb, first.rgb)
    with pytest.raises(ValueError):
        from_disk.distance[0, 0] = 0.0


def test_unknown_scene_parameter_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="takes parameters.*no_such_parameter"):
        groundtruth.render_mono("sphere", width=16, samples=1, no_such_parameter=1.0)


def test_this_process_never_loads_blender():
    _markers()
    assert "bpy" not in sys.modules
