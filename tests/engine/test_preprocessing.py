"""The official input preparation and output resampling (estimators.preprocessing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depth360.estimators.models import registry
from depth360.estimators.models.preprocessing import (
    network_input_shape,
    prepare_input,
    resize_output,
    resized_shape,
)
from tests.reference_fixtures import REFERENCE_DIR

DA_SMALL = registry.get("depth-anything-v2-small")
MIDAS_BEIT_512 = registry.get("midas-dpt-beit-large-512")
MIDAS_BEIT_384 = registry.get("midas-dpt-beit-base-384")


def test_prepare_input_matches_the_official_infer_image_tensor():
    data = np.load(REFERENCE_DIR / "depth_anything_v2_vits.infer_image.npz")
    prepared = prepare_input(data["raw_rgb"], DA_SMALL)
    expected = data["preprocessed"][0]
    assert prepared.shape == expected.shape == (3, 518, 1036)
    assert prepared.dtype == np.float32
    assert prepared.flags.c_contiguous
    assert np.max(np.abs(prepared - expected)) <= 1e-4


@pytest.mark.parametrize(
    ("image_shape", "network_shape"),
    [
        ((480, 960), (518, 1036)),
        ((1920, 3840), (518, 1036)),
        ((1080, 1920), (518, 924)),  # 1920 * 518/1080 = 920.9 -> 66 * 14
        ((500, 375), (686, 518)),  # portrait: 500 * 518/375 = 690.7 -> 49 * 14
        ((518, 518), (518, 518)),
        ((100, 103), (518, 532)),  # upscaled; 533.5 -> 38 * 14
    ],
)
def test_depth_anything_keeps_aspect_with_lower_side_518_and_multiples_of_14(
    image_shape, network_shape
):
    assert network_input_shape(*image_shape, DA_SMALL) == network_shape


@pytest.mark.parametrize(
    ("model", "image_shape", "network_shape"),
    [
        ("midas-dpt-beit-large-512", (480, 960), (512, 1024)),
        ("midas-dpt-beit-large-512", (1080, 1920), (512, 896)),  # 910.2 -> 28 * 32
        ("midas-dpt-beit-base-384", (480, 960), (384, 768)),
        ("midas-dpt-large-384", (1080, 1920), (384, 672)),  # 682.7 -> 21 * 32
        # "minimal": 384/200 = 1.92 is closer to 1 than 384/100, so the width is fitted
        # (lower_bound would give 384 x 768)
        ("midas-dpt-hybrid-384", (100, 200), (192, 384)),
        # Swin2 and LeViT squash every image to a square
        ("midas-dpt-swin2-large-384", (480, 960), (384, 384)),
        ("midas-dpt-swin2-tiny-256", (480, 960), (256, 256)),
        ("midas-dpt-levit-224", (1080, 1920), (224, 224)),
    ],
)
def test_midas_uses_the_official_minimal_resize_to_multiples_of_32(
    model, image_shape, network_shape
):
    assert network_input_shape(*image_shape, registry.get(model)) == network_shape


def test_resize_methods_follow_the_official_bounds():
    assert resized_shape(100, 200, 384, 384, 32, "lower_bound") == (384, 768)
    assert resized_shape(100, 200, 384, 384, 32, "upper_bound") == (192, 384)
    assert resized_shape(100, 200, 384, 384, 32, "minimal") == (192, 384)
    assert resized_shape(100, 200, 384, 384, 32, "minimal", keep_aspect_ratio=False) == (384, 384)


def test_normalisation_uses_the_spec_mean_and_std():
    grey = np.full((64, 128, 3), 0.5)
    midas = prepare_input(grey, MIDAS_BEIT_384)
    assert midas.shape == (3, 192, 384)  # "minimal": 384/128 is closer to 1 than 384/64
    np.testing.assert_allclose(midas, 0.0, atol=1e-6)
    da = prepare_input(grey, DA_SMALL)
    expected = (0.5 - np.array(DA_SMALL.mean)) / np.array(DA_SMALL.std)
    np.testing.assert_allclose(da, np.broadcast_to(expected[:, None, None], da.shape), atol=1e-6)


def test_uint8_and_unit_float_images_prepare_identically():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(90, 180, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        prepare_input(image, MIDAS_BEIT_512), prepare_input(image / 255.0, MIDAS_BEIT_512)
    )


@pytest.mark.parametrize(
    "image",
    [np.zeros((32, 32)), np.zeros((32, 32, 4)), np.zeros((32, 32, 3), dtype=np.int32)],
    ids=["grey", "rgba", "int32"],
)
def test_prepare_input_rejects_non_rgb_images(image):
    with pytest.raises(ValueError, match="expected"):
        prepare_input(image, DA_SMALL)


def test_stereo_has_no_network_input_or_output():
    stereo = registry.get("stereo")
    with pytest.raises(ValueError, match="'stereo'"):
        prepare_input(np.zeros((8, 8, 3), dtype=np.uint8), stereo)
    with pytest.raises(ValueError, match="'stereo'"):
        resize_output(np.zeros((1, 8, 8), dtype=np.float32), (16, 16), stereo)


def test_depth_anything_output_is_bilinear_with_aligned_corners():
    # A ramp 0..w-1 sampled with aligned corners is exactly linspace(0, w-1, W).
    ramp = np.tile(np.arange(37, dtype=np.float32), (2, 5, 1))
    out = resize_output(ramp, (9, 100), DA_SMALL)
    assert out.shape == (2, 9, 100) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.broadcast_to(np.linspace(0, 36, 100), out.shape), atol=1e-4)


def _cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys cubic-convolution weights of the taps at offsets -1, 0, 1, 2 from floor(x)."""
    distances = np.stack([1 + t, t, 1 - t, 2 - t], axis=-1)
    near = ((a + 2) * distances - (a + 3)) * distances**2 + 1
    far = ((a * distances - 5 * a) * distances + 8 * a) * distances - 4 * a
    return np.where(distances <= 1, near, far)


def test_midas_output_is_bicubic_with_half_pixel_centres():
    # Independent 1-D reference: output column J samples input position
    # (J + 0.5) * w / W - 0.5 with the a = -0.75 cubic kernel, edge pixels repeated.
    rng = np.random.default_rng(5)
    width, new_width = 23, 61
    row = rng.standard_normal(width)
    positions = (np.arange(new_width) + 0.5) * width / new_width - 0.5
    base = np.floor(positions).astype(int)
    taps = np.clip(base[:, None] + np.arange(-1, 3), 0, width - 1)
    expected = np.sum(row[taps] * _cubic_weights(positions - base), axis=1)
    prediction = np.tile(row.astype(np.float32), (1, 4, 1))
    out = resize_output(prediction, (4, new_width), MIDAS_BEIT_384)
    assert out.shape == (1, 4, new_width)
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), atol=1e-5)


def test_resize_output_keeps_torch_tensors_as_tensors():
    prediction = torch.rand(1, 37, 74)
    out = resize_output(prediction, (480, 960), DA_SMALL)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 480, 960)
    np.testing.assert_allclose(out.numpy(), resize_output(prediction.numpy(), (480, 960), DA_SMALL))


def test_resize_output_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[N, h, w\]"):
        resize_output(np.zeros((1, 1, 8, 8), dtype=np.float32), (16, 16), DA_SMALL)
    with pytest.raises(ValueError, match="positive"):
        resize_output(np.zeros((8, 8), dtype=np.float32), (0, 16), DA_SMALL)
