"""Depth Anything V2 networks against the official outputs of ../shared/reference-models.

Each model is built through `estimators.networks` (the path real checkpoints take), given
the fixture weights under the official key names, converted, loaded strictly, and run in
float32 on the CPU.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from depth360.estimators.models import registry
from depth360.estimators.models.networks import depth_anything_v2
from depth360.estimators.models.preprocessing import prepare_input, resize_output
from tests.reference_fixtures import (
    REFERENCE_DIR,
    assert_matches_reference,
    cases,
    fixture_network,
    manifest,
)

# Our error on the 518x1036 case is ~2e-6 of the maximum. Interpolating the position
# embeddings without DINOv2's +0.1 offset gives ~1e-4, inside the README's 1e-3, so the
# equirect case is also held to this tighter bound to catch that mistake.
POSITION_EMBEDDING_TOLERANCE = 3e-5


def _load(fixture: str, architecture: str, max_depth: float | None = None) -> torch.nn.Module:
    return fixture_network(fixture, architecture, max_depth=max_depth)


def _run(model: torch.nn.Module, network_input: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(network_input)).numpy()


def _check_fixture(fixture: str, architecture: str, max_depth: float | None = None) -> list[float]:
    model = _load(fixture, architecture, max_depth)
    errors = []
    for _label, network_input, expected in cases(fixture):
        out = _run(model, network_input)
        assert out.shape == expected.shape
        errors.append(assert_matches_reference(out, expected))
    del model
    gc.collect()
    return errors


@pytest.fixture(scope="module")
def vits_model():
    model = _load("depth_anything_v2_vits", "depth-anything-v2-vits")
    yield model
    del model
    gc.collect()


@pytest.fixture(scope="module")
def vits_cases():
    return {
        label: (network_input, expected)
        for label, network_input, expected in cases("depth_anything_v2_vits")
    }


def test_vits_square_matches_official(vits_model, vits_cases):
    network_input, expected = vits_cases["square 518x518"]
    out = _run(vits_model, network_input)
    assert out.shape == (1, 518, 518)
    assert_matches_reference(out, expected)
    assert out.min() >= 0.0  # relative models end in ReLU


def test_vits_equirect_matches_official_position_embedding_interpolation(vits_model, vits_cases):
    network_input, expected = vits_cases["equirect 518x1036"]
    out = _run(vits_model, network_input)
    assert out.shape == (1, 518, 1036)
    error = assert_matches_reference(out, expected)
    assert error <= POSITION_EMBEDDING_TOLERANCE


def test_vits_infer_image_end_to_end_matches_official(vits_model):
    data = np.load(REFERENCE_DIR / "depth_anything_v2_vits.infer_image.npz")
    spec = registry.get("depth-anything-v2-small")
    raw_rgb = data["raw_rgb"]
    network_input = prepare_input(raw_rgb, spec)[None]
    depth = resize_output(_run(vits_model, network_input), raw_rgb.shape[:2], spec)
    assert depth.shape == (1, *raw_rgb.shape[:2])
    assert depth.dtype == np.float32
    assert_matches_reference(depth[0], data["expected"])


@pytest.mark.slow
def test_vitb_matches_official():
    _check_fixture("depth_anything_v2_vitb", "depth-anything-v2-vitb")


@pytest.mark.slow
def test_vitl_matches_official():
    _check_fixture("depth_anything_v2_vitl", "depth-anything-v2-vitl")


def test_metric_hypersim_small_matches_official():
    spec = registry.get("depth-anything-v2-metric-indoor-small")
    assert spec.max_depth == 20.0
    model = _load("depth_anything_v2_metric_hypersim_vits", spec.architecture, spec.max_depth)
    ((_label, network_input, expected),) = cases("depth_anything_v2_metric_hypersim_vits")
    out = _run(model, network_input)
    assert_matches_reference(out, expected)
    # sigmoid * max_depth: metres within (0, 20)
    assert 0.0 <= out.min() and out.max() <= spec.max_depth


@pytest.mark.parametrize("variant", ["vits", "vitb"])
def test_fresh_network_has_the_official_state_dict_layout(variant):
    model = depth_anything_v2.build(variant)
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    official = {
        key: shape for key, shape, _dtype, _kind in manifest(f"depth_anything_v2_{variant}")
    }
    assert ours == official
    assert not model.training


def test_metric_and_relative_heads_differ_only_in_the_final_activation():
    relative = depth_anything_v2.build("vits")
    metric = depth_anything_v2.build("vits", max_depth=80.0)
    assert isinstance(relative.depth_head.scratch.output_conv2[3], torch.nn.ReLU)
    assert isinstance(metric.depth_head.scratch.output_conv2[3], torch.nn.Sigmoid)
    assert relative.state_dict().keys() == metric.state_dict().keys()


def test_input_sides_must_be_multiples_of_14(vits_model):
    with pytest.raises(ValueError, match="multiple of the patch size 14"):
        vits_model(torch.zeros(1, 3, 518, 520))


def test_input_must_be_rgb_batch(vits_model):
    with pytest.raises(ValueError, match=r"\[N, 3, h, w\]"):
        vits_model(torch.zeros(3, 518, 518))


def test_build_rejects_unknown_variant_and_bad_max_depth():
    with pytest.raises(ValueError, match="unknown Depth Anything V2 variant 'vitg'"):
        depth_anything_v2.build("vitg")
    with pytest.raises(ValueError, match="max_depth"):
        depth_anything_v2.build("vits", max_depth=0.0)


def test_convert_rejects_foreign_keys():
    with pytest.raises(ValueError, match="'model.pretrained.cls_token'"):
        depth_anything_v2.convert_official_state_dict(
            "vits", {"model.pretrained.cls_token": torch.zeros(1, 1, 384)}
        )
