"""Issue 16, point 2: frames' files rendered and written on worker processes (pipeline.writers).

The same files, byte for byte, as when the write stage writes them itself; an error stops the
run with every file complete or absent, and a rerun resumes to the result of one whole run.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from depth360.estimators.models import plugins
from depth360.estimators.pipeline import EstimateRequest, run
from depth360.estimators.pipeline.frame_estimators import PlainFrameEstimator
from tests.engine.test_sequence_pipeline import PLUGIN, write_sequence

SAVE = ("distance", "disparity", "mask", "preview", "rgbd", "png16")


@pytest.fixture()
def wobbly(tmp_path):
    path = tmp_path / "wobbly.py"
    path.write_text(PLUGIN)
    return plugins.load_plugin(f"python:{path}:make")


class FailsAt:
    """The plug-in (under its name, so a rerun with it resumes), failing after `calls` calls."""

    kind = "relative-disparity"
    name = "Wobbly"

    def __init__(self, inner, calls: int):
        self.inner, self.calls = inner, calls

    def predict(self, images, rays):
        self.calls -= 1
        if self.calls < 0:
            time.sleep(3.0)  # the earlier frames reach the workers and are written first
            raise RuntimeError("model exploded")
        return self.inner.predict(images, rays)


def _run(source, out, estimator, writers: int):
    request = EstimateRequest(inputs=(str(source),), output_dir=str(out), save=SAVE, progress="none")
    return run(request, frame_estimator=PlainFrameEstimator(estimator, batch_size=1), writers=writers).sources[0]


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix in (".exr", ".png")}


@pytest.mark.slow
def test_worker_processes_write_the_same_files_and_resume_after_an_error(tmp_path, wobbly):
    source = write_sequence(tmp_path / "in", 8)
    plain = _run(source, tmp_path / "plain", wobbly, writers=0)
    with pytest.raises(RuntimeError, match="model exploded"):
        _run(source, tmp_path / "workers", FailsAt(wobbly, 5), writers=2)
    folder = tmp_path / "workers" / "shot"
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix in (".tmp", ".mp4")]
    assert not leftovers
    written = sorted({int(p.stem.split("_")[1]) for p in folder.glob("distance_*.exr")})
    assert written == list(range(1, len(written) + 1)) and 1 <= len(written) <= 5
    resumed = _run(source, tmp_path / "workers", wobbly, writers=2)
    assert set(resumed.written) | set(resumed.skipped) == set(range(1, 9))
    assert _files(folder) == _files(plain.folder)
    assert (folder / "preview.mp4").is_file()
    np.testing.assert_array_equal(np.frombuffer(_files(folder)["mask_00008.exr"], np.uint8),
                                  np.frombuffer(_files(plain.folder)["mask_00008.exr"], np.uint8))


@pytest.mark.parametrize("bits", [8, 16])
def test_a_stereo_stills_plate_keeps_its_sources_bit_depth_exactly(tmp_path, bits):
    import cv2

    rng = np.random.default_rng(bits)
    top = 255 if bits == 8 else 65535
    eye = cv2.resize(rng.integers(0, top, (32, 64, 3)).astype(np.float32), (256, 128), interpolation=cv2.INTER_CUBIC)
    eye = np.clip(eye, 0, top).astype(np.uint8 if bits == 8 else np.uint16)
    frame = np.concatenate([eye, np.roll(eye, 1, axis=1)], axis=0)  # top-bottom, a small parallax
    still = tmp_path / "pair.png"
    assert cv2.imwrite(str(still), frame)
    run(EstimateRequest(inputs=(str(still),), output_dir=str(tmp_path / "out"), model="stereo", layout="top-bottom"))
    plate = cv2.imread(str(tmp_path / "out" / "pair.left.png"), cv2.IMREAD_UNCHANGED)
    assert plate.dtype == eye.dtype  # an 8-bit source is not blown up to 16 bits, a 16-bit one not cut
    np.testing.assert_array_equal(plate, eye)
