"""One pipeline: a still and the same image as a one-frame sequence give the same files, bit for bit.

Also the depth-kind rule of DESIGN.md on every path: where the mask is 1, disparity =
1/distance; where it is 0, disparity is 0 and distance holds the far value.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from depth360.estimators import cli
from depth360.estimators.media.image_io import read_exr
from depth360.estimators.models import registry
from tests.groundtruth import render_stereo
from tests.reference_fixtures import fixture_state_dict

ORACLE = textwrap.dedent("""
    import numpy as np

    class Walls:
        '''Inverse planar depth of each view of a box room, under a fixed affine map (a relative model).'''
        kind = "relative-disparity"

        def predict(self, images, rays):
            forward = rays[:, rays.shape[1] // 2, rays.shape[2] // 2]
            distance = 3.0 / np.maximum(np.abs(rays).max(axis=-1), 1e-6)
            planar = distance * np.einsum("nhwc,nc->nhw", rays, forward)
            return (0.7 / np.maximum(planar, 1e-3) + 0.05 + 0.1 * images[..., 0]).astype(np.float32)

    def make():
        return Walls()
""")


def _png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.round(np.clip(rgb, 0, 1)[..., ::-1] * 255).astype(np.uint8))
    return path


def _still_and_sequence(tmp_path: Path, rgb: np.ndarray) -> tuple[Path, Path]:
    still = _png(tmp_path / "in" / "shot.png", rgb)
    folder = tmp_path / "in" / "shot_seq"
    folder.mkdir()
    shutil.copy(still, folder / "frame_00001.png")
    return still, folder


def _run(inputs: list[Path], out: Path, *options: str) -> None:
    status = cli.main(["estimate", *map(str, inputs), "-o", str(out), "--progress", "none", *options])
    assert status == 0


def _same_files(out: Path, kinds: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Compare shot.<kind>.exr with shot_seq/<kind>_00001.exr byte for byte; the arrays."""
    arrays = {}
    for kind in kinds:
        for suffix in ("exr", "png"):
            still, frame = out / f"shot.{kind}.{suffix}", out / "shot_seq" / f"{kind}_00001.{suffix}"
            assert still.is_file() == frame.is_file(), (still, frame)
            if still.is_file():
                assert still.read_bytes() == frame.read_bytes(), f"{still.name} differs from {frame}"
        arrays[kind] = read_exr(out / f"shot.{kind}.exr")
    return arrays


def _check_kinds(arrays: dict[str, np.ndarray], far: float) -> None:
    """Where the mask is 1, disparity x distance = 1 (1e-6); elsewhere disparity 0 and distance far."""
    mask = arrays["mask"] > 0.5
    assert set(np.unique(arrays["mask"])) <= {0.0, 1.0} and mask.any()
    distance, disparity = arrays["distance"].astype(np.float64), arrays["disparity"].astype(np.float64)
    assert np.all(np.isfinite(distance)) and np.all(np.isfinite(disparity))
    assert np.max(np.abs(disparity[mask] * distance[mask] - 1.0)) <= 1e-6
    assert np.all(disparity[~mask] == 0.0) and np.all(distance[~mask] == np.float32(far))


@pytest.fixture(scope="module")
def room() -> np.ndarray:
    pair = render_stereo("room", width=256, samples=4)  # disk-cached
    return np.asarray(pair.left_rgb), np.asarray(pair.right_rgb)


def test_mono_360_with_the_oracle_plugin(tmp_path, room):
    plugin = tmp_path / "walls.py"
    plugin.write_text(ORACLE)
    still, folder = _still_and_sequence(tmp_path, room[0])
    out = tmp_path / "out"
    _run([still, folder], out, "--model", f"python:{plugin}:make", "--save", "distance,disparity,mask,png16")
    _check_kinds(_same_files(out, ("distance", "disparity", "mask")), far=100.0)


@pytest.mark.slow
def test_mono_360_with_the_network(tmp_path, room):
    small = registry.get("depth-anything-v2-small")
    models = tmp_path / "models"
    models.mkdir()
    torch.save(fixture_state_dict("depth_anything_v2_vits"), models / small.checkpoint)
    still, folder = _still_and_sequence(tmp_path, room[0][::2, ::2])
    out = tmp_path / "out"
    _run([still, folder], out, "--model", small.name, "--models-dir", str(models), "--near", "0.5", "--far", "20",
         "--save", "distance,disparity,mask")
    _check_kinds(_same_files(out, ("distance", "disparity", "mask")), far=20.0)


def test_stereo_360(tmp_path, room):
    still, folder = _still_and_sequence(tmp_path, np.concatenate(room, axis=0))
    out = tmp_path / "out"
    _run([still, folder], out, "--model", "stereo", "--layout", "top-bottom", "--save", "distance,disparity,mask,png16")
    _check_kinds(_same_files(out, ("distance", "disparity", "mask")), far=100.0)


def test_perspective_photos(tmp_path, room):
    plugin = tmp_path / "walls.py"
    plugin.write_text(ORACLE)
    photo = room[0][32:96, 64:160]  # an ordinary photo's shape
    still, folder = _still_and_sequence(tmp_path, photo)
    model = ["--projection", "perspective", "--model", f"python:{plugin}:make"]
    calibrated = tmp_path / "calibrated"
    _run([still, folder], calibrated, *model, "--near", "1", "--far", "10", "--save", "distance,disparity,mask")
    _check_kinds(_same_files(calibrated, ("distance", "disparity", "mask")), far=10.0)
    uncalibrated = tmp_path / "uncalibrated"  # no near/far: the model's own disparity, in both
    _run([still, folder], uncalibrated, *model, "--save", "disparity,mask")
    arrays = _same_files(uncalibrated, ("disparity", "mask"))
    assert arrays["disparity"].min() > 0 and arrays["mask"].min() == 1.0
