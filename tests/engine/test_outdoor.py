"""Issue 12: outdoor 360, with sky at infinity, far ground and open space, on random layouts.

Layouts: `outdoor` ground-truth scenes of several seeds (a textured and a plain ground),
each with 8-15 objects at 2-40 m, a sun, and sky over about half the frame. The oracle is
issue 4's (each view's true inverse planar depth under a random scale and shift, 0.5%
noise, optionally a +-10% ramp), and its sky is what a relative network gives there: the
view's shift (its affine map of zero disparity) plus the same noise; the second oracle
lifts its sky by 2% of the view's range, smoothly varying. Scored as issue 4 does:
AbsRel after one global affine fit over finite pixels away from depth edges, overall and
per band. Run with `pytest -s` to see the figures (the rooms' are in test_fusion_oracle).
"""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from depth360.estimators.media.image_io import read_exr
from depth360.estimators.panorama.fusion import estimate_equirect
from depth360.estimators.postprocess.calibration import relative_to_distance
from depth360.estimators.stereo import estimate_stereo_equirect
from tests.engine.test_fusion_oracle import (
    dilate,
    discontinuities,
    sample_equirect,
    view_border_band,
)
from tests.groundtruth import render_mono, render_stereo

WIDTH = 512
LAYOUTS = {"seed 1": dict(seed=1), "seed 2": dict(seed=2), "seed 3, plain ground": dict(seed=3, ground="plain")}
DEPTH360 = Path(sys.executable).with_name("depth360")


@functools.lru_cache(maxsize=8)
def layout(name: str):
    return render_mono("outdoor", WIDTH, samples=4, **LAYOUTS[name])


class SkyOracle:
    """Issue 4's relative oracle, whose sky is the view's shift plus noise (a network's floor)."""

    kind = "relative-disparity"

    def __init__(self, distance: np.ndarray, seed: int, ramp: float = 0.0, sky_lift: float = 0.0, noise=0.005,
                 sky_noise: bool = True):
        self.disparity = np.where(np.isfinite(distance), 1.0 / distance, 0.0)
        self.rng = np.random.default_rng(seed)
        self.ramp, self.sky_lift, self.noise, self.sky_noise = ramp, sky_lift, noise, sky_noise

    def predict(self, images: np.ndarray, rays: np.ndarray) -> np.ndarray:
        return np.stack([self._view(view_rays) for view_rays in rays.astype(np.float64)])

    def _view(self, rays: np.ndarray) -> np.ndarray:
        axis = rays.reshape(-1, 3).mean(axis=0)
        inverse = sample_equirect(self.disparity, rays)
        if np.linalg.norm(axis) > 0.5:  # a pinhole view: inverse planar depth
            inverse = inverse / (rays @ (axis / np.linalg.norm(axis)))
        sky = inverse <= 0
        d = inverse * self.rng.uniform(0.5, 2.0)
        h, w = d.shape
        y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
        if self.ramp:
            angle = self.rng.uniform(0.0, 2.0 * np.pi)
            d = d * (1.0 + self.ramp * (np.cos(angle) * x + np.sin(angle) * y))
        d = d * (1.0 + self.noise * self.rng.standard_normal(d.shape))
        spread = np.ptp(d)
        if self.sky_lift:
            d = d + sky * self.sky_lift * spread * (1.0 + 0.5 * np.sin(2.0 * x + y))
        level = np.median(np.abs(d[~sky])) if (~sky).any() else 1.0
        if self.sky_noise:
            d = d + sky * self.noise * level * self.rng.standard_normal(d.shape)
        return (d + self.rng.uniform(-0.3, 0.3) * spread).astype(np.float32)


def bands(truth, disparity: np.ndarray, views) -> dict[str, float]:
    """AbsRel after a global affine fit over finite pixels away from depth edges, overall and per band."""
    height, width = truth.distance.shape
    valid = np.isfinite(truth.distance) & ~dilate(discontinuities(truth.distance, truth.object_index), 2)
    g = np.where(valid, 1.0 / np.where(valid, truth.distance, 1.0), 0.0)
    a, b = np.polyfit(disparity[valid].astype(np.float64), g[valid], 1)
    rel = np.abs(a * disparity + b - g) / np.where(valid, g, 1.0)
    rows = max(1, round(0.05 * height))
    poles = np.zeros_like(valid)
    poles[:rows] = poles[-rows:] = True
    wrap = np.zeros_like(valid)
    wrap[:, [0, 1, width - 2, width - 1]] = True
    parts = {"overall": valid, "view borders": view_border_band(views, height, width), "poles": poles, "wrap": wrap}
    return {name: float(rel[valid & part].mean()) for name, part in parts.items() if (valid & part).any()}


def sky_scores(truth, sky: np.ndarray) -> tuple[float, float]:
    """(share of the true sky found, share of finite pixels wrongly taken as sky)."""
    true_sky = ~np.isfinite(truth.distance)
    return float(sky[true_sky].mean()), float(sky[~true_sky].mean())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LAYOUTS))
@pytest.mark.parametrize("preset", ["cube", "ico"])
@pytest.mark.parametrize("ramp, limit", [(0.0, 0.01), (0.1, 0.02)])
def test_fusion_outdoors_is_seam_free_and_finds_the_sky(name, preset, ramp, limit):
    truth = layout(name)
    result = estimate_equirect(truth.rgb, SkyOracle(truth.distance, seed=11, ramp=ramp), preset, calibrate=False)
    figures = bands(truth, result.disparity, result.views)
    found, wrong = sky_scores(truth, result.sky)
    print(f"\n{name}, {preset}, ramp {ramp:.0%}: " + ", ".join(f"{k} {v:.2%}" for k, v in figures.items())
          + f"; sky found {found:.2%}, finite taken as sky {wrong:.3%}")
    for band, value in figures.items():
        assert value <= limit, band
    assert found >= 0.99 and wrong <= 0.005
    assert not result.mask[result.sky].any()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_camera_over_open_flat_ground_with_a_flat_sky(seed):
    """The first frame of `outdoor_walk` layouts: the camera 1.6 m over flat ground, so the cube's
    bottom view is one flat value (inverse planar depth of a plane facing it), and a network's
    sky exactly flat. Most view pairs then lie in the sky (disparity near 0); they must not
    outweigh the ground (they did: the alignment fell back to identity, the lower half was noise)."""
    from tests.moving_camera import render

    truth = render("outdoor_walk", WIDTH, 24, 4, seed)[0]
    for preset in ("cube", "ico"):
        oracle = SkyOracle(truth.distance, seed=31 + seed, sky_noise=False)
        result = estimate_equirect(truth.rgb, oracle, preset, calibrate=False)
        figures = bands(truth, result.disparity, result.views)
        found, wrong = sky_scores(truth, result.sky)
        print(f"\noutdoor_walk seed {seed}, {preset}, flat ground below, flat sky: "
              + ", ".join(f"{k} {v:.2%}" for k, v in figures.items())
              + f"; sky found {found:.2%}, finite taken as sky {wrong:.3%}")
        assert all(value <= 0.01 for value in figures.values()), figures
        assert found >= 0.99 and wrong <= 0.005


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_a_sky_above_the_floor_is_found_too(name):
    """The second oracle: sky at the view's shift plus 2% of its range, smoothly varying."""
    truth = layout(name)
    for preset in ("cube", "ico"):
        result = estimate_equirect(truth.rgb, SkyOracle(truth.distance, seed=21, sky_lift=0.02), preset,
                                   calibrate=False)
        found, wrong = sky_scores(truth, result.sky)
        print(f"\n{name}, {preset}, lifted sky: found {found:.2%}, finite taken as sky {wrong:.3%}")
        assert found >= 0.99 and wrong <= 0.005


def test_indoors_nothing_is_sky():
    truth = render_mono("room", WIDTH, samples=4)
    result = estimate_equirect(truth.rgb, SkyOracle(truth.distance, seed=5), "cube", calibrate=False)
    assert not result.sky.any()


def test_calibration_ignores_the_sky():
    """A frame with half sky calibrates its finite pixels as the same frame with the sky cut out by hand."""
    truth = layout("seed 1")
    sky = ~np.isfinite(truth.distance)
    assert 0.4 <= sky.mean() <= 0.6
    result = estimate_equirect(truth.rgb, SkyOracle(truth.distance, seed=7), "cube", near=1.0, far=100.0)
    by_hand, _ = relative_to_distance(result.disparity, 1.0, 100.0, valid=~sky)
    finite = ~sky & result.mask
    difference = np.abs(result.distance[finite] - by_hand[finite]) / by_hand[finite]
    sky_in, _ = relative_to_distance(result.disparity, 1.0, 100.0)  # the sky left in the percentiles
    before = np.abs(sky_in[finite] - by_hand[finite]) / by_hand[finite]
    print(f"\ncalibration with 50% sky: {np.median(difference):.3%} from the hand-masked frame "
          f"(sky left in: {np.median(before):.1%})")
    assert np.median(difference) <= 0.01 and np.percentile(difference, 95) <= 0.01
    assert np.all(result.distance[result.sky] == 100.0) and result.sky[sky].mean() >= 0.99


PLUGINS = {
    "constant": "np.full(images.shape[:3], 0.3, np.float32)",
    "noise": "(0.3 + 0.002 * np.random.default_rng(0).standard_normal(images.shape[:3])).astype(np.float32)",
}


@pytest.mark.parametrize("picture", ["flat colour", "straight up"])
@pytest.mark.parametrize("output", list(PLUGINS))
def test_an_all_sky_frame_gives_a_warning_and_a_valid_output(tmp_path, picture, output):
    if picture == "flat colour":
        rgb = np.zeros((64, 128, 3), np.uint8)
        rgb[:] = (225, 190, 140)
    else:  # a sky gradient over the whole frame, as looking up into a clear sky
        rows = np.linspace(0, 1, 64)[:, None, None]
        rgb = np.round(255 * ((1 - rows) * np.array([0.95, 0.75, 0.35]) + rows * np.array([0.9, 0.85, 0.8])))
        rgb = np.broadcast_to(rgb, (64, 128, 3)).astype(np.uint8)
    image = tmp_path / "sky.png"
    assert cv2.imwrite(str(image), np.ascontiguousarray(rgb))
    plugin = tmp_path / "model.py"
    plugin.write_text(textwrap.dedent(f"""
        import numpy as np
        class Model:
            kind = "relative-disparity"
            def predict(self, images, rays):
                return {PLUGINS[output]}
        def make():
            return Model()
    """))
    out = tmp_path / "out"
    result = subprocess.run([str(DEPTH360), "estimate", str(image), "-o", str(out), "--model",
                             f"python:{plugin}:make", "--save", "distance,disparity,mask"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "nothing but sky" in result.stderr and "Traceback" not in result.stderr
    assert np.all(read_exr(out / "sky.distance.exr") == 100.0)
    assert np.all(read_exr(out / "sky.mask.exr") == 0.0) and np.all(read_exr(out / "sky.disparity.exr") == 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_stereo_of_an_open_landscape(seed):
    """Outdoor ODS at 2048 per eye: answered (not refused), accurate within 8 m, sky off the mask."""
    pair = render_stereo("outdoor", width=2048, samples=8, seed=seed)
    result = estimate_stereo_equirect(pair.left_rgb, pair.right_rgb, ipd=0.064, pole_merge=(60.0, 75.0))
    truth = np.asarray(pair.left_distance)
    height = truth.shape[0]
    latitude = 90.0 - 180.0 * (np.arange(height) + 0.5) / height
    band = (np.abs(latitude) <= 60.0)[:, None] & np.isfinite(truth) & (truth <= 8.0)
    scored = band & result.mask
    rel = np.abs(result.distance[scored] - truth[scored]) / truth[scored]
    ratio = np.maximum(result.distance[scored] / truth[scored], truth[scored] / result.distance[scored])
    coverage = scored.sum() / band.sum()
    sky = ~np.isfinite(truth)
    print(f"\noutdoor stereo, seed {seed}: AbsRel {rel.mean():.2%}, delta1 {(ratio < 1.25).mean():.3f}, "
          f"coverage {coverage:.1%}; sky on the mask {result.mask[sky].mean():.3%}")
    assert rel.mean() <= 0.05 and (ratio < 1.25).mean() >= 0.95 and coverage >= 0.8
    assert result.mask[sky].mean() <= 0.01
    assert np.all(result.distance[~result.mask] == 100.0)


@pytest.mark.slow
def test_a_video_outdoors_is_stable_and_keeps_its_sky_off_the_mask(tmp_path):
    """The oracle of issue 6 (a random scale and shift per frame) on an outdoor shot with a ball rolling by."""
    from depth360.estimators import pipeline
    from depth360.estimators.pipeline.frame_estimators import FusionFrameEstimator
    from tests.engine.test_temporal import FlickeringOracle, flicker_and_abs_rel
    from tests.groundtruth import render_sequence

    truths = render_sequence("outdoor", 8, 256, samples=4, seed=2, mover=True)
    folder = tmp_path / "shot"
    folder.mkdir()
    for number, truth in enumerate(truths, start=1):
        cv2.imwrite(str(folder / f"shot_{number:04d}.png"), np.round(truth.rgb[..., ::-1] * 65535).astype(np.uint16))
    request = pipeline.EstimateRequest(inputs=(str(folder),), output_dir=str(tmp_path / "out"),
                                       save=("disparity", "distance", "mask"))
    pipeline.run(request, frame_estimator=FusionFrameEstimator(FlickeringOracle(truths), "equirect"))
    numbers = range(1, len(truths) + 1)
    disparity = np.stack([read_exr(tmp_path / "out" / "shot" / f"disparity_{n:05d}.exr") for n in numbers])
    distance = np.stack([read_exr(tmp_path / "out" / "shot" / f"distance_{n:05d}.exr") for n in numbers])
    mask = np.stack([read_exr(tmp_path / "out" / "shot" / f"mask_{n:05d}.exr") > 0.5 for n in numbers])
    sky = np.stack([~np.isfinite(t.distance) for t in truths])
    scored = mask & (distance > 1.0) & (distance < 100.0)  # not clamped by the near/far rule
    flicker, mover_abs_rel = flicker_and_abs_rel(disparity, scored, truths)
    print(f"\noutdoor video: flicker {flicker:.3%}, moving ball AbsRel {mover_abs_rel:.3%}, "
          f"sky off the mask {1 - mask[sky].mean():.2%}")
    assert flicker <= 0.01
    assert mask[sky].mean() <= 0.01 and np.all(distance[~mask] == 100.0)
