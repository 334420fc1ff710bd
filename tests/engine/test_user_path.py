"""Issue 3, acceptance 3 and 4: the whole user path of a monocular model, and its failures.

Official-format weights (the fixture rule, saved under the official file name) go into a
temporary models folder; `depth360 estimate` runs on a photo; the EXR it writes is the
official end-to-end output. Each bad input gives a clear message, the contract's exit
status, and nothing half-written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from depth360.estimators import cli
from depth360.estimators.media.image_io import read_exr
from depth360.estimators.models import registry
from tests.reference_fixtures import REFERENCE_DIR, assert_matches_reference, fixture_state_dict

DEPTH360 = Path(sys.executable).with_name("depth360")
SMALL = registry.get("depth-anything-v2-small")
BASE = registry.get("depth-anything-v2-base")


@pytest.fixture(scope="module")
def vits_file(tmp_path_factory) -> Path:
    """The Depth Anything V2 Small fixture weights under the official file name."""
    path = tmp_path_factory.mktemp("models") / SMALL.checkpoint
    torch.save(fixture_state_dict("depth_anything_v2_vits"), path)
    return path


@pytest.fixture(scope="module")
def end_to_end() -> dict:
    return dict(np.load(REFERENCE_DIR / "depth_anything_v2_vits.infer_image.npz"))


@pytest.fixture
def photo(tmp_path, end_to_end) -> Path:
    path = tmp_path / "photo.png"
    assert cv2.imwrite(str(path), np.ascontiguousarray(end_to_end["raw_rgb"][..., ::-1]))
    return path


def _estimate(photo: Path, models: Path, out: Path, model: str = SMALL.name, *extra: str) -> list[str]:
    return ["estimate", str(photo), "--projection", "perspective", "--model", model,
            "--models-dir", str(models), "-o", str(out), *extra]


def _run_cli(args: list[str], capsys) -> tuple[int, str]:
    status = cli.main(args)
    return status, capsys.readouterr().err


@pytest.mark.slow
def test_estimate_writes_the_official_output(tmp_path, vits_file, photo, end_to_end):
    out = tmp_path / "out"
    result = subprocess.run(
        [str(DEPTH360), *_estimate(photo, vits_file.parent, out, SMALL.name, "--save", "disparity")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == ["photo.disparity.exr", "photo.json"]
    disparity = read_exr(out / "photo.disparity.exr")
    assert disparity.shape == end_to_end["expected"].shape == (480, 960)
    assert_matches_reference(disparity, end_to_end["expected"])
    sidecar = json.loads((out / "photo.json").read_text())
    assert sidecar["model"]["name"] == SMALL.name and sidecar["model"]["precision"] == "fp32"
    assert sidecar["run"]["projection"] == "perspective" and sidecar["run"]["save"] == ["disparity"]
    assert set(sidecar["timings_s"]) >= {"load_model", "read", "estimate", "write"}
    assert sidecar["version"]


def _models_with(tmp_path: Path, name: str, content: bytes) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    (models / name).write_bytes(content)
    return models


@pytest.mark.slow
def test_truncated_checkpoint(tmp_path, vits_file, photo, capsys):
    models = _models_with(tmp_path, SMALL.checkpoint, vits_file.read_bytes()[: 30_000_000])
    status, err = _run_cli(_estimate(photo, models, tmp_path / "out"), capsys)
    assert status == 2
    assert f"{models / SMALL.checkpoint}" in err and "truncated or corrupt" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_checkpoint_of_another_model(tmp_path, vits_file, photo, capsys):
    models = _models_with(tmp_path, BASE.checkpoint, vits_file.read_bytes())
    status, err = _run_cli(_estimate(photo, models, tmp_path / "out", BASE.name), capsys)
    assert status == 2
    assert f"{models / BASE.checkpoint} does not match model '{BASE.name}'" in err
    assert "tensors have another shape" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


class _Marker:
    """Unpickling this creates a file: proof that code in a checkpoint ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_checkpoint_holding_code_is_never_run(tmp_path, photo, capsys):
    marker = tmp_path / "code-ran"
    models = tmp_path / "models"
    models.mkdir()
    torch.save({"pretrained.cls_token": torch.zeros(1, 1, 384), "hook": _Marker(marker)}, models / SMALL.checkpoint)
    status, err = _run_cli(_estimate(photo, models, tmp_path / "out"), capsys)
    assert status == 2
    assert f"refused to load {models / SMALL.checkpoint}" in err and "it was not run" in err
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_missing_weights_exit_3_naming_file_folder_and_url(tmp_path, photo):
    models = tmp_path / "empty-models"
    result = subprocess.run(
        [str(DEPTH360), *_estimate(photo, models, tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 3
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for part in (SMALL.checkpoint, str(models), SMALL.url, f"depth360 models download {SMALL.name}"):
        assert part in err
    assert not (tmp_path / "out").exists()


def test_unknown_model_exit_2(tmp_path, photo):
    result = subprocess.run(
        [str(DEPTH360), *_estimate(photo, tmp_path, tmp_path / "out", "depth-anything-v9-huge")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert "unknown model 'depth-anything-v9-huge'" in result.stderr and SMALL.name in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_unreadable_image_exit_2_and_nothing_written(tmp_path, vits_file, photo, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is no JPEG")
    status, err = _run_cli(_estimate(broken, vits_file.parent, tmp_path / "out"), capsys)
    assert status == 2
    assert f"cannot read image {broken}" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_stacked_batch_equals_one_image_at_a_time(vits_file):
    from depth360.estimators.models.network_estimator import load_estimator

    rng = np.random.default_rng(2)
    images = rng.random((2, 24, 24, 3), dtype=np.float32)  # square: the network's smallest input, 518x518
    rays = np.broadcast_to(np.array([1.0, 0.0, 0.0], np.float32), images.shape)
    estimator = load_estimator(SMALL.name, vits_file.parent, "cpu", batch_size=2)
    assert estimator.kind == "relative-disparity" and estimator.precision == "fp32"
    together = estimator.predict(images, rays)
    assert together.shape == (2, 24, 24) and together.dtype == np.float32
    alone = estimator.predict(images[1:], rays[1:])[0]  # the second of a stacked batch, on its own
    np.testing.assert_allclose(together[1], alone, rtol=0, atol=1e-4 * np.abs(alone).max())
    assert not np.allclose(together[0], together[1])
    with pytest.raises(ValueError, match="rays must have the images' shape"):
        estimator.predict(images, rays[:, :10])


@pytest.mark.slow
def test_a_metric_model_on_a_photo_writes_its_planar_depth(tmp_path, photo):
    """Metric Depth Anything V2 gives metres to the image plane; a photo's distance file is exactly that.

    (In 360 mode the same planar depth is turned into distance along each ray: the
    planar metric oracle in test_fusion_oracle.py.)
    """
    metric = registry.get("depth-anything-v2-metric-indoor-small")
    assert metric.kind == "metric-depth" and metric.max_depth == 20.0
    assert all(spec.kind == "metric-depth" for spec in registry.all_specs() if "-metric-" in spec.name)
    models = tmp_path / "models"
    models.mkdir()
    torch.save(fixture_state_dict("depth_anything_v2_metric_hypersim_vits"), models / metric.checkpoint)
    out = tmp_path / "out"
    assert cli.main(_estimate(photo, models, out, metric.name, "--save", "distance,disparity,mask")) == 0
    from depth360.estimators.media.image_io import read_image
    from depth360.estimators.models.network_estimator import load_estimator

    official = load_estimator(metric.name, models, "cpu").predict(read_image(photo)[None])[0]
    distance = read_exr(out / "photo.distance.exr")
    assert 0.0 < official.min() and official.max() < metric.max_depth
    np.testing.assert_allclose(distance, official, rtol=1e-6)  # plane depth, unchanged
    np.testing.assert_allclose(read_exr(out / "photo.disparity.exr") * distance, 1.0, rtol=1e-6)
