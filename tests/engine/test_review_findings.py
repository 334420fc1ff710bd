"""Issue 11's engine findings, each with the test that would have caught it.

- stabilisation with temporal alignment off read relative disparity as 1/metres;
- concurrent chunks of one shot deleted each other's temporary files in flight;
- reading the umask changed it (a race with threads creating files);
- the worker put inputs before the options with no `--` (an input named like an option).
(The metric models' planar depth is test_fusion_oracle.py's and test_user_path.py's.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from depth360.estimators import pipeline
from depth360.estimators.cli.worker_protocol import (
    WorkerProcess,
    worker_command,
    worker_environment,
)
from depth360.estimators.media import image_io
from depth360.estimators.pipeline import EstimateRequest, resume
from depth360.estimators.pipeline.frame_estimators import PlainFrameEstimator
from depth360.estimators.pipeline.outputs import OutputLayout
from depth360.estimators.video.temporal import StabiliserSettings

REPO = Path(__file__).resolve().parents[2]
DEPTH360 = Path(sys.executable).with_name("depth360")
WIDTH, HEIGHT = 64, 32

SLOW_PLUGIN = textwrap.dedent("""
    import os, time
    import numpy as np

    class Slow:
        kind = "relative-disparity"

        def predict(self, images, rays):
            time.sleep(float(os.environ.get("SLOW_DELAY", "0")) * len(images))
            return (100.0 * (0.3 + images.mean(axis=-1) + 0.2 * np.abs(rays[..., 2]))).astype(np.float32)

    def make():
        return Slow()
""")


def _sequence(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(8)
    base = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    for number in range(1, count + 1):
        frame = np.roll(base, number, axis=1)
        assert cv2.imwrite(str(folder / f"f_{number:04d}.png"), frame)
    return folder


@pytest.fixture
def plugin(tmp_path) -> str:
    path = tmp_path / "slow.py"
    path.write_text(SLOW_PLUGIN)
    return f"python:{path}:make"


def test_stabilising_without_alignment_still_calibrates(tmp_path, plugin):
    """Relative disparity x 100 is not 1/metres: with alignment off each frame follows the near/far rule."""
    from depth360.estimators.models.plugins import load_plugin

    source = _sequence(tmp_path / "seq", 4)
    request = EstimateRequest(inputs=(str(source),), output_dir=str(tmp_path / "out"), near=1.0, far=10.0,
                              save=("distance", "disparity", "mask"))
    settings = StabiliserSettings(align=False)
    pipeline.run(request, frame_estimator=PlainFrameEstimator(load_plugin(plugin)), stabiliser=settings)
    for number in range(1, 5):
        distance = image_io.read_exr(tmp_path / "out" / "seq" / f"distance_{number:05d}.exr")
        low, high = np.percentile(distance, [2, 98])
        assert low == pytest.approx(1.0, rel=0.05) and high == pytest.approx(10.0, rel=0.05), (low, high)
        assert np.ptp(distance) > 5.0  # not one distance everywhere


def test_only_dead_processes_temporaries_are_cleared(tmp_path):
    """A temporary of a live process (another chunk writing now) stays; a dead process's goes."""
    layout = OutputLayout(tmp_path / "shot", "shot", still=False)
    layout.folder.mkdir()
    host = image_io.temporary_owner().rpartition("@")[0]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = tmp_path / "shot" / f".distance_00031.exr.{host}@{os.getpid()}.abc123.tmp"
    stale = tmp_path / "shot" / f".distance_00031.exr.{host}@{dead.pid}.def456.tmp"
    elsewhere = tmp_path / "shot" / ".distance_00032.exr.othernode@1.xyz789.tmp"
    for path in (live, stale, elsewhere):
        path.write_bytes(b"partial")
    assert resume.remove_stale_temporaries(layout) == 1
    assert live.exists() and elsewhere.exists() and not stale.exists()
    with image_io.atomic_path(tmp_path / "shot" / "x.exr") as temporary:  # the names the engine writes
        assert temporary.name.startswith(f".x.exr.{host}@{os.getpid()}.") and temporary.name.endswith(".tmp")


@pytest.mark.slow
def test_two_chunks_at_once_into_one_folder_equal_a_single_run(tmp_path, plugin):
    source = _sequence(tmp_path / "seq", 60)
    env = {**os.environ, "SLOW_DELAY": "0.02"}
    common = ["--model", plugin, "--views", "equirect", "--progress", "none", "--save", "distance,disparity,mask"]
    chunks = [subprocess.Popen([str(DEPTH360), "estimate", str(source), "-o", str(tmp_path / "chunks"),
                                "--frames", frames, *common], env=env, stderr=subprocess.PIPE, text=True)
              for frames in ("1-30", "31-")]
    for chunk in chunks:
        _, err = chunk.communicate(timeout=300)
        assert chunk.returncode == 0, err
    whole = subprocess.run([str(DEPTH360), "estimate", str(source), "-o", str(tmp_path / "whole"), *common],
                           env={**env, "SLOW_DELAY": "0"}, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    folder = tmp_path / "chunks" / "seq"
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    for number in range(1, 61):
        for kind in ("distance", "disparity", "mask"):
            got = image_io.read_exr(folder / f"{kind}_{number:05d}.exr")
            want = image_io.read_exr(tmp_path / "whole" / "seq" / f"{kind}_{number:05d}.exr")
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{kind} {number}")


def test_writing_a_file_never_changes_the_umask(tmp_path, monkeypatch):
    calls = []
    real_umask = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real_umask(mask))
    image_io.write_bytes_atomic(tmp_path / "file.bin", b"data")
    assert calls == []
    mask = real_umask(0o022)
    real_umask(mask)
    assert (tmp_path / "file.bin").stat().st_mode & 0o777 == 0o666 & ~mask


def test_an_input_named_like_an_option_reaches_the_worker_as_an_input(tmp_path):
    plugin = tmp_path / "constant.py"
    plugin.write_text("import numpy as np\n\nclass C:\n    kind = 'metric-distance'\n\n"
                      "    def predict(self, images, rays):\n        return np.full(images.shape[:3], 2.0, np.float32)\n\n"
                      "def make():\n    return C()\n")
    image = tmp_path / "-dash.png"
    assert cv2.imwrite(str(image), np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    request = EstimateRequest(inputs=("-dash.png",), output_dir=str(tmp_path / "out"),
                              model=f"python:{plugin}:make", views="equirect", progress="json")
    worker = WorkerProcess(worker_command(sys.executable, REPO.name, request), env=worker_environment(REPO),
                           cwd=tmp_path)
    started = time.monotonic()
    result = worker.run_to_end()
    assert result.status == "done", result.message
    assert (tmp_path / "out" / "-dash.distance.exr").is_file() and time.monotonic() - started < 120
