"""The pieces of the camera solve and of motion-compensated stabilisation, on synthetic data (issue 13).

Bearing-vector geometry (estimators/video/sphere_geometry.py), the wrap- and pole-aware
tracker (feature_tracks.py), reprojection between posed frames (reprojection.py), the
robust fit with a sky-sized majority (temporal.py), featureless frames, and the option
that turns the solve off (recorded, compared on resume).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from depth360.estimators import pipeline
from depth360.estimators.pipeline.frame_estimators import PlainFrameEstimator
from depth360.estimators.pipeline.resume import OptionsChangedError
from depth360.estimators.video import sphere_geometry as geometry
from depth360.estimators.video.camera_motion import CameraSolver, is_featureless, prepare_grey
from depth360.estimators.video.feature_tracks import FeatureTracker, pad_sphere
from depth360.estimators.video.reprojection import Pose, backward_sample, forward_warp
from depth360.estimators.video.small_systems import solve_spd
from depth360.estimators.video.temporal import robust_affine_fit


def _scene(rng, count=400):
    points = rng.normal(size=(count, 3))
    return points / np.linalg.norm(points, axis=1, keepdims=True) * rng.uniform(1.5, 6.0, (count, 1))


def _observe(rotation, centre, points, rng, noise=1e-3):
    v = (points - centre) @ rotation
    v = v / np.linalg.norm(v, axis=1, keepdims=True) + noise * rng.normal(size=v.shape)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _pose(i):
    return geometry.rotation_matrix(np.array([0.02, -0.01, 0.05]) * i), np.array([0.06, 0.02, 0.0]) * i


def test_essential_matrix_on_bearings_recovers_the_motion_despite_moving_points():
    rng = np.random.default_rng(0)
    points = _scene(rng)
    (r0, c0), (r1, c1) = _pose(0), _pose(3)
    b0, b1 = _observe(r0, c0, points, rng), _observe(r1, c1, points, rng)
    b1[:60] = _observe(r1, c1 + 0.4, points[:60], rng)  # 15% of the points moved on their own
    essential, inliers = geometry.ransac_essential(b0, b1, 0.005, rng)
    rotation, tau = geometry.decompose_essential(essential, b0[inliers], b1[inliers])
    true_tau = r0.T @ (c1 - c0) / np.linalg.norm(c1 - c0)
    assert geometry.rotation_angle_deg(rotation, r0.T @ r1) < 0.05
    assert np.degrees(np.arccos(np.clip(tau @ true_tau, -1, 1))) < 0.5
    assert not inliers[:60].any() and inliers[60:].mean() > 0.95
    rotation, _ = geometry.ransac_rotation(b0, _observe(r1, c0, points, rng), np.radians(1.0), rng)
    assert geometry.rotation_angle_deg(rotation, r0.T @ r1) < 0.05


def test_resection_and_bundle_adjustment_on_bearings():
    rng = np.random.default_rng(1)
    points = _scene(rng)
    poses = [_pose(i) for i in range(5)]
    bearings = [_observe(r, c, points, rng) for r, c in poses]
    r4, c4 = poses[4]
    rotation, centre = geometry.refine_pose(r4 @ geometry.rotation_matrix(np.array([0.01, 0.0, 0.0])), c4 + 0.05,
                                            points, bearings[4], 1e-3)
    assert geometry.rotation_angle_deg(rotation, r4) < 0.01 and np.linalg.norm(centre - c4) < 1e-3
    rotations = np.stack([r for r, _ in poses])
    centres = np.stack([c for _, c in poses])
    noisy_r, noisy_c = rotations.copy(), centres.copy()
    for k in range(2, 5):
        noisy_r[k] = noisy_r[k] @ geometry.rotation_matrix(rng.normal(scale=0.01, size=3))
        noisy_c[k] += rng.normal(scale=0.03, size=3)
    problem = geometry.BundleProblem(noisy_r, noisy_c, np.array([True, True, False, False, False]),
                                     points + rng.normal(scale=0.05, size=points.shape),
                                     np.repeat(np.arange(5), len(points)), np.tile(np.arange(len(points)), 5),
                                     np.concatenate(bearings))
    solved = geometry.bundle_adjust(problem, 1e-3)
    for k in range(5):
        assert geometry.rotation_angle_deg(solved.rotations[k], rotations[k]) < 0.03
        assert np.linalg.norm(solved.centres[k] - centres[k]) < 2e-3
    triangulated, _ = geometry.triangulate(centres[problem.pose_index],
                                           np.einsum("nij,nj->ni", rotations[problem.pose_index], problem.bearings),
                                           problem.point_index, len(points))
    assert np.median(np.linalg.norm(triangulated - points, axis=1) / np.linalg.norm(points, axis=1)) < 0.03


def test_the_batched_spd_solve_equals_lapack_and_stays_finite_on_a_flat_patch():
    """The tracker's Gauss-Newton systems: a stack of damped 6 x 6 normal matrices."""
    rng = np.random.default_rng(5)
    jacobian = rng.normal(size=(500, 6, 40)).astype(np.float32)
    normal = jacobian @ jacobian.transpose(0, 2, 1) + 1e-4 * np.eye(6, dtype=np.float32)
    rhs = rng.normal(size=(500, 6)).astype(np.float32)
    expected = np.linalg.solve(normal.astype(np.float64), rhs.astype(np.float64)[..., None])[..., 0]
    got = solve_spd(normal, rhs)
    assert got.dtype == np.float32 and got.shape == (500, 6)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # Texture along one direction only and the damping lost in round-off: a singular matrix.
    gradient = np.zeros((1, 6, 40), np.float32)
    gradient[0, 0] = 300.0 * rng.normal(size=40)
    flat = gradient @ gradient.transpose(0, 2, 1)
    assert np.isfinite(solve_spd(flat, np.ones((1, 6), np.float32))).all()
    assert solve_spd(np.zeros((0, 6, 6)), np.zeros((0, 6), np.float32)).shape == (0, 6)


def test_equirect_pixels_and_bearings_are_inverse():
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0, 64, 50), rng.uniform(0.5, 31.5, 50)
    back_x, back_y = geometry.bearing_pixels(geometry.equirect_bearings(x, y, 64, 32), 64, 32)
    np.testing.assert_allclose(back_x, x, atol=1e-9)
    np.testing.assert_allclose(back_y, y, atol=1e-9)
    np.testing.assert_allclose(geometry.equirect_bearings(np.array([32.0]), np.array([16.0]), 64, 32), [[1, 0, 0]],
                               atol=1e-12)  # the image centre looks along +X


def _texture(height=64, width=128, seed=3):
    rng = np.random.default_rng(seed)
    noise = cv2.resize(rng.uniform(0, 255, (height // 4, width // 4)), (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(noise, 0, 255).astype(np.uint8)


def test_the_sphere_pads_across_the_seam_and_over_the_poles():
    image = np.arange(8 * 16, dtype=np.int32).reshape(8, 16)
    padded = pad_sphere(image, 2)
    np.testing.assert_array_equal(padded[2:-2, 0:2], image[:, -2:])  # the seam wraps
    np.testing.assert_array_equal(padded[1, 2:-2], np.roll(image[0], 8))  # above the top: the opposite meridian
    np.testing.assert_array_equal(padded[-2, 2:-2], np.roll(image[-1], 8))  # below the bottom: likewise


def test_tracks_cross_the_seam_keeping_their_ids():
    image = _texture()
    tracker = FeatureTracker()
    first = tracker.track(image)
    positions = {int(i): xy for i, xy in zip(first.ids, first.xy, strict=True)}
    shift = 0
    for _ in range(12):  # turn the camera: content moves 3 px a frame, across the wrap
        shift += 3
        frame = tracker.track(np.roll(image, shift, axis=1))
    kept = [int(i) for i in frame.ids if int(i) in positions]
    assert len(kept) > 0.8 * len(positions)
    errors = []
    for track, xy in zip(frame.ids, frame.xy, strict=True):
        if int(track) in positions:
            expected = (positions[int(track)][0] + shift) % image.shape[1]
            errors.append(np.hypot((xy[0] - expected + 64) % 128 - 64, xy[1] - positions[int(track)][1]))
    assert np.median(errors) < 0.01 and np.percentile(errors, 95) < 0.05 and max(errors) < 0.5


def test_featureless_frames_are_black_flat_or_noise_only():
    rng = np.random.default_rng(5)
    assert is_featureless(np.zeros((64, 128), np.uint8), 10)
    assert is_featureless(np.clip(128 + rng.normal(0, 4, (64, 128)), 0, 255).astype(np.uint8), 10)
    assert not is_featureless(_texture(), 10)
    assert prepare_grey(np.zeros((128, 256, 3), np.float32), 64).shape == (32, 64)


def test_a_still_camera_has_no_structure_and_keeps_its_place():
    solver = CameraSolver()
    frames = []
    for number in range(1, 9):
        frames += solver.push(number, np.repeat(_texture()[..., None], 3, axis=2) / 255.0)
    frames += solver.finish()
    assert [f.status for f in frames] == ["start"] + ["rotation-only"] * 7
    assert all(not f.has_structure and np.allclose(f.location, 0) for f in frames)
    assert all(geometry.rotation_angle_deg(f.rotation, np.eye(3)) < 0.02 for f in frames)


def test_reprojection_moves_depth_with_the_camera():
    """A room of constant distance 4 around the origin seen from two places: exact inverse distances."""
    height, width = 32, 64
    from depth360.estimators.panorama.equirect import ray_directions

    rays = ray_directions(height, width).astype(np.float64)
    a = Pose(np.eye(3), np.zeros(3))
    b = Pose(geometry.rotation_matrix(np.array([0.0, 0.0, 0.3])), np.array([0.5, 0.2, 0.0]))

    def sphere_seen_from(pose):  # inverse distance to the sphere |X| = 4 along each ray of `pose`
        d = rays @ pose.rotation.T
        along = d @ pose.location
        return 1.0 / (-along + np.sqrt(along ** 2 - pose.location @ pose.location + 16.0))

    seen_a, seen_b = sphere_seen_from(a), sphere_seen_from(b)
    warped = forward_warp(seen_a, np.ones(seen_a.shape, bool), a, b, (height, width))
    defined = np.isfinite(warped)
    assert defined.mean() > 0.8
    np.testing.assert_allclose(warped[defined], seen_b[defined], rtol=0.02)
    sampled = backward_sample(seen_b.astype(np.float32), b, seen_a.astype(np.float32), np.ones(seen_a.shape, bool), a)
    np.testing.assert_allclose(sampled.expected, sampled.inverse, rtol=0.02)  # the two frames agree
    np.testing.assert_allclose(sampled.carried, seen_b, rtol=0.02)


def test_robust_fit_when_half_the_frame_is_sky():
    rng = np.random.default_rng(6)
    x = np.concatenate([np.full(5000, 0.05), rng.uniform(0.2, 1.0, 5000)])  # sky: one value, half the samples
    y = 1.7 * x - 0.08
    y[5000:] *= 1 + 0.005 * rng.standard_normal(5000)
    y[5000:5300] += 0.5  # a moving object
    scale, shift, inliers = robust_affine_fit(x, y)
    assert scale == pytest.approx(1.7, rel=5e-3) and shift == pytest.approx(-0.08, abs=3e-3)
    assert inliers[5300:].mean() > 0.9 and not inliers[5000:5300].any()


class _Shade:
    kind = "relative-disparity"

    def predict(self, images, rays):
        return (0.3 + images.mean(axis=-1) + 0.2 * np.abs(rays[..., 2])).astype(np.float32)


def test_the_camera_solve_is_recorded_and_a_rerun_without_it_is_refused(tmp_path):
    folder = tmp_path / "shot"
    folder.mkdir()
    for number in range(1, 5):
        frame = np.repeat(np.roll(_texture(), 2 * number, axis=1)[..., None], 3, axis=2)
        cv2.imwrite(str(folder / f"shot_{number:04d}.png"), frame)

    def run(**options):
        request = pipeline.EstimateRequest(inputs=(str(folder),), output_dir=str(tmp_path / "out"), **options)
        return pipeline.run(request, frame_estimator=PlainFrameEstimator(_Shade())).sources[0]

    run()
    sidecar = json.loads((tmp_path / "out" / "shot" / "shot.json").read_text())
    camera = sidecar["camera"]
    assert sorted(map(int, camera["frames"])) == [1, 2, 3, 4] and camera["cuts"] == []
    assert sidecar["recorded_options"]["depth"]["camera_solve"]["look_ahead"] == 12
    yaw = [np.degrees(geometry.rotation_vector(np.array(camera["frames"][str(n)]["rotation"])))[2] for n in (1, 4)]
    assert yaw[1] - yaw[0] == pytest.approx(3 * 2 * 360 / 128, abs=0.1)  # content 2 px a frame rightward: a left turn
    with pytest.raises(OptionsChangedError, match="--no-camera-solve: camera solve on -> off"):
        run(camera_solve=False)


def test_affine_refinement_of_no_template_or_an_empty_one_is_empty():
    """A frame whose tracks all lost their template frames (after a cut) refines nothing."""
    from depth360.estimators.video.feature_tracks import refine_affine

    image = cv2.GaussianBlur(np.random.default_rng(3).random((40, 80)).astype(np.float32), (0, 0), 2.0)
    assert refine_affine(image, [], 9) == []
    start = np.array([[20.0, 20.0], [40.0, 18.0]], np.float32)
    (empty, none_converged), (moved, converged) = refine_affine(
        image, [(image, np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)), (image, start, start + 0.3)], 9)
    assert empty.shape == (0, 2) and none_converged.shape == (0,)
    np.testing.assert_allclose(moved, start, atol=0.05)  # the patches are found where they are
    assert converged.all()
