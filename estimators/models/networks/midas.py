"""MiDaS v3.0 / v3.1 DPT depth networks: the DPT head, model assembly and the variants table.

The assembled model mirrors the official `DPTDepthModel` (isl-org/MiDaS `midas/dpt_depth.py`,
`midas/blocks.py`): a backbone stored as `self.pretrained` returns 3 or 4 feature maps, the
head `self.scratch` projects each to `features` channels (`layer{i}_rn`), fuses them from
coarse to fine (`refinenet{i}`), optionally upsamples with LeViT's transposed-conv stem
(`stem_transpose`) and predicts one channel (`output_conv`). Head attribute names follow the
official checkpoint keys, so `scratch.*` entries load unchanged.

Backbone interface (what `swin2.py`, `levit.py`, `beit.py` and `vit.py` provide)
---------------------------------------------------------------------------------
A variant names its backbone by `"module:function"` strings relative to this package; the
module is imported only when that variant is built or converted.

* builder `function(name: str) -> torch.nn.Module` (`Variant.backbone`): a fresh backbone for
  the official backbone name (`Variant.backbone_name`, e.g. "beitl16_512"). Its forward takes
  the normalised input [N, 3, h, w] and returns a list of `len(Variant.layer_channels)`
  feature maps [N, C_i, h_i, w_i], finest first, with C_i == `Variant.layer_channels[i]`.
  Stored as `pretrained`, so its state-dict keys appear under `pretrained.` in the model.
* converter `function(name: str, state_dict: dict) -> dict` (`Variant.backbone_converter`):
  maps the official checkpoint's `pretrained.*` entries, with the `pretrained.` prefix
  removed, to the backbone's own keys (also without prefix). It drops the entries the
  backbone computes itself (manifest kind `computed_buffer`, e.g. relative-position indices)
  and official entries that never influence the depth output (the classifier head).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .dpt_fusion import FusionBlock

# Input sides must be multiples of this (the coarsest DPT level is at 1/32 of the input).
INPUT_MULTIPLE = 32


@dataclass(frozen=True)
class Variant:
    """One official MiDaS DPT model: its backbone and head configuration."""

    backbone: str  # "module:function" building the backbone, see the module docstring
    backbone_converter: str  # "module:function" converting its official state-dict entries
    backbone_name: str  # the official backbone name, passed to both functions
    layer_channels: tuple[int, ...]  # channels of the backbone's feature maps, finest first
    features: int = 256  # channels inside the head (refinenets)
    head_features_1: int | None = None  # output_conv input channels; None: `features`
    head_features_2: int = 32  # output_conv hidden channels
    stem_transpose: bool = False  # LeViT: two transposed-conv x2 upsamplings before output_conv


VARIANTS: dict[str, Variant] = {
    # MiDaS v3.1, BEiT backbones (beit.py).
    "dpt_beit_large_512": Variant(
        backbone="beit:build_backbone",
        backbone_converter="beit:convert_state_dict",
        backbone_name="beitl16_512",
        layer_channels=(256, 512, 1024, 1024),
    ),
    "dpt_beit_base_384": Variant(
        backbone="beit:build_backbone",
        backbone_converter="beit:convert_state_dict",
        backbone_name="beitb16_384",
        layer_channels=(96, 192, 384, 768),
    ),
    # --- MiDaS v3.1, Swin-V2 and LeViT backbones (swin2.py, levit.py: helper H4's rows) ---
    "dpt_swin2_large_384": Variant(
        backbone="swin2:build_backbone",
        backbone_converter="swin2:convert_state_dict",
        backbone_name="swin2l24_384",
        layer_channels=(192, 384, 768, 1536),
    ),
    "dpt_swin2_tiny_256": Variant(
        backbone="swin2:build_backbone",
        backbone_converter="swin2:convert_state_dict",
        backbone_name="swin2t16_256",
        layer_channels=(96, 192, 384, 768),
    ),
    "dpt_levit_224": Variant(
        backbone="levit:build_backbone",
        backbone_converter="levit:convert_state_dict",
        backbone_name="levit_384",
        layer_channels=(384, 512, 768),
        head_features_1=64,
        head_features_2=8,
        stem_transpose=True,
    ),
    # --- end of H4's rows ---
    # MiDaS v3.0, ViT backbones (vit.py).
    "dpt_large_384": Variant(
        backbone="vit:build_backbone",
        backbone_converter="vit:convert_state_dict",
        backbone_name="vitl16_384",
        layer_channels=(256, 512, 1024, 1024),
    ),
    "dpt_hybrid_384": Variant(
        backbone="vit:build_backbone",
        backbone_converter="vit:convert_state_dict",
        backbone_name="vitb_rn50_384",
        layer_channels=(256, 512, 768, 768),
    ),
}


def _variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(
            f"unknown MiDaS variant {name!r}; known: {', '.join(sorted(VARIANTS))}"
        ) from None


def _resolve(reference: str):
    """The function named by "module:function" (a module of this package)."""
    module_name, function_name = reference.split(":")
    module = importlib.import_module(f".{module_name}", __package__)
    return getattr(module, function_name)


class ConvTransposeNorm(nn.Sequential):
    """LeViT head stem step: 3x3 stride-2 transposed conv (exactly x2) and batch norm.

    The official module passes `dilation=1` positionally into ConvTranspose2d's
    `output_padding` slot, so its output is exactly twice the input size; kept here.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.c = nn.ConvTranspose2d(
            in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)


def _stem_transpose(in_channels: int, out_channels: int) -> nn.Sequential:
    """Official `stem_b4_transpose`: two x2 transposed-conv steps with hard-swish."""
    return nn.Sequential(
        ConvTransposeNorm(in_channels, out_channels),
        nn.Hardswish(),
        ConvTransposeNorm(out_channels, out_channels // 2),
        nn.Hardswish(),
    )


class Interpolate(nn.Module):
    """Bilinear x`scale_factor` upsampling (align_corners=True) inside `output_conv`."""

    def __init__(self, scale_factor: float):
        super().__init__()
        self.scale_factor = scale_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(
            x, scale_factor=self.scale_factor, mode="bilinear", align_corners=True
        )


def _output_conv(head_features_1: int, head_features_2: int) -> nn.Sequential:
    """Official depth head; indices 0, 2, 4 hold the convolutions (checkpoint keys)."""
    return nn.Sequential(
        nn.Conv2d(head_features_1, head_features_1 // 2, kernel_size=3, padding=1),
        Interpolate(scale_factor=2),
        nn.Conv2d(head_features_1 // 2, head_features_2, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(head_features_2, 1, kernel_size=1),
        nn.ReLU(),  # non_negative=True in every official MiDaS DPT depth model
    )


class DPTHead(nn.Module):
    """The official `scratch` module: per-level projections, fusion blocks, depth head."""

    def __init__(self, variant: Variant):
        super().__init__()
        features = variant.features
        self.levels = len(variant.layer_channels)
        if self.levels not in (3, 4):
            raise ValueError(f"a DPT head takes 3 or 4 feature maps, not {self.levels}")
        for i, channels in enumerate(variant.layer_channels, start=1):
            conv = nn.Conv2d(channels, features, kernel_size=3, padding=1, bias=False)
            self.add_module(f"layer{i}_rn", conv)
        for i in range(1, self.levels + 1):
            self.add_module(f"refinenet{i}", FusionBlock(features))
        self.stem_transpose = (
            _stem_transpose(features, features // 2) if variant.stem_transpose else None
        )
        head_features_1 = variant.head_features_1 or features
        self.output_conv = _output_conv(head_features_1, variant.head_features_2)

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        """[N, 1, H, W] from the backbone's feature maps (finest first)."""
        if len(layers) != self.levels:
            raise ValueError(f"the backbone gave {len(layers)} feature maps, expected {self.levels}")
        projected = [getattr(self, f"layer{i}_rn")(x) for i, x in enumerate(layers, start=1)]
        path = None
        for i in range(self.levels, 0, -1):
            refinenet = getattr(self, f"refinenet{i}")
            size = projected[i - 2].shape[2:] if i > 1 else None
            if path is None:
                path = refinenet(projected[i - 1], size=size)
            else:
                path = refinenet(path, projected[i - 1], size=size)
        if self.stem_transpose is not None:
            path = self.stem_transpose(path)
        return self.output_conv(path)


class MidasDPT(nn.Module):
    """A MiDaS DPT depth model; forward matches the official `DPTDepthModel.forward`."""

    def __init__(self, variant: Variant):
        super().__init__()
        self.pretrained = _resolve(variant.backbone)(variant.backbone_name)
        self.scratch = DPTHead(variant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Relative inverse depth [N, h, w] of a normalised (mean=std=0.5) [N, 3, h, w] input."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an [N, 3, h, w] input, got shape {tuple(x.shape)}")
        h, w = x.shape[2:]
        if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
            raise ValueError(f"input sides must be multiples of {INPUT_MULTIPLE}, got {h}x{w}")
        return self.scratch(self.pretrained(x)).squeeze(1)


def build(variant: str, **options) -> MidasDPT:
    """A fresh MiDaS DPT network of `variant` (random weights, eval mode)."""
    if options:
        raise ValueError(f"MiDaS networks take no build options, got {sorted(options)}")
    return MidasDPT(_variant(variant)).eval()


def convert_official_state_dict(variant: str, state_dict: dict) -> dict:
    """Map an official MiDaS checkpoint's state dict to the keys of `build(variant)`."""
    spec = _variant(variant)
    backbone_entries: dict = {}
    converted: dict = {}
    for key, value in state_dict.items():
        if key.startswith("pretrained."):
            backbone_entries[key[len("pretrained.") :]] = value
        elif key.startswith("scratch."):
            converted[key] = value
        else:
            raise ValueError(f"unexpected key {key!r} in a MiDaS {variant} checkpoint")
    convert_backbone = _resolve(spec.backbone_converter)
    for key, value in convert_backbone(spec.backbone_name, backbone_entries).items():
        converted[f"pretrained.{key}"] = value
    return converted
