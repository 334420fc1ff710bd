"""Issue 6 through the command line: videos and image sequences, frame ranges, JSON progress, resume, stereo."""

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

from depth360.estimators import cli
from depth360.estimators.cli import worker_protocol
from depth360.estimators.media.image_io import read_exr
from depth360.estimators.panorama.equirect import ray_directions
from depth360.estimators.pipeline import EstimateRequest
from depth360.estimators.pipeline.request import STEREO_FAR, STEREO_NEAR
from tests.groundtruth import render_stereo

DEPTH360 = Path(sys.executable).with_name("depth360")
REPO = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT, FRAMES = 128, 64, 8

# Metric distance from the ray alone: the fused 360 result must give it back along every ray.
PLUGIN = textwrap.dedent("""
    import numpy as np


    class FromRays:
        kind = "metric-distance"

        def predict(self, images, rays):
            return (2.0 + 0.5 * np.abs(rays[..., 2]) + 0.0 * images[..., 0]).astype(np.float32)


    def make():
        return FromRays()
""")


def _depth360(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEPTH360_MODELS": "/nonexistent/depth360-models"}
    return subprocess.run([str(DEPTH360), "estimate", *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)


def _frames(count: int = FRAMES) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    background = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    frames = []
    for number in range(1, count + 1):
        frame = background.copy()
        frame[20:40, 8 * number:8 * number + 12] = (250, 40, 20)  # a moving patch
        frames.append(frame)
    return frames


@pytest.fixture
def plugin(tmp_path) -> str:
    path = tmp_path / "from_rays.py"
    path.write_text(PLUGIN)
    return f"python:{path}:make"


@pytest.fixture
def sequence(tmp_path) -> Path:
    folder = tmp_path / "clip"
    folder.mkdir()
    for number, frame in enumerate(_frames(), start=1):
        assert cv2.imwrite(str(folder / f"clip_{number:05d}.png"), frame[..., ::-1])
    return folder


@pytest.fixture
def video(tmp_path) -> Path:
    path = tmp_path / "movie.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for frame in _frames():
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_the_worker_asks_for_json_progress():
    assert worker_protocol.cli_accepts_progress()


def test_numbered_folder_writes_every_frame_with_json_progress_and_resumes(tmp_path, sequence, plugin):
    out = tmp_path / "out"
    result = _depth360(str(sequence), "-o", str(out), "--model", plugin, "--progress", "json")
    assert result.returncode == 0, result.stderr
    lines = _json_lines(result.stdout)
    assert [line["frame"] for line in lines] == list(range(1, FRAMES + 1))
    assert [line["done"] for line in lines] == list(range(1, FRAMES + 1))
    assert all(line["total"] == FRAMES and set(line) == {"frame", "done", "total", "fps", "eta_s"} for line in lines)
    assert len(lines) == len([line for line in result.stdout.splitlines() if line.strip()]) - 1
    assert f"{sequence}: {FRAMES} frames written, 0 already complete, in {out / 'clip'}" in result.stdout

    folder = out / "clip"
    for number in range(1, FRAMES + 1):
        for name in (f"distance_{number:05d}.exr", f"mask_{number:05d}.exr", f"preview_{number:05d}.png"):
            assert (folder / name).is_file(), name
    assert (folder / "preview.mp4").is_file()
    expected = 2.0 + 0.5 * np.abs(ray_directions(HEIGHT, WIDTH)[..., 2])
    distance = read_exr(folder / "distance_00004.exr")
    assert distance.shape == (HEIGHT, WIDTH) and np.isfinite(distance).all()
    np.testing.assert_allclose(distance, expected, rtol=0.02)
    sidecar = json.loads((folder / "clip.json").read_text())
    assert sidecar["frames"]["written"] == FRAMES and sidecar["model"]["adapter"] == "equirect fusion"
    assert sidecar["run"]["projection"] == "equirect" and sidecar["model"]["views"] == "cube"

    stamps = {name: (folder / name).stat().st_mtime_ns for name in os.listdir(folder) if name.endswith(".exr")}
    again = _depth360(str(sequence), "-o", str(out), "--model", plugin, "--progress", "none")
    assert again.returncode == 0, again.stderr
    assert f"{sequence}: 0 frames written, {FRAMES} already complete" in again.stdout
    assert {name: (folder / name).stat().st_mtime_ns for name in stamps} == stamps


def test_frame_range_of_a_video_and_a_printf_pattern(tmp_path, video, sequence, plugin):
    out = tmp_path / "out"
    pattern = sequence / "clip_%05d.png"
    result = _depth360(str(video), str(pattern), "-o", str(out), "--model", plugin, "--frames", "3-5",
                       "--projection", "perspective", "--save", "distance,disparity,rgbd", "--progress", "json")
    assert result.returncode == 0, result.stderr
    assert [line["frame"] for line in _json_lines(result.stdout)] == [3, 4, 5, 3, 4, 5]
    for name in ("movie", "clip"):
        names = set(os.listdir(out / name))
        assert names == {f"{kind}_{n:05d}.{suffix}" for n in (3, 4, 5)
                         for kind, suffix in (("distance", "exr"), ("disparity", "exr"), ("rgbd", "png"))} | {
            f"{name}_00003-00005.json"}
        sidecar = json.loads((out / name / f"{name}_00003-00005.json").read_text())
        assert sidecar["frames"]["first"] == 3 and sidecar["frames"]["last"] == 5
        assert sidecar["model"]["projection"] == "perspective"
        rgbd = cv2.imread(str(out / name / "rgbd_00004.png"))
        assert rgbd.shape == (2 * HEIGHT, WIDTH, 3)
    assert "movie.mp4: 3 frames written, 0 already complete" in result.stdout


def test_worker_runs_a_sequence_with_progress(tmp_path, sequence, plugin):
    request = EstimateRequest(
        inputs=(str(sequence),), output_dir=str(tmp_path / "out"), model=plugin, frames=(2, 4),
        progress="json" if worker_protocol.cli_accepts_progress() else "none")
    env = worker_protocol.worker_environment(REPO)
    worker = worker_protocol.WorkerProcess(worker_protocol.worker_command(sys.executable, REPO.name, request), env=env)
    result = worker.run_to_end()
    assert result.status == "done", result.message
    assert [update.frame for update in worker.updates] == [2, 3, 4]
    assert worker.updates[-1].fraction == 1.0
    assert sorted(p.name for p in (tmp_path / "out" / "clip").glob("distance_*.exr")) == [
        "distance_00002.exr", "distance_00003.exr", "distance_00004.exr"]


def test_bad_sequence_inputs_exit_2_naming_the_file(tmp_path, sequence, plugin, capsys):
    out = tmp_path / "out"

    def fails(*args: str) -> str:
        assert cli.main(["estimate", *args, "-o", str(out), "--model", plugin]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err

    assert f"{sequence} has {FRAMES} frames; --frames ends at 12" in fails(str(sequence), "--frames", "7-12")
    assert "--frames 'x' is not of the form A-B" in fails(str(sequence), "--frames", "x")
    photo = tmp_path / "photo.png"
    assert cv2.imwrite(str(photo), _frames(1)[0])
    assert f"{photo}: --save rgbd is written for videos and image sequences only" in fails(
        str(photo), "--save", "rgbd")
    assert f"{photo}: --frames applies to videos" in fails(str(photo), str(sequence), "--frames", "1-2")
    assert f"inputs {sequence} and {sequence / 'clip_%05d.png'} would write the same output names" in fails(
        str(sequence), str(sequence / "clip_%05d.png"))
    assert f"{tmp_path / 'gone.mp4'} does not exist" in fails(str(tmp_path / "gone.mp4"))
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    for number in (1, 2):
        assert cv2.imwrite(str(narrow / f"n_{number}.png"), _frames(1)[0][:, :100])
    assert f"{narrow}: 360 footage must be twice as wide as high" in fails(str(narrow))
    (sequence / "clip_00005.png").unlink()
    assert "clip_00005.png is missing" in fails(str(sequence))
    assert not out.exists()


@pytest.mark.slow
def test_stereo_top_bottom_sequence(tmp_path):
    room = render_stereo("room", width=512, samples=8)  # disk-cached after one render
    folder = tmp_path / "stereo"
    folder.mkdir()
    count = 3
    for number in range(1, count + 1):  # the rig turning: every eye rolls by the same columns
        frame = np.concatenate([np.roll(room.left_rgb, 16 * number, axis=1),
                                np.roll(room.right_rgb, 16 * number, axis=1)], axis=0)
        assert cv2.imwrite(str(folder / f"st_{number:04d}.png"),
                           np.round(np.clip(frame, 0, 1)[..., ::-1] * 255).astype(np.uint8))
    out = tmp_path / "out"
    result = _depth360(str(folder), "-o", str(out), "--model", "stereo", "--layout", "top-bottom",
                       "--save", "distance,disparity,mask,preview", "--progress", "json")
    assert result.returncode == 0, result.stderr
    assert [line["frame"] for line in _json_lines(result.stdout)] == [1, 2, 3]
    truth_band = np.abs(90.0 - np.degrees(np.pi * (np.arange(256) + 0.5) / 256)) <= 60.0
    for number in range(1, count + 1):
        distance = read_exr(out / "stereo" / f"distance_{number:05d}.exr")
        mask = read_exr(out / "stereo" / f"mask_{number:05d}.exr") > 0.5
        assert distance.shape == (256, 512) and np.isfinite(distance).all()  # the left eye's size
        truth = np.roll(np.asarray(room.left_distance), 16 * number, axis=1)
        scored = mask & truth_band[:, None] & np.isfinite(truth)
        absrel = float(np.mean(np.abs(distance[scored] - truth[scored]) / truth[scored]))
        print(f"\nstereo sequence frame {number}: AbsRel {absrel:.2%}, valid {scored.sum() / (truth_band.sum() * 512):.1%}")
        assert absrel <= 0.07 and scored.sum() >= 0.9 * truth_band.sum() * 512
    preview = cv2.imread(str(out / "stereo" / "preview_00001.png"))
    assert preview.shape == (256, 1024, 3)  # the left eye beside its depth
    sidecar = json.loads((out / "stereo" / "stereo.json").read_text())
    assert sidecar["model"]["adapter"] == "stereo matching" and sidecar["model"]["layout"] == "top-bottom"
    assert sidecar["model"]["edges"] == "re-matched and cut"  # --edges auto
    depth = sidecar["recorded_options"]["depth"]
    assert depth["near"] == STEREO_NEAR and depth["far"] == STEREO_FAR
    other = _depth360(str(folder), "-o", str(out), "--model", "stereo", "--layout", "top-bottom", "--edges", "snap")
    assert other.returncode == 2 and "--edges 're-matched and cut' -> 're-matched and cut, then segmented'" in other.stderr

    mono = tmp_path / "mono"
    mono.mkdir()
    eye = np.round(np.asarray(room.left_rgb)[..., ::-1] * 255).astype(np.uint8)
    for number in (1, 2):
        assert cv2.imwrite(str(mono / f"m_{number}.png"), np.concatenate([eye, eye], axis=0))
    failed = _depth360(str(mono), "-o", str(out), "--model", "stereo", "--layout", "top-bottom")
    assert failed.returncode == 2
    assert f"{mono}:" in failed.stderr and "the two eyes are identical" in failed.stderr
    assert "Traceback" not in failed.stderr
