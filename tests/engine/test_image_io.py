"""Image reading and atomic depth-file writing (estimators/image_io.py)."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import OpenEXR
import pytest

from depth360.estimators.errors import BadInputError
from depth360.estimators.media import image_io


def _rgb8(height: int = 12, width: int = 20) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _only(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_reads_8bit_png_as_rgb_float(tmp_path):
    rgb = _rgb8()
    cv2.imwrite(str(tmp_path / "a.png"), rgb[..., ::-1])
    image = image_io.read_image(tmp_path / "a.png")
    assert image.dtype == np.float32 and image.shape == (12, 20, 3)
    np.testing.assert_array_equal(image, rgb.astype(np.float32) / 255)


def test_reads_16bit_grey_and_rgba(tmp_path):
    grey = np.arange(12 * 20, dtype=np.uint16).reshape(12, 20) * 250
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    image = image_io.read_image(tmp_path / "g.png")
    np.testing.assert_allclose(image[..., 1], grey / 65535.0, atol=1e-7)
    assert np.array_equal(image[..., 0], image[..., 2])

    rgba = np.concatenate([_rgb8(), np.full((12, 20, 1), 7, np.uint8)], axis=-1)
    cv2.imwrite(str(tmp_path / "a.png"), rgba[..., [2, 1, 0, 3]])
    np.testing.assert_array_equal(image_io.read_image(tmp_path / "a.png"), rgba[..., :3] / np.float32(255))


def test_reads_jpeg_and_tiff(tmp_path):
    rgb = _rgb8()
    cv2.imwrite(str(tmp_path / "a.tif"), rgb[..., ::-1])
    np.testing.assert_array_equal(image_io.read_image(tmp_path / "a.tif"), rgb / np.float32(255))
    cv2.imwrite(str(tmp_path / "a.jpg"), rgb[..., ::-1])
    image = image_io.read_image(tmp_path / "a.jpg")
    assert image.shape == (12, 20, 3) and 0.0 <= image.min() and image.max() <= 1.0


def test_reads_rgb_exr_as_srgb_encoded(tmp_path):
    linear = np.linspace(0.0, 1.0, 4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    linear[0, 0] = (2.0, -1.0, 0.5)  # out of range values are clipped
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"RGB": linear}) as file:
        file.write(str(tmp_path / "a.exr"))
    image = image_io.read_image(tmp_path / "a.exr")
    clipped = np.clip(linear, 0, 1)
    srgb = np.where(clipped <= 0.0031308, 12.92 * clipped, 1.055 * clipped ** (1 / 2.4) - 0.055)
    np.testing.assert_allclose(image, srgb, atol=1e-6)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00"])
def test_unreadable_image_names_the_file(tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match="broken.png"):
        image_io.read_image(path)


def test_missing_and_corrupt_exr_name_the_file(tmp_path):
    with pytest.raises(BadInputError, match="nothere.png: no such file"):
        image_io.read_image(tmp_path / "nothere.png")
    (tmp_path / "bad.exr").write_bytes(b"v/1\x01garbage")
    with pytest.raises(BadInputError, match="bad.exr"):
        image_io.read_image(tmp_path / "bad.exr")


def test_exr_round_trips_exactly_as_one_channel(tmp_path):
    rng = np.random.default_rng(3)
    values = (rng.standard_normal((37, 53)) * 1e3).astype(np.float32)
    values[0, :4] = (np.finfo(np.float32).max, np.finfo(np.float32).tiny, -0.0, 1e-42)
    path = tmp_path / "d.exr"
    image_io.write_exr(path, values)
    with OpenEXR.File(str(path), separate_channels=True) as file:
        stored = {name: channel.pixels.dtype for name, channel in file.channels().items()}
    assert stored == {image_io.EXR_CHANNEL: np.float32}
    back = image_io.read_exr(path)
    assert back.view(np.uint32).tolist() == values.view(np.uint32).tolist()
    assert _only(tmp_path) == ["d.exr"]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_depth_files_refuse_nan_and_inf_and_leave_nothing(tmp_path, bad):
    values = np.ones((4, 4), np.float32)
    values[2, 1] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        image_io.write_exr(tmp_path / "d.exr", values)
    with pytest.raises(ValueError, match="NaN or Inf"):
        image_io.write_png16(tmp_path / "d.png", values)
    assert _only(tmp_path) == []


def test_failed_write_keeps_the_previous_file_whole(tmp_path):
    path = tmp_path / "d.exr"
    image_io.write_exr(path, np.full((3, 3), 2.0, np.float32))
    with pytest.raises(ValueError):
        image_io.write_exr(path, np.full((3, 3, 2), 5.0, np.float32))
    np.testing.assert_array_equal(image_io.read_exr(path), np.full((3, 3), 2.0, np.float32))
    assert _only(tmp_path) == ["d.exr"]


def test_written_files_get_ordinary_permissions(tmp_path):
    image_io.write_json(tmp_path / "a.json", {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_png16_maps_the_range_linearly(tmp_path):
    values = np.array([[1.0, 2.0], [3.0, 5.0]], np.float32)
    low, high = image_io.write_png16(tmp_path / "d.png", values)
    assert (low, high) == (1.0, 5.0)
    stored = cv2.imread(str(tmp_path / "d.png"), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.uint16 and stored.shape == (2, 2)
    np.testing.assert_allclose(low + (high - low) * stored / 65535.0, values, atol=(high - low) / 65535)


def test_preview_is_bright_where_near_and_black_where_invalid(tmp_path):
    nearness = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (8, 1))
    valid = np.ones_like(nearness, bool)
    valid[:, :4] = False
    image_io.write_preview(tmp_path / "p.png", nearness, valid)
    preview = cv2.imread(str(tmp_path / "p.png"))
    assert preview.shape == (8, 64, 3) and preview.dtype == np.uint8
    brightness = preview.astype(int).sum(axis=(0, 2))
    assert brightness[-1] > brightness[32] > brightness[5]
    assert preview[:, :4].max() == 0


def test_json_sidecar_refuses_nan(tmp_path):
    image_io.write_json(tmp_path / "a.json", {"model": "x", "timings": {"load": 1.5}})
    assert json.loads((tmp_path / "a.json").read_text()) == {"model": "x", "timings": {"load": 1.5}}
    with pytest.raises(ValueError):
        image_io.write_json(tmp_path / "b.json", {"x": float("nan")})
    assert _only(tmp_path) == ["a.json"]


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    photo = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = photo.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    photo.save(tmp_path / "rotated.jpg", exif=exif)
    assert image_io.read_image(tmp_path / "rotated.jpg").shape == (20, 10, 3)
