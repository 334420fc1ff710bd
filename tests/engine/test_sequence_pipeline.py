"""The pipeline on videos and image sequences (estimators/pipeline): outputs, resume after SIGKILL, chunks, bad input."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from depth360.estimators import pipeline
from depth360.estimators.errors import BadInputError, Depth360Error
from depth360.estimators.media import image_io, video_io
from depth360.estimators.models import plugins
from depth360.estimators.pipeline import EstimateRequest, resume
from depth360.estimators.pipeline.frame_estimators import PlainFrameEstimator
from depth360.estimators.pipeline.outputs import OutputLayout
from depth360.estimators.pipeline.request import SAVE_KINDS
from depth360.estimators.video.temporal import StabiliserSettings

REPO = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 64, 32

PLUGIN = textwrap.dedent('''
    """A cheap deterministic plug-in: disparity from the colour, a per-frame scale from the frame itself."""
    import os
    import time

    import numpy as np


    class Wobbly:
        kind = "relative-disparity"

        def __init__(self, delay=0.0):
            self.delay = delay

        def predict(self, images, rays):
            time.sleep(self.delay * len(images))
            base = 0.2 + images[..., 0] * 0.6 + 0.2 * np.abs(rays[..., 2])
            level = images[..., 1].mean(axis=(1, 2))
            scale = 1.0 + 0.3 * np.sin(37.0 * level)
            return (scale[:, None, None] * base + 0.05 * np.cos(11.0 * level)[:, None, None]).astype(np.float32)


    def make():
        return Wobbly(float(os.environ.get("WOBBLY_DELAY", "0")))
''')


def write_sequence(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    background = rng.uniform(0, 1, (HEIGHT, WIDTH, 3))
    for number in range(1, count + 1):
        image = background.copy()
        column = (3 * number) % WIDTH
        image[8:20, column : column + 6] = (1.0, 0.2, 0.1)  # a moving patch
        image[..., 1] = np.clip(image[..., 1] + 0.02 * np.sin(number), 0, 1)  # per-frame level
        cv2.imwrite(str(folder / f"shot_{number:04d}.png"), np.round(image[..., ::-1] * 255).astype(np.uint8))
    return folder / "shot_%04d.png"


@pytest.fixture()
def plugin_file(tmp_path):
    path = tmp_path / "wobbly.py"
    path.write_text(PLUGIN)
    return path


def frame_estimator(plugin_file):
    return PlainFrameEstimator(plugins.load_plugin(f"python:{plugin_file}:make"), batch_size=3)


def run_sequence(source, out_dir, estimator, *, frames=None, stdout=None, stderr=None, **options):
    """One source through `pipeline.run` with a given frame estimator; its SourceResult."""
    if isinstance(frames, str):
        parsed = video_io.parse_frame_range(frames)
        frames = (parsed.first, parsed.last)
    request = EstimateRequest(inputs=(str(source),), output_dir=str(out_dir), frames=frames, **options)
    return pipeline.run(request, frame_estimator=estimator, stdout=stdout, stderr=stderr).sources[0]


def frame_is_complete(folder: Path, save, number: int) -> bool:
    return resume.frame_is_complete(OutputLayout(folder, folder.name, still=False), save, number)


def read_all(folder: Path, kind: str, numbers) -> np.ndarray:
    return np.stack([image_io.read_exr(folder / f"{kind}_{n:05d}.exr") for n in numbers])


def test_outputs_layout_sidecar_preview_and_rgbd(tmp_path, plugin_file):
    source = write_sequence(tmp_path / "in", 6)
    out = tmp_path / "out"
    stdout = io.StringIO()
    result = run_sequence(
        source, out, frame_estimator(plugin_file), save=("distance", "disparity", "mask", "preview", "png16", "rgbd"),
        progress="json", stdout=stdout,
    )
    folder = out / "shot"
    assert result.folder == folder and result.written == tuple(range(1, 7)) and not result.skipped
    for number in range(1, 7):
        for name in OutputLayout(folder, "shot", still=False).frame_files(SAVE_KINDS, number):
            assert (folder / name).is_file(), name
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    distance = image_io.read_exr(folder / "distance_00003.exr")
    assert distance.dtype == np.float32 and distance.shape == (HEIGHT, WIDTH)
    assert np.all(np.isfinite(distance)) and distance.min() >= 1.0 and distance.max() <= 100.0
    # RGBD over-under: colour on top, grey depth below, white near
    rgbd = cv2.imread(str(folder / "rgbd_00003.png"))[..., ::-1]
    assert rgbd.shape == (2 * HEIGHT, WIDTH, 3)
    colour = cv2.imread(str(Path(str(source) % 3)))[..., ::-1]
    np.testing.assert_array_equal(rgbd[:HEIGHT], colour)
    grey = rgbd[HEIGHT:, :, 0].astype(float)
    mask = image_io.read_exr(folder / "mask_00003.exr") > 0.5
    expected = np.where(mask, np.round(255 * (1 / distance - 0.01) / (1 - 0.01)), 0)
    assert np.max(np.abs(grey - expected)) <= 1
    # preview video: decodes, one frame per frame, colour | depth side by side
    with av.open(str(folder / "preview.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (HEIGHT, 2 * WIDTH, 3)
    sidecar = json.loads((folder / "shot.json").read_text())
    assert sidecar["frames"]["first"] == 1 and sidecar["frames"]["last"] == 6
    assert sidecar["model"]["name"] == "Wobbly" and "rgbd" in sidecar["outputs"]
    assert set(sidecar["timings_s"]) >= {"wall", "read", "estimate", "post", "write"}
    lines = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert [line["frame"] for line in lines] == list(range(1, 7))
    assert all(line["total"] == 6 for line in lines) and lines[-1]["eta_s"] == 0


def test_chunks_equal_a_whole_run(tmp_path, plugin_file):
    source = write_sequence(tmp_path / "in", 60)
    estimator = frame_estimator(plugin_file)
    whole = run_sequence(source, tmp_path / "whole", estimator, save=("disparity", "distance"),
                                           progress="none")
    first = run_sequence(source, tmp_path / "chunks", estimator, frames="1-30",
                                           save=("disparity", "distance"), progress="none")
    second = run_sequence(source, tmp_path / "chunks", estimator, frames="31-60",
                                            save=("disparity", "distance"), progress="none")
    assert whole.written == tuple(range(1, 61))
    assert first.written == tuple(range(1, 31)) and second.written == tuple(range(31, 61))
    assert len(second.context) == StabiliserSettings().context_frames
    assert (tmp_path / "chunks" / "shot" / "shot_00031-00060.json").is_file()
    for kind in ("disparity", "distance"):
        np.testing.assert_allclose(read_all(tmp_path / "chunks" / "shot", kind, range(1, 61)),
                                   read_all(tmp_path / "whole" / "shot", kind, range(1, 61)), rtol=1e-5, atol=1e-6)


RUNNER = textwrap.dedent('''
    import sys
    from depth360.estimators import pipeline
    from depth360.estimators.models import plugins
    from depth360.estimators.pipeline.frame_estimators import PlainFrameEstimator
    estimator = PlainFrameEstimator(plugins.load_plugin(sys.argv[3]), batch_size=2)
    request = pipeline.EstimateRequest(inputs=(sys.argv[1],), output_dir=sys.argv[2],
                                       save=("distance", "disparity", "mask", "preview"), progress="json")
    pipeline.run(request, frame_estimator=estimator)
''')


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, plugin_file):
    source = write_sequence(tmp_path / "in", 40)
    out = tmp_path / "killed"
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    env = {**os.environ, "WOBBLY_DELAY": "0.05", "PYTHONPATH": str(REPO.parent)}
    process = subprocess.Popen([sys.executable, str(runner), str(source), str(out), f"python:{plugin_file}:make"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 60
    while len(lines) < 8 and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(lines) >= 8, process.stderr.read()
    folder = out / "shot"
    done_before = [n for n in range(1, 41) if frame_is_complete(folder, ("distance", "disparity", "mask", "preview"), n)]
    assert 8 <= len(done_before) < 40
    save = ("distance", "disparity", "mask", "preview")
    resumed = run_sequence(source, out, frame_estimator(plugin_file), save=save, progress="none")
    assert set(resumed.skipped) == set(done_before) and set(resumed.written) == set(range(1, 41)) - set(done_before)
    reference = run_sequence(source, tmp_path / "whole", frame_estimator(plugin_file), save=save,
                                               progress="none")
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    for kind in ("distance", "disparity", "mask"):
        np.testing.assert_allclose(read_all(folder, kind, range(1, 41)),
                                   read_all(reference.folder, kind, range(1, 41)), rtol=1e-5, atol=1e-6)
    with av.open(str(folder / "preview.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 40


def test_bad_inputs_fail_clearly_before_writing(tmp_path, plugin_file):
    estimator = frame_estimator(plugin_file)
    source = write_sequence(tmp_path / "in", 5)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(Depth360Error, match="cannot write to output folder .*file/shot"):
        run_sequence(source, blocker, estimator, progress="none")
    os.remove(tmp_path / "in" / "shot_0003.png")
    with pytest.raises(BadInputError, match=r"shot_0003\.png is missing"):
        run_sequence(source, tmp_path / "out", estimator, progress="none")
    with pytest.raises(BadInputError, match="has 5 frames"):
        run_sequence(write_sequence(tmp_path / "ok", 5), tmp_path / "out", estimator,
                                       frames="4-9", progress="none")
    assert not (tmp_path / "out" / "shot").exists() or not list((tmp_path / "out" / "shot").iterdir())


def make_video(path: Path, count: int, pts_ms=None) -> Path:
    from fractions import Fraction

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if pts_ms:
            stream.codec_context.time_base = Fraction(1, 1000)
        rng = np.random.default_rng(1)
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8), format="rgb24")
            if pts_ms:
                frame.pts, frame.time_base = pts_ms[index], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_truncated_video_stops_cleanly_and_names_the_last_good_frame(tmp_path, plugin_file):
    path = make_video(tmp_path / "clip.mkv", 30)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match=r"clip\.mkv ends early: frame \d+ is the last good frame"):
        run_sequence(path, tmp_path / "out", frame_estimator(plugin_file),
                                       save=("distance", "mask"), progress="none")
    folder = tmp_path / "out" / "clip"
    files = list(folder.iterdir()) if folder.exists() else []  # the error may come before the first write
    assert not [p for p in files if p.name.startswith(".")]
    for exr in folder.glob("*.exr"):
        assert np.all(np.isfinite(image_io.read_exr(exr)))  # every file present is complete
    if files:  # frames were written: the run is recorded as failed, never as complete
        sidecar = json.loads((folder / "clip.json").read_text())
        assert sidecar["status"] == "failed" and "ends early" in sidecar["error"]


def test_variable_frame_rate_warns_and_keeps_every_frame(tmp_path, plugin_file):
    times = [0, 40, 80, 200, 240, 400, 440, 480, 600, 640]
    path = make_video(tmp_path / "vfr.mp4", 10, pts_ms=times)
    stderr = io.StringIO()
    result = run_sequence(path, tmp_path / "out", frame_estimator(plugin_file),
                                            save=("distance",), progress="none", stderr=stderr)
    assert "variable frame rate" in stderr.getvalue() and "decode order" in stderr.getvalue()
    assert result.written == tuple(range(1, 11))
    assert json.loads(result.sidecar.read_text())["input"]["variable_frame_rate"] is True


class FailingEstimator:
    kind = "relative-disparity"

    def predict(self, images, rays):
        if images[..., 1].mean() > 0.5:
            raise RuntimeError("model exploded")
        return np.ones(images.shape[:3], np.float32)


def test_an_error_in_a_stage_stops_the_pipeline_without_partial_files(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for number in range(1, 21):
        image = np.full((HEIGHT, WIDTH, 3), 0.2 if number < 12 else 0.9)
        cv2.imwrite(str(folder / f"shot_{number:04d}.png"), np.round(image * 255).astype(np.uint8))
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="model exploded"):
        run_sequence(folder, tmp_path / "out", PlainFrameEstimator(FailingEstimator(), batch_size=1),
                     save=("distance", "mask", "preview"), progress="none")
    assert time.monotonic() - started < 20
    names = [p.name for p in (tmp_path / "out" / "in").iterdir()]
    assert not [n for n in names if n.startswith(".") or n.endswith(".mp4")]
    written = {int(n.split("_")[1][:5]) for n in names if n.startswith("distance_")}
    assert written <= set(range(1, 12))
    assert video_io.probe(folder).frame_count == 20
