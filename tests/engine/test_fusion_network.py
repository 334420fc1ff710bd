"""Issue 4, acceptance 4: the 360 path with a real network, file to EXR, through the CLI.

Depth Anything V2 Small runs with the reference fixtures' deterministic weights (saved
under the official file name in a temporary models folder, as a download would be):
their depth means nothing, but every stage runs on a real network's output: a 2:1
Cycles render of the room and a 4K (3840x1920) frame go from PNG through the cube
views, the network, alignment, blending and calibration into EXRs, with the sidecar's
timings. The 4K views are the network's native 518 px (`fusion.native_view_size`), not
the panorama's density (1746 px), which the network would shrink to 518 anyway.
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

from depth360.estimators.media.image_io import read_exr
from depth360.estimators.models import registry
from depth360.estimators.models.network_estimator import load_estimator
from depth360.estimators.panorama.fusion import estimate_equirect, native_view_size
from tests.engine.test_user_path import (
    vits_file,  # noqa: F401  (the fixture weights, a pytest fixture)
)
from tests.groundtruth import render_mono

DEPTH360 = Path(sys.executable).with_name("depth360")
SMALL = registry.get("depth-anything-v2-small")
NEAR, FAR = 1.0, 100.0  # the fusion defaults for relative models


@pytest.fixture(scope="module")
def room_rgb() -> np.ndarray:
    """The room render, float32 RGB [256, 512, 3] (the oracle tests' render, cached on disk)."""
    return np.asarray(render_mono("room", 512, samples=4).rgb, dtype=np.float32)


def _write_png(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), np.clip(np.rint(rgb[..., ::-1] * 255), 0, 255).astype(np.uint8))
    return path


def _check_outputs(out: Path, stem: str, height: int, width: int) -> np.ndarray:
    """The default outputs of one input are complete and sane; returns the distance."""
    distance = read_exr(out / f"{stem}.distance.exr")
    mask = read_exr(out / f"{stem}.mask.exr")
    preview = cv2.imread(str(out / f"{stem}.preview.png"))
    assert distance.shape == mask.shape == (height, width) and preview.shape == (height, width, 3)
    assert np.all(np.isfinite(distance)) and distance.min() >= NEAR and distance.max() <= FAR
    assert set(np.unique(mask)) <= {0.0, 1.0}
    valid = mask == 1.0
    # The percentile rule puts ~2% at each end; only pixels mapped past infinity are invalid.
    assert valid.mean() > 0.95
    assert np.all(distance[~valid] == FAR) and np.all(preview[~valid] == 0)
    assert np.isclose(np.percentile(distance[valid], 2), NEAR, rtol=0.05)
    sidecar = json.loads((out / f"{stem}.json").read_text())
    assert sidecar["size"] == {"width": width, "height": height} and sidecar["run"]["projection"] == "equirect"
    assert sidecar["model"]["name"] == SMALL.name
    assert all(sidecar["timings_s"][k] > 0 for k in ("load_model", "read", "estimate", "post", "write"))
    stages = {k for k in sidecar["timings_s"] if k.startswith("estimate_")}  # the 360 fusion's stages
    assert stages == {"estimate_project", "estimate_predict", "estimate_align", "estimate_merge", "estimate_sky"}
    assert sidecar["timings_s"]["estimate_predict"] > 0 and sidecar["model"]["views"] == "cube"
    return distance


def _seam_free(distance: np.ndarray) -> None:
    """No step across the wrap beyond the map's own column-to-column steps; flat at the poles."""
    inverse = 1.0 / distance.astype(np.float64)
    span = np.percentile(inverse, 99) - np.percentile(inverse, 1)
    steps = np.abs(np.diff(inverse, axis=1))
    wrap = np.abs(inverse[:, 0] - inverse[:, -1])
    assert np.percentile(wrap, 99) <= 1.5 * np.percentile(steps, 99)
    # The top and bottom rows each look at (almost) one direction.
    assert inverse[0].std() < 0.05 * span and inverse[-1].std() < 0.05 * span


@pytest.mark.slow
def test_cli_fuses_a_render_and_a_4k_frame_with_the_network(tmp_path, vits_file, room_rgb):  # noqa: F811
    """`depth360 estimate room.png room4k.png --views cube` with Depth Anything V2 Small."""
    room = _write_png(tmp_path / "room.png", room_rgb)
    frame_4k = cv2.resize(room_rgb, (3840, 1920), interpolation=cv2.INTER_CUBIC)
    room4k = _write_png(tmp_path / "room4k.png", frame_4k)
    out = tmp_path / "out"
    result = subprocess.run(
        [str(DEPTH360), "estimate", str(room), str(room4k), "-o", str(out), "--model", SMALL.name,
         "--models-dir", str(vits_file.parent), "--views", "cube"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == sorted(
        f"{stem}.{kind}" for stem in ("room", "room4k")
        for kind in ("distance.exr", "mask.exr", "preview.png", "json")
    )  # no temporary files left behind
    for stem, (height, width) in (("room", (256, 512)), ("room4k", (1920, 3840))):
        _seam_free(_check_outputs(out, stem, height, width))
    stages = json.loads((out / "room4k.json").read_text())["timings_s"]
    print(f"\n4K frame, stages (s): {stages}")


@pytest.mark.slow
def test_network_views_default_to_the_native_size_and_alignment_pulls_them_together(vits_file, room_rgb):  # noqa: F811
    estimator = load_estimator(SMALL.name, vits_file.parent, "cpu")
    assert estimator.native_size == SMALL.input_size == 518
    # 4K: the panorama's density would ask for 1746 px cube views (1222 px ico views).
    assert native_view_size(estimator, "cube", 3840) == 518
    assert native_view_size(estimator, "ico", 3840) == 518
    assert native_view_size(estimator, "cube", 1024) == 466  # below the native size: the density
    assert native_view_size(estimator, "equirect", 3840) is None
    assert native_view_size(object(), "cube", 3840) == 1746  # an estimator without a native size

    fused = estimate_equirect(room_rgb, estimator, "cube")
    assert [(v.height, v.width) for v in fused.views] == [(234, 234)] * 6
    # The network's views disagree (random weights); the joint alignment must shrink that.
    alignment = fused.alignment
    print(f"\noverlap disagreement: before {alignment.residual_before:.3f}, after {alignment.residual_after:.3f}")
    assert alignment.residual_after < 0.5 * alignment.residual_before
    assert fused.mask.mean() > 0.95 and np.all(np.isfinite(fused.distance))
