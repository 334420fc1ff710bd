"""360 video through a clip estimator (issue 18, point 3): view streams, windows, alignment, chunks.

The clip oracle is a plug-in with `predict_clip` that knows the rendered truth: for each
view stream of a clip it returns the true inverse planar depth under one random affine map
(scale in [0.5, 2], shift up to +-30% of the clip's mean), drawn per view per clip, as a
video network is consistent within its window but not across views or windows. The renders
are the moving-camera scenes (`room_walk`, `outdoor_walk`: the camera walks and turns),
46 frames, so three windows (the last one padded).

Measures, on pixels seen, not sky, not within 2 px of a depth discontinuity: AbsRel of the
distance after ONE affine fit of the fused disparity to the true inverse distance over the
whole shot (and the worst frame under that same fit); scale drift: the spread (max - min,
relative to the median) over the frames of the per-frame median ratio truth / estimate.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest

from depth360.estimators import pipeline
from depth360.estimators.media import image_io
from depth360.estimators.pipeline.frame_estimators import ViewStreamFrameEstimator
from tests.engine.test_fusion_oracle import dilate, discontinuities, sample_equirect
from tests.groundtruth import render_sequence

FRAMES, WIDTH, SAMPLES = 46, 128, 4


@functools.lru_cache(maxsize=2)
def walk(scene: str):
    return render_sequence(scene, FRAMES, WIDTH, SAMPLES)


class ClipOracle:
    """The truth of each view stream, one random affine map per view per clip (module docstring)."""

    kind = "relative-disparity"
    clip_window = 32

    def __init__(self, truths, noise: float = 0.0):
        self.rgbs = [np.asarray(t.rgb, np.float64) for t in truths]
        self.inverse = [np.where(np.isfinite(t.distance), 1.0 / t.distance, 0.0) for t in truths]
        self.noise = noise
        self.calls: list[tuple[int, int]] = []
        self._projected: dict[tuple, np.ndarray] = {}

    def _frames(self, images: np.ndarray, rays: np.ndarray) -> list[int]:
        """Which rendered frame each image of one view stream is (nearest projected colours)."""
        key = tuple(np.round(rays[rays.shape[0] // 2, rays.shape[1] // 2], 4))
        if key not in self._projected:
            self._projected[key] = np.stack([
                np.stack([sample_equirect(rgb[..., c], rays) for c in range(3)], -1) for rgb in self.rgbs])
        candidates = self._projected[key]
        return [int(np.argmin(np.abs(candidates - image[None]).mean(axis=(1, 2, 3)))) for image in images]

    def predict_clip(self, images, rays):
        assert images.dtype == np.float32 and images.shape == rays.shape and images.shape[0] <= 32
        self.calls.append(images.shape[:2])
        out = np.empty(images.shape[:4], np.float32)
        for n in range(images.shape[1]):
            view_rays = rays[0, n].astype(np.float64)
            axis = view_rays.reshape(-1, 3).mean(axis=0)
            axis /= np.linalg.norm(axis)
            frames = self._frames(images[:, n].astype(np.float64), view_rays)
            truths = [sample_equirect(self.inverse[f], view_rays) / (view_rays @ axis) for f in frames]
            rng = np.random.default_rng([*frames[:2], frames[-1], n, int(1e4 * (axis[0] + 2 * axis[1] + 3 * axis[2]) + 1e5)])
            scale, shift = rng.uniform(0.5, 2.0), rng.uniform(-0.3, 0.3) * float(np.mean(truths))
            for t, truth in enumerate(truths):
                noisy = truth * (1 + self.noise * rng.standard_normal(truth.shape))
                out[t, n] = scale * noisy + shift
        return out

    def predict(self, images, rays):
        return self.predict_clip(images[None], rays[None])[0]


def scored(truths, seen: np.ndarray) -> np.ndarray:
    return np.stack([s & np.isfinite(t.distance) & ~dilate(discontinuities(t.distance, t.object_index), 2)
                     for t, s in zip(truths, seen, strict=True)])


def shot_figures(disparity: np.ndarray, truths, valid: np.ndarray) -> dict[str, float]:
    truth = np.stack([np.where(np.isfinite(t.distance), 1.0 / t.distance, 0.0) for t in truths])
    distance = np.stack([t.distance for t in truths])
    a, b = np.linalg.lstsq(np.stack([disparity[valid], np.ones(valid.sum())], 1), truth[valid], rcond=None)[0]
    estimate = 1.0 / np.maximum(a * disparity + b, 1e-9)
    error = np.where(valid, np.abs(estimate - np.where(valid, distance, 1.0)) / np.where(valid, distance, 1.0), 0.0)
    per_frame = [float(error[t][valid[t]].mean()) for t in range(len(truths))]
    ratios = [float(np.median(truth[t][valid[t]] / disparity[t][valid[t]])) for t in range(len(truths))]
    return {"abs_rel": float(error[valid].mean()), "worst_frame": max(per_frame),
            "drift": (max(ratios) - min(ratios)) / float(np.median(ratios)), "scored": float(valid.mean())}


@pytest.mark.parametrize("scene", ["room_walk", "outdoor_walk"])
def test_view_streams_keep_one_scale_over_the_shot(scene):
    truths = walk(scene)
    oracle = ClipOracle(truths)
    adapter = ViewStreamFrameEstimator(oracle, "cube")
    predictions = adapter.estimate(np.stack([t.rgb for t in truths]))
    assert len(predictions) == FRAMES
    assert [shape for shape in oracle.calls] == [(32, 6)] * 3  # three windows, all six views per call
    disparity = np.stack([p.disparity for p in predictions])
    figures = shot_figures(disparity, truths, scored(truths, np.stack([p.valid for p in predictions])))
    print(f"\n{scene}: AbsRel {figures['abs_rel']:.5f} over the shot, worst frame {figures['worst_frame']:.5f}, "
          f"scale drift {figures['drift']:.6f}, scored {figures['scored']:.0%} of pixels")
    assert figures["abs_rel"] <= 0.01 and figures["worst_frame"] <= 0.01
    assert figures["drift"] <= 0.003
    assert figures["scored"] > (0.6 if scene == "room_walk" else 0.3)  # outdoors half the sphere is sky


def test_without_the_link_between_windows_the_scale_jumps(monkeypatch):
    """The link is what keeps one scale: without it each window keeps its own gauge."""
    from depth360.estimators.video import view_streams

    monkeypatch.setattr(view_streams, "fit_scale", lambda *args, **kwargs: 1.0)
    truths = walk("room_walk")
    predictions = ViewStreamFrameEstimator(ClipOracle(truths), "cube").estimate(np.stack([t.rgb for t in truths]))
    disparity = np.stack([p.disparity for p in predictions])
    figures = shot_figures(disparity, truths, scored(truths, np.stack([p.valid for p in predictions])))
    print(f"\nunlinked windows: drift {figures['drift']:.4f}, AbsRel {figures['abs_rel']:.4f}")
    assert figures["drift"] > 0.003


def _sequence(folder, truths):
    folder.mkdir()
    for number, truth in enumerate(truths, start=1):
        cv2.imwrite(str(folder / f"walk_{number:04d}.png"), np.round(truth.rgb[..., ::-1] * 255).astype(np.uint8))
    return folder


def _run(source, out, truths, frames=None, **options):
    request = pipeline.EstimateRequest(inputs=(str(source),), output_dir=str(out), frames=frames,
                                       save=("distance", "disparity", "mask"), **options)
    return pipeline.run(request, estimator=ClipOracle(truths)).sources[0]


def _read(folder, kind, numbers):
    return np.stack([image_io.read_exr(folder / f"{kind}_{n:05d}.exr") for n in numbers])


@pytest.mark.slow
def test_chunks_and_a_resume_equal_the_whole_shot(tmp_path):
    truths = walk("room_walk")
    source = _sequence(tmp_path / "walk", truths)
    whole = _run(source, tmp_path / "whole", truths)
    assert whole.written == tuple(range(1, FRAMES + 1))
    _run(source, tmp_path / "chunks", truths, frames=(1, 23))
    second = _run(source, tmp_path / "chunks", truths, frames=(24, FRAMES))
    assert second.written == tuple(range(24, FRAMES + 1))
    numbers = range(1, FRAMES + 1)
    for kind in ("distance", "disparity", "mask"):
        np.testing.assert_allclose(_read(tmp_path / "chunks" / "walk", kind, numbers),
                                   _read(tmp_path / "whole" / "walk", kind, numbers), rtol=1e-5, atol=1e-6)
    # A resume: the last 12 frames were never written.
    for n in range(35, FRAMES + 1):
        for kind in ("distance", "disparity", "mask"):
            (tmp_path / "whole" / "walk" / f"{kind}_{n:05d}.exr").unlink()
    resumed = _run(source, tmp_path / "whole", truths)
    assert resumed.written == tuple(range(35, FRAMES + 1)) and len(resumed.skipped) == 34
    np.testing.assert_allclose(_read(tmp_path / "whole" / "walk", "distance", numbers),
                               _read(tmp_path / "chunks" / "walk", "distance", numbers), rtol=1e-5, atol=1e-6)


def test_a_chunk_that_starts_past_the_first_window_equals_the_whole_shot(tmp_path):
    """Frames 41-46 need only windows 1 and 2 (their keyframes from frame 3 on): the chunk's
    windows get a scale of their own, which the near/far calibration does not see."""
    truths = walk("room_walk")
    source = _sequence(tmp_path / "walk", truths)
    _run(source, tmp_path / "whole", truths, stabilise=False)
    oracle = ClipOracle(truths)
    request = pipeline.EstimateRequest(inputs=(str(source),), output_dir=str(tmp_path / "chunk"), frames=(41, FRAMES),
                                       save=("distance", "disparity", "mask"), stabilise=False)
    chunk = pipeline.run(request, estimator=oracle).sources[0]
    assert chunk.written == tuple(range(41, FRAMES + 1)) and oracle.calls == [(32, 6)] * 2
    numbers = range(41, FRAMES + 1)
    for kind in ("distance", "disparity", "mask"):
        np.testing.assert_allclose(_read(tmp_path / "chunk" / "walk", kind, numbers),
                                   _read(tmp_path / "whole" / "walk", kind, numbers), rtol=1e-4, atol=1e-6)


class PlanarMetricClipOracle(ClipOracle):
    """Metric video network stand-in: each view's true planar depth in metres, times a scale of
    1 +- 3% per view per clip (a metric network's own error), kind metric-depth."""

    kind = "metric-depth"

    def predict_clip(self, images, rays):
        out = np.empty(images.shape[:4], np.float32)
        for n in range(images.shape[1]):
            view_rays = rays[0, n].astype(np.float64)
            axis = view_rays.reshape(-1, 3).mean(axis=0)
            axis /= np.linalg.norm(axis)
            frames = self._frames(images[:, n].astype(np.float64), view_rays)
            scale = np.random.default_rng([frames[0], n]).uniform(0.97, 1.03)
            for t, frame in enumerate(frames):
                inverse = sample_equirect(self.inverse[frame], view_rays)
                with np.errstate(divide="ignore"):
                    out[t, n] = scale / (inverse / (view_rays @ axis))  # planar depth; sky: inf
        return out


def test_metric_view_streams_keep_metres():
    truths = walk("room_walk")
    predictions = ViewStreamFrameEstimator(PlanarMetricClipOracle(truths), "cube").estimate(
        np.stack([t.rgb for t in truths]))
    valid = scored(truths, np.stack([p.valid for p in predictions]))
    distance = np.stack([t.distance for t in truths])
    estimate = 1.0 / np.where(valid, np.stack([p.disparity for p in predictions]), 1.0)
    abs_rel = float(np.mean(np.abs(estimate[valid] - distance[valid]) / distance[valid]))
    print(f"\nmetric view streams: AbsRel {abs_rel:.4f} in metres, no fit")
    assert abs_rel <= 0.03  # within the per-view error, averaged over the views (the gauge keeps metres)
