"""Issue 4, acceptance 5: awkward and bad images on the 360 path, through the CLI.

Decisions (image_io.read_image and fusion.estimate_equirect):
- grey (with or without alpha): converted to RGB, R = G = B;
- RGBA: alpha dropped (as the official model code does);
- 16-bit: scaled by 1/65535, so a 16-bit image holding 257 x its 8-bit values gives the
  8-bit image's result exactly;
- not 2:1: refused (exit 2) with a message that gives the size, says it is not 2:1 and
  points to `--projection perspective`;
- a 1-pixel image, or a 2:1 one too small for views (< 16 x 8): refused (exit 2).
A refusal names the file, is one line without a traceback, and writes nothing for that
input; inputs before it are complete.

The converted cases run a plug-in estimator whose output depends on the pixels (the
DESIGN.md protocol, cheap): equal outputs prove equal images reached the estimator.
The flagship refusal runs the real `depth360` process with Depth Anything V2 Small.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from depth360.estimators import cli
from depth360.estimators.media.image_io import read_exr
from depth360.estimators.models import registry
from tests.engine.test_user_path import (
    vits_file,  # noqa: F401  (the fixture weights, a pytest fixture)
)

DEPTH360 = Path(sys.executable).with_name("depth360")
SMALL = registry.get("depth-anything-v2-small")
WIDTH, HEIGHT = 64, 32

BRIGHTNESS_PLUGIN = """
    import numpy as np

    class Brightness:
        kind = "relative-disparity"

        def predict(self, images, rays):
            # Brighter and higher is nearer: depends on every channel and on the view's rays.
            weights = np.array([0.5, 0.3, 0.2], np.float32)
            return (images @ weights + 0.3 * rays[..., 2] + 1.0).astype(np.float32)

    def make():
        return Brightness()
"""


@pytest.fixture
def plugin(tmp_path) -> str:
    path = tmp_path / "brightness.py"
    path.write_text(textwrap.dedent(BRIGHTNESS_PLUGIN))
    return f"python:{path}:make"


def write_png(path: Path, pixels: np.ndarray, colour_type: int) -> Path:
    """A PNG of any colour type OpenCV cannot write (grey + alpha): 0 grey, 2 RGB, 4 grey-alpha, 6 RGBA."""
    height, width = pixels.shape[:2]
    depth = 16 if pixels.dtype == np.uint16 else 8
    rows = pixels.astype(">u2" if depth == 16 else np.uint8).reshape(height, -1).tobytes()
    stride = len(rows) // height
    data = b"".join(b"\x00" + rows[i * stride : (i + 1) * stride] for i in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b""))
    return path


def _estimate(inputs: list[Path], out: Path, model: str, *extra: str) -> list[str]:
    return ["estimate", *map(str, inputs), "-o", str(out), "--model", model, *extra]


def _outputs(out: Path, stem: str) -> dict[str, np.ndarray]:
    return {
        "distance": read_exr(out / f"{stem}.distance.exr"),
        "mask": read_exr(out / f"{stem}.mask.exr"),
        "preview": cv2.imread(str(out / f"{stem}.preview.png")),
    }


def test_grey_rgba_and_16_bit_images_are_converted(tmp_path, plugin, capsys):
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, size=(HEIGHT, WIDTH), dtype=np.uint8)
    alpha = rng.integers(0, 256, size=(HEIGHT, WIDTH), dtype=np.uint8)  # must not matter
    cases = {  # stem: (file, the 8-bit RGB image it must be read as)
        "grey": (write_png(tmp_path / "grey.png", grey, 0), np.dstack([grey] * 3)),
        "grey_alpha": (write_png(tmp_path / "grey_alpha.png", np.dstack([grey, alpha]), 4), np.dstack([grey] * 3)),
        "grey16": (write_png(tmp_path / "grey16.png", grey.astype(np.uint16) * 257, 0), np.dstack([grey] * 3)),
        "rgba": (write_png(tmp_path / "rgba.png", np.dstack([rgb, alpha]), 6), rgb),
        "rgb16": (write_png(tmp_path / "rgb16.png", rgb.astype(np.uint16) * 257, 2), rgb),
        "rgba16": (write_png(tmp_path / "rgba16.png", np.dstack([rgb, alpha]).astype(np.uint16) * 257, 6), rgb),
    }
    references = {}
    for stem, (_path, expected) in cases.items():
        references[stem] = tmp_path / f"{stem}_ref.png"
        assert cv2.imwrite(str(references[stem]), np.ascontiguousarray(expected[..., ::-1]))
    out = tmp_path / "out"
    inputs = [path for path, _ in cases.values()] + list(references.values())
    assert cli.main(_estimate(inputs, out, plugin)) == 0, capsys.readouterr().err
    for stem in cases:
        got, want = _outputs(out, stem), _outputs(out, f"{stem}_ref")
        assert got["distance"].shape == (HEIGHT, WIDTH)
        for kind in got:
            np.testing.assert_array_equal(got[kind], want[kind], err_msg=f"{stem} {kind}")
    # The images differ, so equal outputs are not a constant estimator's.
    assert not np.array_equal(_outputs(out, "grey")["distance"], _outputs(out, "rgba")["distance"])


def test_16_bit_precision_reaches_the_estimator(tmp_path, plugin, capsys):
    """A 16-bit ramp finer than 8 bits is read in full: as its float image, not as its 8-bit rounding."""
    ramp = np.linspace(0, 65535 * 0.02, WIDTH * HEIGHT).reshape(HEIGHT, WIDTH).astype(np.uint16)
    fine = write_png(tmp_path / "fine.png", ramp, 0)
    exact = tmp_path / "exact.tiff"
    assert cv2.imwrite(str(exact), ramp.astype(np.float32) / np.float32(65535))
    coarse = write_png(tmp_path / "coarse.png", np.rint(ramp / 257.0).astype(np.uint8), 0)
    out = tmp_path / "out"
    assert cli.main(_estimate([fine, exact, coarse], out, plugin, "--save", "disparity")) == 0, capsys.readouterr().err
    fine_disparity = read_exr(out / "fine.disparity.exr")
    np.testing.assert_array_equal(fine_disparity, read_exr(out / "exact.disparity.exr"))
    assert not np.array_equal(fine_disparity, read_exr(out / "coarse.disparity.exr"))


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((200, 300), "the image is 300 x 200, not 2:1"),
        ((64, 64), "the image is 64 x 64, not 2:1"),
        ((1, 1), "it is only 1x1 pixels"),
        ((1, 2), "it is only 2x1 pixels"),
        ((4, 8), "the image is 8 x 4, too small for 360 depth (at least 16 x 8)"),
    ],
)
def test_unusable_sizes_are_refused_naming_the_file(tmp_path, plugin, capsys, size, message):
    bad = tmp_path / "bad.png"
    assert cv2.imwrite(str(bad), np.full((*size, 3), 128, np.uint8))
    out = tmp_path / "out"
    assert cli.main(_estimate([bad], out, plugin)) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_smallest_usable_panorama_runs(tmp_path, plugin, capsys):
    small = tmp_path / "small.png"
    assert cv2.imwrite(str(small), np.random.default_rng(1).integers(0, 256, (8, 16, 3), dtype=np.uint8))
    out = tmp_path / "out"
    assert cli.main(_estimate([small], out, plugin)) == 0, capsys.readouterr().err
    distance = read_exr(out / "small.distance.exr")
    assert distance.shape == (8, 16) and np.all(np.isfinite(distance))


def test_a_refused_input_leaves_the_inputs_before_it_complete(tmp_path, plugin, capsys):
    rng = np.random.default_rng(2)
    good = tmp_path / "good.png"
    wide = tmp_path / "wide.png"
    assert cv2.imwrite(str(good), rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    assert cv2.imwrite(str(wide), rng.integers(0, 256, (HEIGHT, WIDTH + 6, 3), dtype=np.uint8))
    out = tmp_path / "out"
    assert cli.main(_estimate([good, wide], out, plugin)) == 2
    assert f"{wide}: the image is {WIDTH + 6} x {HEIGHT}, not 2:1" in capsys.readouterr().err
    # good.* are whole (no temporary files anywhere), nothing of wide.* exists.
    assert sorted(os.listdir(out)) == ["good.distance.exr", "good.json", "good.mask.exr", "good.preview.png"]
    assert _outputs(out, "good")["distance"].shape == (HEIGHT, WIDTH)


@pytest.mark.slow
def test_depth360_refuses_a_photo_on_the_360_path(tmp_path, vits_file):  # noqa: F811
    """The real process, the real model: exit 2, one line naming the file, nothing written."""
    photo = tmp_path / "holiday photo.jpg"
    assert cv2.imwrite(str(photo), np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8))
    out = tmp_path / "out"
    result = subprocess.run(
        [str(DEPTH360), *_estimate([photo], out, SMALL.name, "--models-dir", str(vits_file.parent))],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 2
    err = result.stderr.strip()
    assert err == (
        f"depth360: error: {photo}: the image is 640 x 480, not 2:1 (360 equirect footage is twice as "
        "wide as high); for an ordinary photo use --projection perspective"
    )
    assert not out.exists()
