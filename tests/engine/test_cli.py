"""The `depth360` command line: help, version, models table, download refusal, usage errors, plug-ins."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from depth360.estimators import cli
from depth360.estimators.media.image_io import read_exr
from depth360.estimators.models import registry
from depth360.estimators.panorama.projection import View, look_at
from depth360.estimators.pipeline.frame_estimators import PHOTO_FOV_DEG
from depth360.estimators.version import __version__

DEPTH360 = Path(sys.executable).with_name("depth360")


def _depth360(*args: str, models: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEPTH360_MODELS": str(models or "/nonexistent/depth360-models")}
    return subprocess.run([str(DEPTH360), *args], capture_output=True, text=True, timeout=300, env=env)


def _table_rows(stdout: str) -> dict[str, str]:
    return {line.split()[0]: line for line in stdout.splitlines()[2:] if line.strip()}


def test_help_and_version():
    result = _depth360("--help")
    assert result.returncode == 0
    assert "models" in result.stdout and "estimate" in result.stdout
    estimate = _depth360("estimate", "--help")
    assert estimate.returncode == 0
    for option in ("--projection", "--models-dir", "--save", "--near", "--device", "exit status"):
        assert option in estimate.stdout
    version = _depth360("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"depth360 {__version__}"


def test_models_lists_every_model_with_licence_and_presence(tmp_path):
    result = _depth360("models", "--models-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"models folder: {tmp_path}" in result.stdout
    rows = _table_rows(result.stdout)
    assert list(rows) == [spec.name for spec in registry.all_specs()]
    for spec in registry.all_specs():
        row = rows[spec.name]
        assert spec.family in row and spec.license in row and spec.kind in row
        assert ("(non-commercial)" in row) == (not spec.commercial_use)
        assert row.endswith("not needed" if spec.checkpoint is None else " no")

    small = registry.get("depth-anything-v2-small")
    (tmp_path / small.checkpoint).write_bytes(b"weights")
    rows = _table_rows(_depth360("models", models=tmp_path).stdout)  # the folder from $DEPTH360_MODELS
    assert rows[small.name].endswith(" yes")
    assert rows["depth-anything-v2-base"].endswith(" no")


# The downloads pinned to a revision (Hugging Face commit or GitHub release), a sha256 and a byte
# size, each from two independent sources (registry.py cites them). For the others no second source
# was found: Metric Hypersim Base has one source for its revision (so its URL stays on main, its
# sha256 and size still pin the bytes); five MiDaS files have no sha256 and size with two sources;
# Video Depth Anything Metric Base and Large have one source for their size.
FULLY_PINNED = {
    "depth-anything-v2-small", "depth-anything-v2-base", "depth-anything-v2-large",
    "depth-anything-v2-metric-indoor-small", "depth-anything-v2-metric-indoor-large",
    "depth-anything-v2-metric-outdoor-small", "depth-anything-v2-metric-outdoor-base",
    "depth-anything-v2-metric-outdoor-large", "midas-dpt-beit-large-512", "midas-dpt-large-384",
    "video-depth-anything-small", "video-depth-anything-base", "video-depth-anything-large",
    "video-depth-anything-metric-small",
}
NOT_PINNED = {
    "depth-anything-v2-metric-indoor-base": "no: revision",
    "midas-dpt-beit-base-384": "no: sha256, size",
    "midas-dpt-swin2-large-384": "no: sha256, size",
    "midas-dpt-swin2-tiny-256": "no: sha256, size",
    "midas-dpt-levit-224": "no: sha256, size",
    "midas-dpt-hybrid-384": "no: sha256, size",
    "video-depth-anything-metric-base": "no: size",
    "video-depth-anything-metric-large": "no: size",
}


def test_models_shows_which_downloads_are_pinned(tmp_path):
    result = _depth360("models", "--models-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[1].split()
    assert header == ["NAME", "FAMILY", "LICENCE", "KIND", "PINNED", "WEIGHTS"]
    rows = _table_rows(result.stdout)
    for spec in registry.all_specs():
        cells = rows[spec.name].split("  ")
        pinned = [cell.strip() for cell in cells if cell.strip()][-2]
        if spec.checkpoint is None:
            assert pinned == "-"
        elif spec.name in FULLY_PINNED:
            assert pinned == "yes", spec.name
        else:
            assert pinned == NOT_PINNED[spec.name], spec.name
    assert FULLY_PINNED | set(NOT_PINNED) == {spec.name for spec in registry.all_specs() if spec.checkpoint}


def test_pins_are_immutable_and_well_formed():
    for spec in registry.all_specs():
        if spec.checkpoint is None:
            assert spec.url is None and spec.unpinned == ()
            continue
        assert bool(spec.unpinned) == bool(spec.unverified), spec.name  # a gap always says why
        assert spec.url.endswith("/" + spec.checkpoint)
        if spec.revision is None:
            assert "/resolve/main/" in spec.url
        elif spec.family == "midas":
            tag = spec.revision.removeprefix("release ")
            assert spec.url == f"https://github.com/isl-org/MiDaS/releases/download/{tag}/{spec.checkpoint}"
        else:
            assert len(spec.revision) == 40 and int(spec.revision, 16) >= 0
            assert f"/resolve/{spec.revision}/" in spec.url
        if spec.sha256 is not None:
            assert len(spec.sha256) == 64 and spec.sha256 == spec.sha256.lower() and int(spec.sha256, 16) >= 0
        if spec.size_bytes is not None:
            assert spec.size_bytes > 50_000_000, spec.name  # every official checkpoint is tens of MB or more
    pinned_sha = [spec.sha256 for spec in registry.all_specs() if spec.sha256]
    assert len(pinned_sha) == len(set(pinned_sha))  # no digest copied onto the wrong model


def test_download_refuses_clearly_when_offline(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    models = tmp_path / "models"
    result = _depth360("models", "download", "depth-anything-v2-small", "--models-dir", str(models),
                       "--url", f"http://127.0.0.1:{port}/depth_anything_v2_vits.pth", "--quiet")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "cannot download depth-anything-v2-small" in result.stderr
    assert not models.exists() or not any(models.iterdir())


def test_download_of_an_unknown_model_is_bad_usage():
    result = _depth360("models", "download", "no-such-model")
    assert result.returncode == 2 and "unknown model 'no-such-model'" in result.stderr


@pytest.fixture
def photo(tmp_path) -> Path:
    rgb = np.random.default_rng(5).integers(0, 256, size=(24, 40, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), rgb[..., ::-1])
    return path


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--near", "1"], "--near and --far go together"),
        (["--near", "5", "--far", "2"], "must be less than --far"),
        (["--save", "distance"], "needs --near and --far"),
        (["--save", "png16,preview"], "save one of them too"),
        (["--layout", "top-bottom"], "stereo-guided depth (--model depth-anything-v2-small with --layout top-bottom) is for 360"),
        (["--frames", "1-5"], "applies to videos and image sequences, not to a still image"),
    ],
)
def test_estimate_usage_errors_exit_2(tmp_path, photo, capsys, extra, message):
    args = ["estimate", str(photo), "--projection", "perspective", "-o", str(tmp_path / "out"), *extra]
    assert cli.main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_estimate_bad_inputs_exit_2(tmp_path, capsys):
    for name in ("missing.png", "clip.mp4"):
        assert cli.main(["estimate", str(tmp_path / name), "--projection", "perspective", "-o", str(tmp_path)]) == 2
        assert name in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        cli.main(["estimate", "x.png", "-o", str(tmp_path), "--save", "depth"])
    assert caught.value.code == 2


def _plugin(tmp_path: Path, body: str) -> str:
    path = tmp_path / "my_estimator.py"
    path.write_text(textwrap.dedent(body))
    return f"python:{path}:make"


RELATIVE_PLUGIN = """
    import numpy as np

    class Brightness:
        kind = "relative-disparity"

        def predict(self, images, rays):
            assert images.dtype == np.float32 and rays.shape == images.shape
            return images.mean(axis=-1) + np.float32(0.25)

    def make():
        return Brightness()
"""

METRIC_PLUGIN = """
    import numpy as np

    class FromRays:
        kind = "metric-distance"

        def predict(self, images, rays):
            return (2.0 + rays[..., 0]).astype(np.float32)

    def make():
        return FromRays()
"""


def test_relative_plugin_writes_its_disparity(tmp_path, photo, capsys):
    out = tmp_path / "out"
    args = ["estimate", str(photo), "--projection", "perspective", "-o", str(out),
            "--model", _plugin(tmp_path, RELATIVE_PLUGIN)]
    assert cli.main(args) == 0
    assert "writing disparity instead of distance" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["photo.disparity.exr", "photo.json", "photo.mask.exr", "photo.preview.png"]
    image = cv2.imread(str(photo))[..., ::-1].astype(np.float32) / 255
    np.testing.assert_array_equal(read_exr(out / "photo.disparity.exr"), image.mean(axis=-1) + np.float32(0.25))
    assert read_exr(out / "photo.mask.exr").min() == 1.0
    sidecar = json.loads((out / "photo.json").read_text())
    assert sidecar["model"]["plugin"] is True and sidecar["model"]["kind"] == "relative-disparity"


def test_relative_plugin_distance_follows_the_near_far_rule(tmp_path, photo):
    out = tmp_path / "out"
    args = ["estimate", str(photo), "--projection", "perspective", "-o", str(out), "--save", "distance,png16",
            "--near", "1", "--far", "10", "--model", _plugin(tmp_path, RELATIVE_PLUGIN)]
    assert cli.main(args) == 0
    distance = read_exr(out / "photo.distance.exr")
    assert 1.0 <= distance.min() and distance.max() <= 10.0
    assert np.isclose(np.percentile(distance, 2), 1.0, atol=0.05)
    assert np.isclose(np.percentile(distance, 98), 10.0, rtol=0.02)
    sidecar = json.loads((out / "photo.json").read_text())
    assert sidecar["outputs"]["distance_png16"]["file"] == "photo.distance.png"


def test_metric_plugin_gets_pinhole_rays_and_writes_distance(tmp_path, photo):
    out = tmp_path / "out"
    args = ["estimate", str(photo), "--projection", "perspective", "-o", str(out),
            "--save", "distance,disparity", "--model", _plugin(tmp_path, METRIC_PLUGIN)]
    assert cli.main(args) == 0
    rays = View(look_at((1.0, 0.0, 0.0)), PHOTO_FOV_DEG, 24, 40).rays()
    # Metric depth travels as its inverse through the post stage: equal to float32 rounding.
    np.testing.assert_allclose(read_exr(out / "photo.distance.exr"), 2.0 + rays[..., 0], rtol=2e-7)
    np.testing.assert_allclose(read_exr(out / "photo.disparity.exr"), 1.0 / (2.0 + rays[..., 0]), rtol=1e-6)


@pytest.mark.parametrize(
    "body, message",
    [
        ("def make():\n    return object()\n", "kind is None"),
        ("class E:\n    kind = 'relative-disparity'\n    predict = None\ndef make():\n    return E()\n", "no callable predict"),
        ("def other():\n    pass\n", "has no callable 'make'"),
        ("raise RuntimeError('broken plug-in')\n", "failed to import: RuntimeError: broken plug-in"),
        (RELATIVE_PLUGIN.replace("images.mean(axis=-1)", "images"), "predict returned shape"),
    ],
)
def test_bad_plugins_exit_2(tmp_path, photo, capsys, body, message):
    args = ["estimate", str(photo), "--projection", "perspective", "-o", str(tmp_path / "out"),
            "--model", _plugin(tmp_path, body)]
    assert cli.main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_plugin_file_must_exist(tmp_path, photo, capsys):
    args = ["estimate", str(photo), "--projection", "perspective", "-o", str(tmp_path / "out"),
            "--model", f"python:{tmp_path / 'nope.py'}:make"]
    assert cli.main(args) == 2
    assert "nope.py does not exist" in capsys.readouterr().err


CONSTANT_METRIC_PLUGIN = """
    import numpy as np

    class Constant:
        kind = "metric-distance"

        def predict(self, images, rays):
            return np.full(images.shape[:3], 3.0, np.float32)

    def make():
        return Constant()
"""


def test_equirect_projection_runs_the_360_path(tmp_path, capsys):
    rgb = np.random.default_rng(6).integers(0, 256, size=(32, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "pano.png"), rgb)
    out = tmp_path / "out"
    plugin = _plugin(tmp_path, CONSTANT_METRIC_PLUGIN)
    assert cli.main(["estimate", str(tmp_path / "pano.png"), "-o", str(out), "--model", plugin]) == 0
    np.testing.assert_allclose(read_exr(out / "pano.distance.exr"), 3.0, rtol=1e-5)
    assert read_exr(out / "pano.mask.exr").min() == 1.0
    assert json.loads((out / "pano.json").read_text())["model"]["views"] == "cube"

    cv2.imwrite(str(tmp_path / "wide.png"), rgb[:, :50])
    assert cli.main(["estimate", str(tmp_path / "wide.png"), "-o", str(out), "--model", plugin]) == 2
    assert "wide.png" in capsys.readouterr().err and not (out / "wide.json").exists()


def test_device_and_precision_choice_is_explicit():
    import torch

    from depth360.estimators.errors import BadInputError
    from depth360.estimators.models.devices import choose_device, choose_precision

    auto = choose_device("auto")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert auto.type == expected
    assert choose_device("cpu").type == "cpu"
    assert choose_precision(torch.device("cpu")) == torch.float32
    with pytest.raises(BadInputError, match="on the CPU the engine runs fp32"):
        choose_precision(torch.device("cpu"), "fp16")
    with pytest.raises(BadInputError, match="unknown device 'tpu'"):
        choose_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BadInputError, match="no CUDA GPU"):
            choose_device("cuda")
    else:
        assert choose_precision(torch.device("cuda")) == torch.float16


@pytest.fixture(scope="module")
def metric_small_fixture(tmp_path_factory) -> bytes:
    """Metric Hypersim Small fixture weights saved as the official file is (not its bytes)."""
    import torch

    from tests.reference_fixtures import fixture_state_dict

    path = tmp_path_factory.mktemp("served") / "served.pth"
    torch.save(fixture_state_dict("depth_anything_v2_metric_hypersim_vits"), path)
    return path.read_bytes()


@pytest.mark.slow
def test_download_command_fetches_verifies_and_lists(tmp_path, metric_small_fixture, monkeypatch, capsys):
    import dataclasses
    import hashlib

    from tests.loopback_server import LoopbackFileServer

    # The spec pinned to the served bytes (the fixture is not the official file).
    real = registry.get("depth-anything-v2-metric-indoor-small")
    served = dataclasses.replace(real, size_bytes=len(metric_small_fixture),
                                 sha256=hashlib.sha256(metric_small_fixture).hexdigest())
    monkeypatch.setattr(registry, "_SPECS", tuple(served if s is real else s for s in registry.all_specs()))
    models = tmp_path / "models"
    with LoopbackFileServer(metric_small_fixture) as server:
        status = cli.main(["models", "download", real.name, "--models-dir", str(models), "--url", server.url])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert f"saved {models / real.checkpoint} ({len(metric_small_fixture)} bytes, sha256 {served.sha256})" in out
    assert "B/s" in err  # the tqdm progress bar is on stderr
    assert sorted(os.listdir(models)) == [real.checkpoint]
    assert _table_rows(_depth360("models", "--models-dir", str(models)).stdout)[real.name].endswith(" yes")


@pytest.mark.slow
def test_download_command_refuses_a_file_that_is_not_the_pinned_one(tmp_path, metric_small_fixture):
    from tests.loopback_server import LoopbackFileServer

    spec = registry.get("depth-anything-v2-metric-indoor-small")
    models = tmp_path / "models"
    with LoopbackFileServer(metric_small_fixture) as server:
        result = _depth360("models", "download", spec.name, "--models-dir", str(models), "--url", server.url, "--quiet")
    assert result.returncode == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert f"is {len(metric_small_fixture)} bytes, expected {spec.size_bytes}" in message
    assert spec.checkpoint in message and "nothing was kept" in message
    assert not models.exists() or os.listdir(models) == []
