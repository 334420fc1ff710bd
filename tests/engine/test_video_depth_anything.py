"""Video Depth Anything against the official outputs of ../shared/reference-models.

Every network is loaded through the engine's real path: the fixture weights saved as the
official file (with the temporal sine tables the official files hold), read by
`weights.load_network` (`torch.load(weights_only=True)`, conversion, strict load) and run
in float32 on the CPU. The end-to-end fixtures of `infer_video_depth` run through the
project's perspective-video path: `pipeline.run` with `--projection perspective` on the
fixture's frames, through the official windows (`video.clip_windows`).
"""

from __future__ import annotations

import gc

import cv2
import numpy as np
import pytest
import torch

from depth360.estimators import pipeline
from depth360.estimators.media import image_io
from depth360.estimators.models import networks, registry, weights
from depth360.estimators.models.network_estimator import VideoNetworkEstimator, load_estimator
from depth360.estimators.models.networks import video_depth_anything as vda
from depth360.estimators.models.preprocessing import video_input_size
from depth360.estimators.pipeline.frame_estimators import ClipFrameEstimator
from tests.reference_fixtures import (
    REFERENCE_DIR,
    assert_matches_reference,
    cases,
    computed_buffer_keys,
    manifest,
    write_official_checkpoint,
)

POSITION_EMBEDDING_TOLERANCE = 1e-5  # issue 18: the interpolated embedding within 1e-5 of its maximum
SCALE_SHIFT_TOLERANCE = 1e-4
FIXTURE_OF_MODEL = {
    "video-depth-anything-small": "video_depth_anything_vits",
    "video-depth-anything-metric-small": "metric_video_depth_anything_vits",
    "video-depth-anything-base": "video_depth_anything_vitb",
    "video-depth-anything-large": "video_depth_anything_vitl",
}


def _loaded(model: str, folder) -> VideoNetworkEstimator:
    write_official_checkpoint(FIXTURE_OF_MODEL[model], folder)
    estimator = load_estimator(model, models_dir=folder, device="cpu")
    assert isinstance(estimator, VideoNetworkEstimator) and estimator.clip_window == 32
    return estimator


def _check_cases(network: torch.nn.Module, fixture: str) -> list[float]:
    errors = []
    for _label, clip, expected in cases(fixture):
        with torch.inference_mode():
            out = network(torch.from_numpy(clip)).numpy()
        assert out.shape == expected.shape
        errors.append(assert_matches_reference(out, expected))
    return errors


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    estimator = _loaded("video-depth-anything-small", tmp_path_factory.mktemp("vda-small"))
    yield estimator
    del estimator
    gc.collect()


def test_small_matches_official_on_square_and_2_to_1_clips(small):
    errors = _check_cases(small.network, "video_depth_anything_vits")
    assert max(errors) <= 1e-4  # ~5e-6 measured: nothing but kernel ordering


def test_metric_small_matches_official(tmp_path):
    estimator = _loaded("video-depth-anything-metric-small", tmp_path)
    assert estimator.kind == "metric-depth" and estimator.spec.max_depth is None
    _check_cases(estimator.network, "metric_video_depth_anything_vits")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["video-depth-anything-base", "video-depth-anything-large"])
def test_base_and_large_match_official(model, tmp_path):
    estimator = _loaded(model, tmp_path)
    _check_cases(estimator.network, FIXTURE_OF_MODEL[model])
    del estimator
    gc.collect()


def test_interpolated_position_embedding_matches_official(small):
    data = np.load(REFERENCE_DIR / "video_depth_anything_vits.pos_embed.npz")
    for i in range(4):
        rows, cols = (int(v) for v in data[f"grid_{i}"])
        with torch.inference_mode():
            ours = small.network.pretrained.position_embedding(rows * 14, cols * 14).numpy()
        expected = data[f"pos_embed_{i}"]
        assert ours.shape == expected.shape == (1, 1 + rows * cols, 384)
        error = np.abs(ours - expected).max() / np.abs(expected).max()
        assert error <= POSITION_EMBEDDING_TOLERANCE, (rows, cols, error)


def _frames_folder(folder, frames):
    folder.mkdir()
    for number, frame in enumerate(frames, start=1):
        cv2.imwrite(str(folder / f"clip_{number:04d}.png"), frame[..., ::-1])  # 8-bit: exactly the raw frames
    return folder


@pytest.mark.parametrize("fixture", ["video_depth_anything_vits",
                                     pytest.param("metric_video_depth_anything_vits", marks=pytest.mark.slow)])
def test_perspective_video_path_matches_official_infer_video(fixture, tmp_path):
    """Issue 18, acceptance 2: `depth360 estimate --projection perspective` on the fixture's frames
    (a PNG sequence) gives infer_video_depth's output, and each window's scale and shift."""
    data = np.load(REFERENCE_DIR / f"{fixture}.infer_video.npz")
    metric = fixture.startswith("metric")
    model = "video-depth-anything-metric-small" if metric else "video-depth-anything-small"
    write_official_checkpoint(fixture.removesuffix(".infer_video"), tmp_path)
    estimator = load_estimator(model, models_dir=tmp_path, device="cpu", input_size=int(data["input_size"]))
    frames = data["raw_frames"]
    assert video_input_size(*frames.shape[1:3], estimator.input_size) == data["preprocessed_frame0"].shape[2]
    prepared = estimator._stream(frames[:1].astype(np.float32) / 255)[0].numpy()
    assert np.abs(prepared - data["preprocessed_frame0"]).max() <= 1e-4
    adapter = ClipFrameEstimator(estimator)
    save = ("distance", "mask") if metric else ("disparity",)
    request = pipeline.EstimateRequest(inputs=(str(_frames_folder(tmp_path / "clip", frames)),),
                                       output_dir=str(tmp_path / "out"), projection="perspective", save=save,
                                       stabilise=False)
    result = pipeline.run(request, frame_estimator=adapter).sources[0]
    assert result.written == tuple(range(1, len(frames) + 1))
    expected = data["expected"]
    out = tmp_path / "out" / "clip"
    if metric:  # metres of planar depth, as the official model gives them; 0 (ReLU) is no depth
        distance = np.stack([image_io.read_exr(out / f"distance_{n:05d}.exr") for n in result.written])
        mask = np.stack([image_io.read_exr(out / f"mask_{n:05d}.exr") for n in result.written]) > 0.5
        clear = (expected == 0) | (expected > 1e-3 * expected.max())  # not within the tolerance of 0
        np.testing.assert_array_equal(mask[clear], expected[clear] > 0)
        assert_matches_reference(np.where(expected >= 0.01, distance, np.maximum(expected, 0.01)),
                                 np.maximum(expected, 0.01))
    else:
        disparity = np.stack([image_io.read_exr(out / f"disparity_{n:05d}.exr") for n in result.written])
        assert_matches_reference(disparity, expected)
    alignments = np.array(adapter.alignments).reshape(-1, 2)
    assert alignments.shape == data["align_scale_shift"].shape
    np.testing.assert_allclose(alignments, data["align_scale_shift"], atol=SCALE_SHIFT_TOLERANCE, rtol=0)


def test_fresh_network_has_the_official_layout_less_the_computed_sine_tables():
    model = vda.build("vits")
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    official = {key: shape for key, shape, _dtype, kind in manifest("video_depth_anything_vits")
                if kind != "computed_buffer"}
    assert ours == official
    assert len(computed_buffer_keys("video_depth_anything_vits")) == 8
    assert not model.training


def test_sine_tables_are_computed_and_checked_on_load():
    pe = dict(vda.build("vits").named_buffers())
    table = pe["head.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"]
    assert table.shape == (1, 32, 192)
    time = torch.arange(32.0)
    torch.testing.assert_close(table[0, :, 0], time.sin())  # sin on even channels, cos on odd ones
    torch.testing.assert_close(table[0, :, 1], time.cos())
    torch.testing.assert_close(table[0, :, 190], (time * 10000.0 ** (-190 / 192)).sin())
    key = "head.motion_modules.1.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe"
    converted = networks.convert_official_state_dict("video-depth-anything-vits", {key: vda.sine_table(384)})
    assert converted == {}
    with pytest.raises(ValueError, match="not the official temporal sine table"):
        networks.convert_official_state_dict("video-depth-anything-vits", {key: vda.sine_table(384) + 0.01})
    with pytest.raises(ValueError, match="'depth_head.scratch.layer1_rn.weight'"):
        networks.convert_official_state_dict("video-depth-anything-vits", {"depth_head.scratch.layer1_rn.weight": table})


def test_clip_length_and_shape_are_checked(small):
    with pytest.raises(ValueError, match="1 to 32 frames"):
        small.network(torch.zeros(1, 33, 3, 28, 28))
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        small.network(torch.zeros(1, 3, 28, 28))
    with pytest.raises(ValueError, match="at most 32 frames"):
        small.predict_clip(np.zeros((33, 1, 8, 8, 3), np.float32))


def test_registry_lists_the_video_models_with_licences_and_kinds():
    expected = {
        "video-depth-anything-small": ("Apache-2.0", "relative-disparity", "vits"),
        "video-depth-anything-base": ("CC-BY-NC-4.0", "relative-disparity", "vitb"),
        "video-depth-anything-large": ("CC-BY-NC-4.0", "relative-disparity", "vitl"),
        "video-depth-anything-metric-small": ("Apache-2.0", "metric-depth", "vits"),
        "video-depth-anything-metric-base": ("CC-BY-NC-4.0", "metric-depth", "vitb"),
        "video-depth-anything-metric-large": ("CC-BY-NC-4.0", "metric-depth", "vitl"),
    }
    for name, (licence, kind, encoder) in expected.items():
        spec = registry.get(name)
        assert (spec.license, spec.kind, spec.family, spec.clip_window) == (licence, kind, "video-depth-anything", 32)
        assert spec.commercial_use == (licence == "Apache-2.0")
        assert spec.checkpoint == ("metric_" if "metric" in name else "") + f"video_depth_anything_{encoder}.pth"
        assert spec.architecture == f"video-depth-anything-{encoder}"
    assert weights.build_network(registry.get("video-depth-anything-metric-small")).variant == "vits"
