"""Issue 16: the 360 trip on a torch device (estimators.device) against the numpy reference.

Acceptance 1: on the CPU, the device trip and the numpy trip agree on the fusion oracle
scenes (the room; outdoor layouts with sky; a metric model) and on a 4K frame: the largest
|difference| is at most 1e-4 of the largest value, and the masks (and the sky) are
identical. The same holds file for file through the pipeline, stabiliser and calibration
included. Acceptance 4: the memory plan of an 8K frame on a 24 GB card fits; out-of-memory
is retried with smaller batches, never a crash. The speed comparison (acceptance 2) is
printed by `benchmarks/bench_device_cpu.py`, not timed here.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from depth360.estimators import pipeline
from depth360.estimators.device import fusion as device_fusion
from depth360.estimators.device import memory, projection, stats
from depth360.estimators.device.temporal import DeviceStabiliser, area_resize, to_colour8
from depth360.estimators.media.image_io import read_exr
from depth360.estimators.panorama.fusion import estimate_equirect, project_to_views
from depth360.estimators.panorama.projection import make_views
from depth360.estimators.pipeline.device_frames import DeviceFusionFrameEstimator
from depth360.estimators.pipeline.frame_estimators import FusionFrameEstimator
from depth360.estimators.video.temporal import StabiliserSettings, TemporalStabiliser
from tests.engine.test_fusion_oracle import (
    OracleEstimator,
    PlanarMetricOracle,
    room,
    sample_equirect,
)
from tests.engine.test_outdoor import SkyOracle, layout
from tests.groundtruth import render_mono, render_sequence

TOLERANCE = 1e-4  # of the largest value (issue 16, acceptance 1)


def assert_same_depth(reference, device) -> None:
    """Largest |difference| <= 1e-4 of the largest value; identical masks and sky."""
    for name in ("disparity", "distance"):
        a, b = getattr(reference, name), getattr(device, name)
        if a is None:
            assert b is None
            continue
        assert b.dtype == a.dtype and b.shape == a.shape and np.all(np.isfinite(b))
        assert np.abs(a - b).max() <= TOLERANCE * np.abs(a).max(), name
    np.testing.assert_array_equal(device.mask, reference.mask)
    np.testing.assert_array_equal(device.sky, reference.sky)


# --- the building blocks --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_percentiles_and_medians_are_numpys_to_the_bit(dtype):
    rng = np.random.default_rng(3)
    qs = [0.0, 0.5, 2.0, 10.0, 50.0, 90.0, 95.0, 98.0, 99.5, 100.0]
    for count in (1, 2, 7, 1000, 40_000, 300_000):  # sorted, and binned selection above SORT_BELOW
        values = rng.standard_normal(count).astype(dtype)
        values[: count // 3] = values[0]  # ties
        assert stats.percentiles(torch.from_numpy(values), qs).tobytes() == np.percentile(values, qs).tobytes()
        assert stats.median(torch.from_numpy(values)) == float(np.median(values))


def test_percentile_sample_takes_the_references_pixels():
    from depth360.estimators.sampling import PERCENTILE_SAMPLES, percentile_sample

    rng = np.random.default_rng(4)
    values = rng.random((1100, 2200)).astype(np.float32)
    for share in (1.0, 0.95):
        mask = rng.random(values.shape) < share
        expected = percentile_sample(values, mask)
        got = stats.percentile_sample(torch.from_numpy(values), torch.from_numpy(mask)).numpy()
        assert values.size > PERCENTILE_SAMPLES and np.array_equal(got, expected)


@pytest.mark.parametrize("preset", ["cube", "ico", "equirect"])
def test_views_of_a_batch_of_frames_match_the_references(preset):
    """Wrap and poles included: views from the device equal cv2.remap's within 1e-4 (0..1 images)."""
    rgb = np.asarray(room().rgb, np.float32)
    frames = np.stack([rgb, np.ascontiguousarray(rgb[::-1, ::-1])])
    views = make_views(preset, *rgb.shape[:2], view_size=None if preset == "equirect" else 96)
    got = projection.frames_to_views(torch.from_numpy(frames), views).numpy()
    for frame, views_of_frame in zip(frames, got, strict=True):
        expected = np.stack(project_to_views(frame, views))
        assert np.abs(views_of_frame - expected).max() <= TOLERANCE


def test_area_resize_and_colour_steps_match_opencv():
    rng = np.random.default_rng(5)
    values = rng.random((200, 400)).astype(np.float32)
    for rows, cols in ((50, 100), (48, 96), (37, 61)):
        expected = cv2.resize(values, (cols, rows), interpolation=cv2.INTER_AREA)
        assert np.abs(area_resize(torch.from_numpy(values), rows, cols).numpy() - expected).max() <= 1e-6
    colour = np.concatenate([rng.random((64, 64, 3)), np.arange(256)[None, :, None].repeat(3, 2)[:, :64] / 255.0]
                            ).astype(np.float32)
    assert np.array_equal(to_colour8(torch.from_numpy(colour)).numpy(), cv2.convertScaleAbs(colour, alpha=255.0))


@pytest.mark.parametrize("kind", ["relative-disparity", "metric-distance"])
def test_the_stabiliser_on_the_device_is_the_references(kind):
    rng = np.random.default_rng(6)
    settings = StabiliserSettings(fit_rows=12)
    reference = TemporalStabiliser(kind, 1.0, 100.0, settings)
    device = DeviceStabiliser(kind, 1.0, 100.0, settings)
    base = rng.uniform(0.02, 0.8, (60, 120)).astype(np.float32)
    colour = rng.random((60, 120, 3)).astype(np.float32)
    for number in range(1, 14):
        disparity = (base * rng.uniform(0.7, 1.3) + rng.uniform(-0.01, 0.01)).astype(np.float32)
        colour[10:20, number * 5:number * 5 + 8] = rng.random(3)  # something moves
        valid = rng.random(base.shape) > 0.05
        expected = reference.push(number, disparity, valid, colour).disparity
        got = device.push(number, torch.from_numpy(disparity), torch.from_numpy(valid), torch.from_numpy(colour))
        assert np.abs(got.numpy() - expected).max() <= TOLERANCE * np.abs(expected).max()


# --- the whole trip -------------------------------------------------------------------------


def both_trips(rgb, make_estimator, preset, **options):
    return (estimate_equirect(rgb, make_estimator(), preset, **options),
            device_fusion.estimate_equirect(rgb, make_estimator(), preset, device="cpu", **options))


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["cube", "ico", "equirect"])
def test_the_room_fuses_alike(preset):
    truth = room()
    reference, device = both_trips(truth.rgb, lambda: OracleEstimator(truth.distance, seed=11, ramp=0.1), preset)
    assert_same_depth(reference, device)
    if preset != "equirect":
        np.testing.assert_allclose(device.alignment.scale, reference.alignment.scale, rtol=1e-5)
        assert device.alignment.pairs == reference.alignment.pairs


@pytest.mark.slow
@pytest.mark.parametrize("name, preset", [("seed 1", "cube"), ("seed 1", "ico"), ("seed 2", "cube"),
                                          ("seed 3, plain ground", "cube")])
def test_outdoor_layouts_with_sky_fuse_alike(name, preset):
    truth = layout(name)
    reference, device = both_trips(truth.rgb, lambda: SkyOracle(truth.distance, seed=11, sky_lift=0.02), preset)
    assert reference.sky.mean() > 0.4  # the sky found, left out of the alignment, off the mask
    assert_same_depth(reference, device)


@pytest.mark.slow
def test_a_metric_model_fuses_alike():
    truth = render_mono("outdoor", 512, samples=4, seed=1)
    reference, device = both_trips(truth.rgb, lambda: PlanarMetricOracle(truth.distance, seed=3), "cube", far=1000.0)
    assert reference.sky.any()
    assert_same_depth(reference, device)


class ViewOracle:
    """SkyOracle on any frame size: the truth of a 512-wide outdoor render, read along the rays."""

    kind = "relative-disparity"
    native_size = 518

    def __init__(self, distance: np.ndarray, seed: int):
        self.sky_oracle = SkyOracle(distance, seed=seed, sky_lift=0.02)

    def predict(self, images, rays):
        return self.sky_oracle.predict(images, rays)


@pytest.mark.slow
def test_a_4k_frame_fuses_alike():
    """3840 x 1920, cube views of the network's 518 px, half the frame sky."""
    truth = render_mono("outdoor", 512, samples=4, seed=2)
    rgb = cv2.resize(np.asarray(truth.rgb, np.float32), (3840, 1920), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    reference, device = both_trips(rgb, lambda: ViewOracle(truth.distance, seed=9), "cube")
    assert reference.disparity.shape == (1920, 3840) and 0.4 < reference.sky.mean() < 0.6
    assert_same_depth(reference, device)


# --- through the pipeline -------------------------------------------------------------------


class SequenceOracle:
    """Per view of each frame (in the order the trip asks): the true inverse planar depth under a
    random scale and shift, 0.5% noise, the sky at the view's floor. `device`: the CPU, so the
    pipeline's device trip takes it (a plug-in on a torch device)."""

    kind = "relative-disparity"

    def __init__(self, truths, views: int):
        self.disparities = [np.where(np.isfinite(t.distance), 1.0 / t.distance, 0.0) for t in truths]
        self.views = views
        self.seen = 0
        self.device = torch.device("cpu")

    def predict(self, images, rays):
        out = []
        for view_rays in rays.astype(np.float64):
            frame, view = divmod(self.seen, self.views)
            self.seen += 1
            rng = np.random.default_rng(1000 * frame + view)
            axis = view_rays[view_rays.shape[0] // 2, view_rays.shape[1] // 2]
            inverse = sample_equirect(self.disparities[frame], view_rays) / (view_rays @ axis)
            d = inverse * rng.uniform(0.5, 2.0) * (1 + 0.005 * rng.standard_normal(inverse.shape))
            out.append(d + rng.uniform(-0.3, 0.3) * np.ptp(d))
        return np.stack(out).astype(np.float32)


@pytest.fixture(scope="module")
def outdoor_shot(tmp_path_factory):
    truths = render_sequence("outdoor", 8, 256, samples=4, seed=2, mover=True)
    folder = tmp_path_factory.mktemp("shot") / "shot"
    folder.mkdir()
    for number, truth in enumerate(truths, start=1):
        cv2.imwrite(str(folder / f"shot_{number:04d}.png"), np.round(truth.rgb[..., ::-1] * 65535).astype(np.uint16))
    return folder, truths


@pytest.mark.slow
@pytest.mark.parametrize("smoothing", ["none", "median"])
def test_a_shot_through_the_pipeline_gives_the_same_files(outdoor_shot, tmp_path, smoothing):
    """Stabiliser and calibration on the device (or the host's post stage where smoothing asks for it)."""
    folder, truths = outdoor_shot
    outputs = {}
    for trip, adapter in (("numpy", FusionFrameEstimator), ("device", DeviceFusionFrameEstimator)):
        request = pipeline.EstimateRequest(inputs=(str(folder),), output_dir=str(tmp_path / trip), views="cube",
                                           save=("disparity", "distance", "mask"), smoothing=smoothing)
        pipeline.run(request, frame_estimator=adapter(SequenceOracle(truths, 6), "cube"))
        outputs[trip] = {kind: np.stack([read_exr(tmp_path / trip / "shot" / f"{kind}_{n:05d}.exr")
                                         for n in range(1, len(truths) + 1)])
                         for kind in ("disparity", "distance", "mask")}
    numpy_files, device_files = outputs["numpy"], outputs["device"]
    np.testing.assert_array_equal(device_files["mask"], numpy_files["mask"])
    assert 0.2 < numpy_files["mask"].mean() < 0.8  # sky off the mask
    for kind in ("disparity", "distance"):
        difference = np.abs(device_files[kind] - numpy_files[kind]).max()
        assert difference <= TOLERANCE * np.abs(numpy_files[kind]).max(), kind


# --- memory -----------------------------------------------------------------------------


GIB = 2**30


def test_an_8k_frame_on_a_24_gb_card_gets_a_plan_that_fits():
    large = 335_300_000  # Depth Anything V2 Large's parameters
    view = memory.network_view_bytes(large, 518, "fp16")
    plan = memory.plan_batches(3840, 7680, 6, 518, preset="cube", weights_bytes=large * 4, view_bytes=view,
                               capacity_bytes=24 * GIB)
    assert plan.frames >= 1 and plan.views >= 1
    assert plan.peak_bytes <= memory.USABLE_SHARE * 24 * GIB
    smaller = memory.plan_batches(3840, 7680, 6, 518, preset="cube", weights_bytes=large * 4, view_bytes=view,
                                  capacity_bytes=8 * GIB)
    assert smaller.frames <= plan.frames and smaller.peak_bytes <= memory.USABLE_SHARE * 8 * GIB
    with pytest.raises(memory.DeviceMemoryError, match="GiB"):
        memory.plan_batches(3840, 7680, 6, 518, weights_bytes=large * 4, view_bytes=view, capacity_bytes=2 * GIB)


class RunsOutOfMemory:
    """A network stand-in on the CPU that raises torch's out-of-memory error above `limit` views."""

    kind = "relative-disparity"

    def __init__(self, limit: int):
        self.limit = limit
        self.device = torch.device("cpu")
        self.batches: list[int] = []

    def predict_tensor(self, images):
        if images.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (a stand-in)")
        self.batches.append(images.shape[0])
        return 0.5 + 0.4 * images[..., 0] + 0.1 * images[..., 2]


def test_out_of_memory_is_retried_with_smaller_batches_and_gives_the_same_depth(monkeypatch):
    rgb = np.asarray(room().rgb, np.float32)
    frames = np.stack([rgb, rgb[:, ::-1]])
    expected = DeviceFusionFrameEstimator(RunsOutOfMemory(limit=100), "cube").estimate(frames)
    adapter = DeviceFusionFrameEstimator(RunsOutOfMemory(limit=3), "cube")
    adapter.batch_size, adapter.view_batch = 2, 12
    calls = []
    real = device_fusion.estimate_frames

    def frames_limited(frames, *args, **kwargs):  # the fusion's own tensors do not fit two frames
        calls.append(len(frames))
        if len(frames) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (a stand-in)")
        return real(frames, *args, **kwargs)

    monkeypatch.setattr("depth360.estimators.pipeline.device_frames.estimate_frames", frames_limited)
    got = adapter.estimate(frames)
    assert calls == [2, 1, 1] and adapter.batch_size == 1
    assert max(adapter.estimator.batches) <= 3 and adapter.view_batch <= 3
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a.disparity, b.disparity) and torch.equal(a.valid, b.valid)
    with pytest.raises(memory.DeviceMemoryError, match="single view"):
        DeviceFusionFrameEstimator(RunsOutOfMemory(limit=0), "cube").estimate(frames[:1])
