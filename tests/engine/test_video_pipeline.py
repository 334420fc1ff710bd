"""Video networks in the pipeline (issue 18): the clip plug-in protocol, chunks of an ordinary
video, and memory over a long 360 clip.

The clip plug-ins here are cheap stand-ins: for every stream of a clip they return a fixed
function of the pixels under an affine map drawn per call (a video network is consistent
within its clip, not across clips).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from depth360.estimators import pipeline
from depth360.estimators.errors import BadInputError
from depth360.estimators.media import image_io
from depth360.estimators.models import plugins
from depth360.estimators.pipeline.frame_estimators import ClipFrameEstimator, build_frame_estimator

DEPTH360 = Path(sys.executable).with_name("depth360")

CLIP_PLUGIN = textwrap.dedent('''
    import numpy as np

    class AffinePerClip:
        kind = "relative-disparity"
        clip_window = WINDOW

        def predict_clip(self, images, rays):
            assert images.ndim == 5 and images.shape == rays.shape and len(images) <= 32
            key = [int(v * 1e4) for v in images[:, :, 0, 0, :].mean(axis=(1, 2))]
            a, b = np.random.default_rng(key).uniform(0.5, 2.0, 2)
            return SHAPE(a * (0.2 + images.mean(axis=-1)) + b)

        def predict(self, images, rays):
            return self.predict_clip(images[None], rays[None])[0]

    def make():
        return AffinePerClip()
''')


def write_plugin(folder: Path, window: int = 32, shape: str = "np.asarray") -> Path:
    path = folder / "clip_plugin.py"
    path.write_text(CLIP_PLUGIN.replace("WINDOW", str(window)).replace("SHAPE", shape))
    return path


def write_frames(folder: Path, count: int, height: int = 24, width: int = 40) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (height, width * 2, 3), dtype=np.uint8)
    for number in range(1, count + 1):
        cv2.imwrite(str(folder / f"clip_{number:04d}.png"), base[:, number % width:][:, :width])
    return folder


def _depth360(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEPTH360_MODELS": "/nonexistent/depth360-models"}
    return subprocess.run([str(DEPTH360), *args], capture_output=True, text=True, timeout=300, env=env)


def test_a_clip_plugin_runs_from_the_command_line(tmp_path):
    plugin = write_plugin(tmp_path)
    clip = write_frames(tmp_path / "clip", 40)
    result = _depth360("estimate", str(clip), "-o", str(tmp_path / "out"), "--projection", "perspective",
                       "--model", f"python:{plugin}:make", "--save", "disparity", "--progress", "none")
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((tmp_path / "out" / "clip" / "clip.json").read_text())
    assert sidecar["model"]["adapter"] == "video windows" and sidecar["frames"]["written"] == 40
    assert "estimator windows" in sidecar["frames"]["context_rule"]
    assert (tmp_path / "out" / "clip" / "disparity_00040.exr").is_file()


def test_clip_plugins_are_checked(tmp_path):
    with pytest.raises(BadInputError, match="clip_window must be an integer of at least 32"):
        plugins.load_plugin(f"python:{write_plugin(tmp_path, window=16)}:make")
    wrong = plugins.load_plugin(f"python:{write_plugin(tmp_path, shape='np.squeeze')}:make")
    clip = write_frames(tmp_path / "clip", 3)
    request = pipeline.EstimateRequest(inputs=(str(clip),), output_dir=str(tmp_path / "out"),
                                       projection="perspective", save=("disparity",))
    with pytest.raises(BadInputError, match=r"predict_clip returned shape .*expected \(32, 1, 24, 40\)"):
        pipeline.run(request, estimator=wrong)
    assert not (tmp_path / "out" / "clip").exists() or not list((tmp_path / "out" / "clip").glob("*.exr"))


def test_the_adapter_follows_the_projection():
    estimator = plugins.validate_estimator(_Clip(), "test")
    perspective = pipeline.EstimateRequest(inputs=("x.mp4",), output_dir="o", projection="perspective")
    assert isinstance(build_frame_estimator(perspective, estimator), ClipFrameEstimator)
    equirect = pipeline.EstimateRequest(inputs=("x.mp4",), output_dir="o", views="ico")
    adapter = build_frame_estimator(equirect, estimator)
    assert adapter.describe()["adapter"] == "equirect view streams" and adapter.views == "ico"


class _Clip:
    kind = "metric-depth"

    def predict(self, images, rays):
        return np.ones(images.shape[:3], np.float32)

    def predict_clip(self, images, rays):
        return np.ones(images.shape[:4], np.float32)


def _disparity(folder: Path, numbers) -> np.ndarray:
    return np.stack([image_io.read_exr(folder / f"disparity_{n:05d}.exr") for n in numbers])


def test_chunks_of_an_ordinary_video_equal_the_whole(tmp_path):
    """The official alignment chains every window to the first frame: a chunk reads from frame 1."""
    estimator = plugins.load_plugin(f"python:{write_plugin(tmp_path)}:make")
    clip = write_frames(tmp_path / "clip", 60)

    def run(out, frames=None):
        request = pipeline.EstimateRequest(inputs=(str(clip),), output_dir=str(tmp_path / out), frames=frames,
                                           projection="perspective", save=("disparity",))
        return pipeline.run(request, estimator=estimator).sources[0]

    run("whole")
    first, second = run("chunks", (1, 30)), run("chunks", (31, 60))
    assert first.written == tuple(range(1, 31)) and second.written == tuple(range(31, 61))
    numbers = range(1, 61)
    np.testing.assert_array_equal(_disparity(tmp_path / "chunks" / "clip", numbers),
                                  _disparity(tmp_path / "whole" / "clip", numbers))


class RssProbe:
    """A stdout for progress="json" that records the resident set size at chosen frames."""

    def __init__(self, at):
        self.at, self.samples = set(at), {}

    def write(self, text: str) -> None:
        for line in text.splitlines():
            if line.strip() and (frame := json.loads(line)["frame"]) in self.at:
                with open("/proc/self/statm") as statm:
                    self.samples[frame] = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def flush(self) -> None:
        pass


def _video(path: Path, count: int, width: int) -> Path:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (width // 2, width, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, width // 2, "yuv420p"
        for index in range(count):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.roll(base, index, axis=1), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.slow
def test_memory_stays_flat_over_a_long_360_clip(tmp_path):
    """Issue 18, acceptance 4: 1,000 frames of 360 video through the view streams."""
    frames = 1000
    video = _video(tmp_path / "long.mp4", frames, 128)
    probe = RssProbe((100, frames))
    estimator = plugins.load_plugin(f"python:{write_plugin(tmp_path)}:make")
    request = pipeline.EstimateRequest(inputs=(str(video),), output_dir=str(tmp_path / "out"),
                                       save=("distance", "mask"), progress="json")
    pipeline.run(request, estimator=estimator, stdout=probe)
    early, late = probe.samples[100], probe.samples[frames]
    print(f"\nresident memory: {early / 2**20:.1f} MB after frame 100, {late / 2**20:.1f} MB after frame {frames}")
    assert late <= 1.02 * early


def test_one_adapter_runs_several_inputs_each_as_its_own_shot(tmp_path):
    estimator = plugins.load_plugin(f"python:{write_plugin(tmp_path)}:make")
    first, second = write_frames(tmp_path / "first", 5), write_frames(tmp_path / "second", 3)
    adapter = ClipFrameEstimator(estimator)
    request = pipeline.EstimateRequest(inputs=(str(first), str(second)), output_dir=str(tmp_path / "out"),
                                       projection="perspective", save=("disparity",))
    results = pipeline.run(request, frame_estimator=adapter).sources
    assert [r.written for r in results] == [(1, 2, 3, 4, 5), (1, 2, 3)]
