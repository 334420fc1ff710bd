"""MiDaS DPT networks (BEiT, ViT-L, ViT-hybrid) against the official reference fixtures.

The equivalence tests build the network on the meta device and load the fixture weights
with `assign=True`: the same modules and the same strict key check as a real load, without
spending time and memory on a random initialisation that is overwritten at once.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depth360.estimators.models import networks
from depth360.estimators.models.networks import midas
from tests import reference_fixtures

# This file's variants; the Swin-V2 and LeViT ones are tested with their backbones.
VARIANTS = ["dpt_beit_base_384", "dpt_hybrid_384", "dpt_large_384", "dpt_beit_large_512"]


def _load_fixture_model(variant: str) -> torch.nn.Module:
    with torch.device("meta"):
        model = midas.build(variant)
    state_dict = midas.convert_official_state_dict(
        variant, reference_fixtures.fixture_state_dict(f"midas_{variant}")
    )
    model.load_state_dict(state_dict, strict=True, assign=True)
    tensors = [*model.parameters(), *model.buffers()]
    assert not any(t.is_meta for t in tensors), "a tensor was left uninitialised"
    return model


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_official_output(variant):
    model = _load_fixture_model(variant)
    for label, network_input, expected in reference_fixtures.cases(f"midas_{variant}"):
        with torch.inference_mode():
            out = model(torch.from_numpy(network_input)).numpy()
        assert out.shape == expected.shape, label
        error = reference_fixtures.assert_matches_reference(out, expected)
        print(f"{variant} {label}: max relative error {error:.2e}")
    del model


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["dpt_beit_base_384", "dpt_hybrid_384"])
def test_non_square_input_runs(variant):
    # BEiT resizes its relative position bias tables, ViT its position embedding.
    model = midas.build(variant)
    assert not model.training
    x = torch.rand(1, 3, 192, 384, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        out = model(x)
    assert out.shape == (1, 192, 384)
    assert torch.isfinite(out).all() and (out >= 0).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_converts_a_full_checkpoint_strictly(variant):
    # A real checkpoint also holds the computed buffers; the converter must drop them.
    name = f"midas_{variant}"
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    checkpoint = {
        key: torch.empty(shape, dtype=dtypes[dtype], device="meta")
        for key, shape, dtype, _kind in reference_fixtures.manifest(name)
    }
    with torch.device("meta"):
        model = midas.build(variant)
    model.load_state_dict(midas.convert_official_state_dict(variant, checkpoint), strict=True, assign=True)


def test_every_midas_architecture_has_a_variant():
    names = [variant for module, variant in networks.ARCHITECTURES.values() if module == "midas"]
    assert sorted(names) == sorted(midas.VARIANTS)


def test_rejects_bad_names_keys_and_sizes():
    with pytest.raises(ValueError, match="unknown MiDaS variant"):
        midas.build("dpt_nonexistent")
    with pytest.raises(ValueError, match="unexpected key"):
        midas.convert_official_state_dict("dpt_beit_base_384", {"decoder.weight": torch.zeros(1)})
    with torch.device("meta"):
        model = midas.build("dpt_beit_base_384")
        with pytest.raises(ValueError, match="multiples of 32"):
            model(torch.zeros(1, 3, 200, 384))


def test_relative_position_bias_layout_and_resize():
    from depth360.estimators.models.networks.beit import Attention, relative_position_index

    attention = Attention(dim=8, num_heads=2, pretrain_grid=(3, 3))
    index = relative_position_index((3, 3))
    bias = attention.relative_position_bias((3, 3), index)
    table = attention.relative_position_bias_table.detach().numpy()
    np.testing.assert_array_equal(bias.detach().numpy(), table[index.numpy()].transpose(2, 0, 1))
    # At a 3x6 grid the 5x5 offset table is resized to 5x11; its centre (offset 0, 0) maps
    # exactly onto the old centre, and the three class-token rows are kept as they are.
    wide = attention.relative_position_bias((3, 6), relative_position_index((3, 6))).detach()
    assert wide.shape == (2, 1 + 18, 1 + 18)
    centre = table[2 * 5 + 2]
    np.testing.assert_allclose(torch.diagonal(wide[:, 1:, 1:], dim1=1, dim2=2).numpy(),
                               np.repeat(centre[:, None], 18, axis=1), rtol=1e-6)
    np.testing.assert_array_equal(wide[:, 0, 1:].numpy(), np.repeat(table[-3][:, None], 18, axis=1))
    np.testing.assert_array_equal(wide[:, 1:, 0].numpy(), np.repeat(table[-2][:, None], 18, axis=1))
    np.testing.assert_array_equal(wide[:, 0, 0].numpy(), table[-1])
