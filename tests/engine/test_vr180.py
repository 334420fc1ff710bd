"""Issue 14, point 3: VR180 stereo (two parallel half-equirect eyes), engine side.

Geometry against the model of stereo/vr180_geometry.py and against Cycles (a VR180 render:
Blender's equirect camera limited to +-90 degrees, two parallel eyes 64 mm apart), metric
distance from the left eye of a random room rendered as VR180 at 1024 x 1024 per eye (the
angular resolution of a 2048-wide 360 eye), stereo-guided VR180, and the messages for a
VR180 frame given as 360 stereo and the reverse (point 5). Run with `pytest -s` for figures.
"""

from __future__ import annotations

import functools
import textwrap

import cv2
import numpy as np
import pytest

from depth360.estimators import cli
from depth360.estimators.stereo import vr180_geometry as geometry
from tests.engine.test_stereo_rooms import describe, figures, run_still
from tests.groundtruth import render_vr180

WIDTH, SAMPLES, SEED = 1024, 8, 0


@functools.lru_cache(maxsize=2)
def pair(width: int = WIDTH, samples: int = SAMPLES):
    return render_vr180("room_random", width, samples, seed=SEED)


def _write(path, frame: np.ndarray):
    assert cv2.imwrite(str(path), np.round(np.clip(frame, 0, 1)[..., ::-1] * 255).astype(np.uint8))
    return path


@pytest.mark.parametrize("gamma_deg", [-70.0, -20.0, 0.0, 35.0, 80.0])
@pytest.mark.parametrize("distance", [0.4, 1.5, 6.0, 40.0])
def test_disparity_and_distance_are_inverse_and_follow_the_rays(gamma_deg, distance):
    gamma = np.radians(gamma_deg)
    delta = geometry.vr180_disparity_from_distance(distance, gamma, ipd=0.064)
    assert delta > 0
    assert geometry.vr180_distance_from_disparity(delta, gamma, ipd=0.064, max_distance=1e6) == pytest.approx(distance)
    left_eye, right_eye = geometry.eye_positions(0.064)
    beta = 0.4  # any epipolar plane
    def direction(g):
        return np.array([np.cos(g) * np.cos(beta), np.sin(g), np.cos(g) * np.sin(beta)])
    point = left_eye + distance * direction(gamma)
    seen = (point - right_eye) / np.linalg.norm(point - right_eye)
    np.testing.assert_allclose(seen, direction(gamma + delta), atol=1e-12)


def test_rectification_maps_round_trip():
    """A rectified pixel's direction lands in the half-equirect eye where that eye's own direction,
    taken back to the rectified grid, is the same pixel."""
    size = 64
    rows, cols = geometry._half_equirect_pixel(geometry.rectified_directions(size), size)
    theta, phi = np.pi * (rows + 0.5) / size, np.pi * (0.5 - (cols + 0.5) / size)
    directions = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], axis=-1)
    back_rows, back_cols = geometry._rectified_pixel(directions, size)
    np.testing.assert_allclose(back_rows, np.broadcast_to(np.arange(size)[:, None], (size, size)), atol=1e-9)
    np.testing.assert_allclose(back_cols, np.broadcast_to(np.arange(size)[None, :], (size, size)), atol=1e-9)
    assert (rows > -0.5).all() and (rows < size - 0.5).all() and (cols > -0.5).all() and (cols < size - 0.5).all()


@pytest.mark.slow
def test_the_render_follows_the_geometry():
    """Warping the rectified right eye by the disparity predicted from the true distance matches the
    rectified left eye best at scale 1 (not 0.9 or 1.1, nor with the opposite sign)."""
    rendered = pair(256, 4)
    assert np.abs(np.asarray(rendered.left_ray) - geometry.half_equirect_directions(256)).max() < 1e-4
    left, right = geometry.rectify(np.asarray(rendered.left_rgb)), geometry.rectify(np.asarray(rendered.right_rgb))
    distance = geometry.rectify(np.asarray(rendered.left_distance), interpolation="linear")
    _, gamma = geometry.rectified_angles(256)
    rows = np.broadcast_to(np.arange(256)[:, None], (256, 256)).astype(np.float32)
    errors = {}
    for scale in (-1.0, 0.9, 1.0, 1.1):
        shift = scale * geometry.vr180_disparity_from_distance(distance, gamma[None, :]) * 256 / np.pi
        warped = cv2.remap(right, (np.arange(256)[None, :] - shift).astype(np.float32), rows, cv2.INTER_LINEAR)
        errors[scale] = float(np.abs(warped - left)[24:-24, 24:-24].mean())
    assert min(errors, key=errors.get) == 1.0, errors


@pytest.mark.slow
def test_vr180_stereo_is_metric_within_8_m(tmp_path):
    rendered = pair()
    path = _write(tmp_path / "vr.png", rendered.side_by_side())
    distance, mask = run_still(path, tmp_path / "out", model="stereo", layout="vr180")
    truth = np.asarray(rendered.left_distance)
    assert distance.shape == truth.shape == (WIDTH, WIDTH)
    result = figures(distance, mask, truth, band_deg=90.0)
    print("\n" + describe(f"VR180 room seed {SEED}, {WIDTH}x{WIDTH} per eye, {SAMPLES} spp, within 8 m", result))
    assert result["absrel"] <= 0.04 and result["delta1"] >= 0.95 and result["coverage"] >= 0.8
    along_baseline = np.abs(geometry.half_equirect_directions(WIDTH)[..., 1]) > np.cos(np.radians(5.0))
    assert mask[along_baseline].mean() < 0.2  # within 5 degrees of the epipoles nothing is measurable


@pytest.mark.slow
def test_vr180_stereo_edges_move_onto_the_plates(tmp_path):
    """Issue 15 for VR180: the edge step on the rectified eyes (sizes at VR180's 180 degrees per eye
    width), through the CLI with --edges none, auto and snap (the plate's segmentation as well); scored as the
    ODS rooms are (tests.engine.test_edges)."""
    from tests.engine import edge_figures as ef

    rendered = pair()
    path = _write(tmp_path / "vr.png", rendered.side_by_side())
    truth, rays = np.asarray(rendered.left_distance), np.asarray(rendered.left_ray).astype(np.float64)
    spheres = ef.straddling_spheres(truth, np.asarray(rendered.left_object_index), rays, wrap=False)
    results = {}
    for edges in ("none", "auto", "snap"):
        distance, mask = run_still(path, tmp_path / edges, model="stereo", layout="vr180", edges=edges)
        results[edges] = {"wrong": ef.wrong_side_share(distance, truth, wrap=False),
                          "iou": [ef.composite_iou(distance, truth, rays, sphere) for sphere in spheres],
                          "absrel": ef.outside_band_absrel(distance, truth, mask, max_distance=20.0, wrap=False)}
        ious = "/".join(f"{iou:.3f}" for iou in results[edges]["iou"])
        print(f"\nVR180 room seed {SEED} --edges {edges}: wrong side {results[edges]['wrong']:.1%}, IoU {ious}, "
              f"AbsRel off the edges {results[edges]['absrel']:.2%}")
    before, after = results["none"], results["auto"]
    assert after["wrong"] <= 0.85 * before["wrong"] and np.mean(after["iou"]) >= np.mean(before["iou"]) + 0.03
    assert after["absrel"] <= before["absrel"] + 0.001
    segmented = results["snap"]
    assert segmented["wrong"] <= after["wrong"] and segmented["absrel"] <= before["absrel"] + 0.001


@pytest.mark.slow
def test_vr180_stereo_guided_with_the_oracle(tmp_path):
    from depth360.estimators.stereo.guided import _embed_half, estimate_guided
    from tests.engine.test_fusion_oracle import OracleEstimator

    rendered = pair()
    truth = np.asarray(rendered.left_distance)
    oracle = OracleEstimator(_embed_half(truth[..., None])[..., 0], seed=5, ramp=0.1)  # the network sees the embedded eye
    result = estimate_guided(rendered.left_rgb, rendered.right_rgb, oracle, vr180=True)
    guided = figures(result.distance, result.mask, truth, band_deg=90.0, max_distance=20.0)
    stereo = figures(result.stereo.distance, result.stereo.mask, truth, band_deg=90.0, max_distance=20.0)
    print(f"\nVR180 guided, {WIDTH} per eye, +-10% ramp oracle: AbsRel {guided['absrel']:.2%}, coverage "
          f"{guided['coverage']:.1%} (stereo alone {stereo['absrel']:.2%}, {stereo['coverage']:.1%})")
    assert result.distance.shape == truth.shape and guided["coverage"] == 1.0 and guided["absrel"] <= 0.02


def test_a_vr180_frame_given_as_360_stereo_to_a_network_is_told_its_layout(tmp_path, capsys):
    """Stereo-guided too: the frame's shape is checked before anything is written."""
    plugin = tmp_path / "flat.py"
    plugin.write_text(textwrap.dedent("""
        import numpy as np
        class Flat:
            kind = "relative-disparity"
            def predict(self, images, rays):
                return np.ones(images.shape[:3], np.float32)
        def make():
            return Flat()
    """))
    frame = np.random.default_rng(1).random((64, 128, 3))
    path = _write(tmp_path / "vr.png", frame)
    args = ["estimate", str(path), "-o", str(tmp_path / "out"), "--model", f"python:{plugin}:make"]
    assert cli.main([*args, "--layout", "top-bottom"]) == 2
    assert "give --layout vr180" in capsys.readouterr().err
    square = _write(tmp_path / "tb.png", np.random.default_rng(2).random((128, 128, 3)))
    assert cli.main(["estimate", str(square), "-o", str(tmp_path / "out"), "--model", "stereo",
                     "--layout", "vr180"]) == 2
    assert "looks like 360 top-bottom stereo (--layout top-bottom)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
