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
from depth360.estimators.device import reprojection as device_reprojection
from depth360.estimators.device import temporal as device_temporal
from depth360.estimators.device.temporal import DeviceStabiliser, area_resize, to_colour8
from depth360.estimators.media.image_io import read_exr
from depth360.estimators.panorama.fusion import estimate_equirect, project_to_views
from depth360.estimators.panorama.projection import make_views
from depth360.estimators.pipeline.device_frames import DeviceFusionFrameEstimator
from depth360.estimators.pipeline.frame_estimators import FusionFrameEstimator
from depth360.estimators.video import reprojection
from depth360.estimators.video.camera_motion import CameraFrame
from depth360.estimators.video.reprojection import Pose
from depth360.estimators.video.temporal import StabiliserSettings, TemporalStabiliser, sample_at
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
        assert np.abs(got.disparity.numpy() - expected).max() <= TOLERANCE * np.abs(expected).max()


def test_reprojection_on_the_device_is_opencvs():
    """The CUDA motion filter's reads and reprojection (run here on CPU tensors) against cv2 and the host."""
    rng = np.random.default_rng(8)
    height, width = 48, 96
    values = rng.random((height, width)).astype(np.float32)
    colour8 = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    flags = rng.random((height, width)) > 0.5
    rows = rng.uniform(-0.5, height - 0.5, (height, width)).astype(np.float32)
    cols = rng.uniform(-0.5, width - 0.5, (height, width)).astype(np.float32)
    rows[:6], cols[:6] = np.round(rows[:6] * 2) / 2, np.round(cols[:6] * 2) / 2  # whole and half pixels
    wrap = {"borderMode": cv2.BORDER_WRAP}
    t = torch.from_numpy
    assert np.array_equal(device_reprojection.remap_linear(t(values), t(rows), t(cols)).numpy(),
                          cv2.remap(values, cols, rows, cv2.INTER_LINEAR, **wrap))
    assert np.array_equal(device_reprojection.remap_linear(t(colour8), t(rows), t(cols)).numpy(),
                          cv2.remap(colour8, cols, rows, cv2.INTER_LINEAR, **wrap))
    assert np.array_equal(device_reprojection.remap_nearest(t(flags), t(rows), t(cols)).numpy(),
                          cv2.remap(flags.astype(np.uint8), cols, rows, cv2.INTER_NEAREST, **wrap) > 0)
    xy = np.column_stack((rng.uniform(0, width, 300), rng.uniform(0, height, 300)))
    assert np.array_equal(device_reprojection.sample_points(t(values), xy), sample_at(values, xy))
    inverse = rng.uniform(0.1, 1.0, (height, width)).astype(np.float32)
    inverse[:5] = 0.0  # at infinity
    pose = Pose(np.eye(3), np.zeros(3))
    angle = 0.2
    other = Pose(np.array([[np.cos(angle), 0.0, np.sin(angle)], [0.0, 1.0, 0.0], [-np.sin(angle), 0.0, np.cos(angle)]]),
                 np.array([0.1, -0.05, 0.02]))
    host = reprojection.backward_sample(inverse, pose, values, flags, other, colour8)
    got = device_reprojection.backward_sample(t(inverse), pose, t(values), t(flags), other, t(colour8))
    for name, value in zip(("inverse", "expected", "carried", "valid", "colour"), got, strict=True):
        expected = getattr(host, name)
        same = value.numpy() == expected
        assert same.mean() > 0.999, name  # an ulp of float64 geometry may move a read across a 1/32 step
        if value.dtype.is_floating_point:
            np.testing.assert_allclose(value.numpy(), expected, rtol=1e-4, atol=1e-6, err_msg=name)


def turning_camera(number: int, rng, truth: np.ndarray) -> CameraFrame:
    """A camera walking along x and turning about z (a solve's CameraFrame), with 200 structure points
    whose inverse distance is half the `truth` map's there, a few per cent off."""
    height, width = truth.shape
    angle = 0.03 * number
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    xy = np.column_stack((rng.uniform(0, width, 200), rng.uniform(0.2 * height, 0.8 * height, 200)))
    inverse = 0.5 * sample_at(truth, xy) * rng.uniform(0.97, 1.03, 200)
    return CameraFrame(number, 0, 1, rotation, np.array([0.05 * number, 0.0, 0.0]), "solved" if number > 1 else "start",
                       xy, inverse, rng.uniform(2.0, 40.0, 200))


@pytest.mark.parametrize("reads", ["host", "torch"])
@pytest.mark.parametrize("kind", ["relative-disparity", "metric-distance"])
def test_the_moving_camera_stabiliser_on_the_device_is_the_references(kind, reads, monkeypatch):
    """The camera's stabiliser (structure fit, reprojected reference and filter) alike on the device;
    `torch`: with the reprojection a CUDA device runs (on a CPU it takes the host's)."""
    if reads == "torch":
        monkeypatch.setattr(device_temporal, "_backward_sample", device_reprojection.backward_sample)
    rng = np.random.default_rng(7)
    height, width = 64, 128
    settings = StabiliserSettings(fit_rows=12, min_points=20)
    reference = TemporalStabiliser(kind, 1.0, 100.0, settings)
    device = DeviceStabiliser(kind, 1.0, 100.0, settings)
    rows = np.linspace(0.3, 1.0, height, dtype=np.float32)[:, None]
    base = (rows * (1 + 0.2 * np.sin(np.linspace(0, 6.28, width, dtype=np.float32)))[None]).astype(np.float32)
    base[:8] = 0.0  # sky: at infinity, moved by the rotation alone
    colour = np.repeat(base[..., None], 3, axis=2) * np.float32(0.9) + np.float32(0.05)
    carried, references = 0, set()
    for number in range(1, 10):
        disparity = (base * rng.uniform(0.8, 1.2) + rng.normal(0, 0.002, base.shape)).astype(np.float32)
        valid = rng.random(base.shape) > 0.05
        camera = turning_camera(number, rng, base)
        expected = reference.push(number, disparity, valid, colour, camera=camera)
        got = device.push(number, torch.from_numpy(disparity), torch.from_numpy(valid), torch.from_numpy(colour),
                          camera=camera)
        assert got.reference == expected.reference and got.metres_per_unit == expected.metres_per_unit
        references.add(expected.reference)
        assert got.scale == pytest.approx(expected.scale, rel=1e-5) and got.shift == pytest.approx(expected.shift, abs=1e-6)
        assert np.abs(got.disparity.numpy() - expected.disparity).max() <= TOLERANCE * np.abs(expected.disparity).max()
        carried += int(np.count_nonzero(expected.disparity != reference._aligned(disparity, valid, expected.scale,
                                                                                   expected.shift)))
    assert carried > 1000  # the filter did carry past frames into these
    assert references == ({"structure"} if kind == "relative-disparity" else {"none"})
    assert kind == "relative-disparity" or expected.metres_per_unit is not None


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
