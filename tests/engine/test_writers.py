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
