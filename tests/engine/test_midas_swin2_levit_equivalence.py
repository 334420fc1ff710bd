"""MiDaS v3.1 Swin-V2 and LeViT networks against the official outputs of ../shared/reference-models.

Each model is built through `estimators.networks` (the path real checkpoints take), given
the fixture weights under the official key names, converted, loaded strictly, and run in
float32 on the CPU. Two checks go beyond the fixtures:

* With the fixture weights LeViT's attention biases are small and its softmaxes nearly
  uniform, so a wrong bias-index order still passes the README tolerance (measured:
  2e-4). The LeViT backbone is therefore also compared, feature by feature, with timm
  1.0's independent `levit_384` after sharpening the biases.
* The official Swin-V2 models only ever saw their trained square size; a non-square input
  is checked against timm 1.0's Swin-V2 built for that size (same window rule as timm 0.6).
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from depth360.estimators.models import networks
from tests.reference_fixtures import (
    assert_matches_reference,
    cases,
    computed_buffer_keys,
    fixture_network,
    manifest,
)

SWIN2_TINY = ("midas_dpt_swin2_tiny_256", "midas-dpt-swin2-tiny-256")
SWIN2_LARGE = ("midas_dpt_swin2_large_384", "midas-dpt-swin2-large-384")
LEVIT = ("midas_dpt_levit_224", "midas-dpt-levit-224")

# Feature-level agreement with timm 1.0 (float32, same operations up to kernel order).
TIMM_FEATURE_TOLERANCE = 1e-4
# LeViT's attention biases are multiplied by this before the timm comparison, so that
# they dominate the attention logits and any misplaced bias shows.
ATTENTION_BIAS_SHARPENING = 30.0


def _load(fixture: str, architecture: str) -> torch.nn.Module:
    return fixture_network(fixture, architecture)


def _run(model: torch.nn.Module, network_input: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(network_input)).numpy()


def _check_fixture(model: torch.nn.Module, fixture: str) -> list[float]:
    errors = []
    for _label, network_input, expected in cases(fixture):
        out = _run(model, network_input)
        assert out.shape == expected.shape
        errors.append(assert_matches_reference(out, expected))
        assert out.min() >= 0.0  # the official head ends in ReLU
    return errors


def _relative_error(out: torch.Tensor, expected: torch.Tensor) -> float:
    return float((out - expected).abs().max() / expected.abs().max())


@pytest.fixture(scope="module")
def swin2_tiny():
    model = _load(*SWIN2_TINY)
    yield model
    del model
    gc.collect()


@pytest.fixture(scope="module")
def levit():
    model = _load(*LEVIT)
    yield model
    del model
    gc.collect()


@pytest.fixture(scope="module")
def timm_levit():
    """timm 1.0's own levit_384 (random weights), an implementation independent of ours."""
    import timm

    return timm.create_model("levit_384", pretrained=False).eval()


@pytest.mark.slow
def test_swin2_tiny_matches_official(swin2_tiny):
    errors = _check_fixture(swin2_tiny, SWIN2_TINY[0])
    assert max(errors) < 1e-4  # measured ~2e-6


@pytest.mark.slow
def test_swin2_large_matches_official():
    model = _load(*SWIN2_LARGE)
    errors = _check_fixture(model, SWIN2_LARGE[0])
    assert max(errors) < 1e-4  # measured ~2e-6
    del model
    gc.collect()


@pytest.mark.slow
def test_levit_matches_official(levit):
    errors = _check_fixture(levit, LEVIT[0])
    assert max(errors) < 1e-4  # measured 0


def test_swin2_attention_masks_are_the_official_buffers(swin2_tiny):
    """Every shifted block computes a mask of the manifest's shape at the trained size, and only those."""
    backbone = swin2_tiny.pretrained
    side = backbone.config.image_size
    expected = {
        key: shape
        for key, shape, _dtype, kind in manifest(SWIN2_TINY[0])
        if kind == "computed_buffer"
    }
    computed = {}
    for i, stage in enumerate(backbone.model.layers):
        grid = (side // 2 ** (i + 2), side // 2 ** (i + 2))
        for j, block in enumerate(stage.blocks):
            mask = block.attention_mask(grid)
            if mask is not None:
                computed[f"pretrained.model.layers.{i}.blocks.{j}.attn_mask"] = tuple(mask.shape)
                assert set(torch.unique(mask).tolist()) == {-100.0, 0.0}
    assert computed == expected


def test_swin2_large_mask_layout_matches_manifest():
    """The large model's window clamping gives masks exactly where (and as large as) the manifest says."""
    from depth360.estimators.models.networks import swin2

    config = swin2.CONFIGS["swin2l24_384"]
    expected = {
        key: shape
        for key, shape, _dtype, kind in manifest(SWIN2_LARGE[0])
        if kind == "computed_buffer"
    }
    computed = {}
    for i, depth in enumerate(config.depths):
        grid = (config.image_size // 2 ** (i + 2),) * 2
        for j in range(depth):
            window, shift = swin2._window_and_shift(grid, config.window_size, shifted=j % 2 == 1)
            if any(shift):
                mask = swin2.shifted_window_mask(grid, window, shift)
                computed[f"pretrained.model.layers.{i}.blocks.{j}.attn_mask"] = tuple(mask.shape)
    assert computed == expected


@pytest.mark.slow  # timm's levit_384 takes seconds to initialise
def test_levit_attention_bias_indices_are_the_official_buffers(levit, timm_levit):
    """Indices of the kept blocks have the manifest's shapes and timm 1.0's values."""
    shapes = {
        key: shape for key, shape, _dtype, kind in manifest(LEVIT[0]) if kind == "computed_buffer"
    }
    ours = {
        f"pretrained.{name}": buffer
        for name, buffer in levit.pretrained.named_buffers()
        if name.endswith("attention_bias_idxs")
    }
    assert set(ours) <= set(computed_buffer_keys(LEVIT[0]))
    assert len(ours) == 11  # blocks 0..21 hold 9 attentions and 2 subsampling attentions
    for key, buffer in ours.items():
        assert tuple(buffer.shape) == shapes[key]
    timm_indices = [b for n, b in timm_levit.named_buffers() if n.endswith("attention_bias_idxs")]
    for ours_index, timm_index in zip(ours.values(), timm_indices, strict=False):
        assert torch.equal(ours_index, timm_index)


def _give_timm_levit(reference: torch.nn.Module, state_dict: dict) -> None:
    """Load our backbone's weights into timm 1.0's levit_384, matched entry by entry in order."""
    target = reference.state_dict()
    loaded = {}
    for (our_key, value), (timm_key, timm_value) in zip(
        state_dict.items(), target.items(), strict=False
    ):
        assert our_key.rsplit(".", 1)[-1] == timm_key.rsplit(".", 1)[-1], (our_key, timm_key)
        assert value.shape == timm_value.shape, (our_key, timm_key)
        loaded[timm_key] = value
    missing, unexpected = reference.load_state_dict(loaded, strict=False)
    assert not unexpected
    # only the blocks after MiDaS's last hook and the heads are left at their initial values
    assert all(
        key.startswith(("stages.2.blocks.1.", "stages.2.blocks.2.", "stages.2.blocks.3.", "head"))
        for key in missing
    )


@pytest.mark.slow  # timm's levit_384 takes seconds to initialise
def test_levit_backbone_matches_timm_with_sharp_attention_biases(levit, timm_levit):
    backbone = levit.pretrained
    state_dict = {
        key: value * ATTENTION_BIAS_SHARPENING if key.endswith("attention_biases") else value
        for key, value in backbone.state_dict().items()
    }
    ours = type(backbone)(backbone.config).eval()
    ours.load_state_dict(state_dict, strict=True)
    reference = timm_levit
    _give_timm_levit(reference, state_dict)
    # MiDaS hooks blocks 3, 11, 21 of timm 0.6's flat sequence: in timm 1.0's stages these
    # are the second block of stage 0 and the first blocks of stages 1 and 2
    hooked = [
        reference.stages[0].blocks[1],
        reference.stages[1].blocks[0],
        reference.stages[2].blocks[0],
    ]
    captured: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: captured.append(out)) for m in hooked]
    network_input = torch.from_numpy(cases(LEVIT[0])[0][1])
    with torch.inference_mode():
        features = ours(network_input)
        reference.forward_features(network_input)
    for handle in handles:
        handle.remove()
    for feature, tokens in zip(features, captured, strict=True):
        side = feature.shape[-1]
        expected = tokens.transpose(1, 2).unflatten(2, (side, side))
        assert feature.shape == expected.shape
        assert _relative_error(feature, expected) < TIMM_FEATURE_TOLERANCE


@pytest.mark.slow
def test_swin2_tiny_non_square_matches_timm_built_for_that_size(swin2_tiny):
    """128x256 runs, its backbone features are timm's for img_size=(128, 256), and the depth is 128x256.

    On that input stage 1 (16x32 tokens) shifts along the width only, and stages 2 and 3
    clamp the window to the grid's height: the cases a square input never meets.
    """
    import timm

    height, width = 128, 256
    network_input = torch.from_numpy(
        np.random.default_rng(0).uniform(-1, 1, (1, 3, height, width)).astype(np.float32)
    )
    backbone = swin2_tiny.pretrained
    reference = timm.create_model(
        "swinv2_tiny_window16_256", pretrained=False, img_size=(height, width)
    ).eval()
    # timm 1.0 moved each stage's patch merging to the start of the next stage
    renamed = {}
    for key, value in backbone.state_dict().items():
        key = key.removeprefix("model.")
        parts = key.split(".")
        if parts[0] == "layers" and parts[2] == "downsample":
            parts[1] = str(int(parts[1]) + 1)
        renamed[".".join(parts)] = value
    missing, unexpected = reference.load_state_dict(renamed, strict=False)
    assert not unexpected
    assert all(key.startswith(("norm.", "head.")) for key in missing)
    with torch.inference_mode():
        features = backbone(network_input)
        expected = reference.forward_intermediates(network_input, intermediates_only=True)
        depth = swin2_tiny(network_input)
    for feature, expected_feature in zip(features, expected, strict=True):
        assert feature.shape == expected_feature.shape
        assert _relative_error(feature, expected_feature) < TIMM_FEATURE_TOLERANCE
    assert depth.shape == (1, height, width)
    assert torch.isfinite(depth).all()


def test_swin2_rejects_a_grid_that_does_not_divide_into_windows(swin2_tiny):
    # 256x288: the stage-0 grid is 64x72, and 72 is neither a multiple of the 16-token window nor at most 16
    with pytest.raises(ValueError, match="does not divide into 16x16 windows"):
        swin2_tiny(torch.zeros(1, 3, 256, 288))


def test_levit_rejects_any_size_but_224(levit):
    with pytest.raises(ValueError, match="takes only 224x224"):
        levit(torch.zeros(1, 3, 224, 448))


def test_conversion_drops_exactly_the_unused_official_entries():
    """Computed buffers and never-used classifier entries go; every other official key stays."""
    for fixture, architecture in (SWIN2_TINY, LEVIT):
        official = {key for key, _shape, _dtype, kind in manifest(fixture)}
        converted = networks.convert_official_state_dict(
            architecture, {key: torch.zeros(0) for key in official}
        )
        dropped = official - set(converted)
        assert set(converted) <= official  # same names
        assert set(computed_buffer_keys(fixture)) <= dropped
        assert all(
            key.endswith(("attn_mask", "attention_bias_idxs"))
            or key.startswith(("pretrained.model.norm.", "pretrained.model.head"))
            or (key.startswith("pretrained.model.blocks.") and int(key.split(".")[3]) > 21)
            for key in dropped
        )
