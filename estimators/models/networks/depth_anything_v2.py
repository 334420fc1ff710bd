"""Depth Anything V2: a DINOv2 encoder and a DPT head, numerically the official network.

Module names mirror the official checkpoints (`pretrained.*` for the encoder,
`depth_head.*` for the head), so `convert_official_state_dict` only checks the keys.
The relative models end in ReLU (disparity up to scale and shift); the metric models
end in a sigmoid scaled by `max_depth` (metres).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .dinov2 import PATCH_SIZE, VIT_CONFIGS, DinoVisionTransformer
from .dpt_fusion import FusionBlock


@dataclass(frozen=True)
class HeadConfig:
    """DPT head size and the encoder blocks it reads, for one encoder."""

    features: int
    out_channels: tuple[int, int, int, int]
    layer_indices: tuple[int, int, int, int]


HEAD_CONFIGS: dict[str, HeadConfig] = {
    "vits": HeadConfig(64, (48, 96, 192, 384), (2, 5, 8, 11)),
    "vitb": HeadConfig(128, (96, 192, 384, 768), (2, 5, 8, 11)),
    "vitl": HeadConfig(256, (256, 512, 1024, 1024), (4, 11, 17, 23)),
}
VARIANTS = tuple(HEAD_CONFIGS)
OFFICIAL_PREFIXES = ("pretrained.", "depth_head.")
HEAD_HIDDEN_CHANNELS = 32


class Scratch(nn.Module):
    """The head's fusion stage, named as in the official checkpoints (`depth_head.scratch.*`)."""

    def __init__(self, out_channels: tuple[int, ...], features: int, metric: bool):
        super().__init__()
        for level, channels in enumerate(out_channels, start=1):
            conv = nn.Conv2d(channels, features, kernel_size=3, padding=1, bias=False)
            self.add_module(f"layer{level}_rn", conv)
        for level in range(1, 5):
            self.add_module(f"refinenet{level}", FusionBlock(features))
        half = features // 2
        self.output_conv1 = nn.Conv2d(features, half, kernel_size=3, padding=1)
        self.output_conv2 = nn.Sequential(
            nn.Conv2d(half, HEAD_HIDDEN_CHANNELS, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(HEAD_HIDDEN_CHANNELS, 1, kernel_size=1),
            nn.Sigmoid() if metric else nn.ReLU(),
        )


class DPTHead(nn.Module):
    """Reassembles four token maps at 4x, 2x, 1x and 1/2x the patch grid and fuses them into depth."""

    def __init__(self, embed_dim: int, config: HeadConfig, metric: bool):
        super().__init__()
        channels = config.out_channels
        self.projects = nn.ModuleList(nn.Conv2d(embed_dim, out, kernel_size=1) for out in channels)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(channels[0], channels[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(channels[1], channels[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(channels[3], channels[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = Scratch(channels, config.features, metric)

    def forward(self, features: list[torch.Tensor], patch_h: int, patch_w: int) -> torch.Tensor:
        scratch = self.scratch
        layers = []
        for level, tokens in enumerate(features):
            x = tokens.permute(0, 2, 1).reshape(tokens.shape[0], tokens.shape[-1], patch_h, patch_w)
            x = self.resize_layers[level](self.projects[level](x))
            layers.append(getattr(scratch, f"layer{level + 1}_rn")(x))
        layer1, layer2, layer3, layer4 = layers
        path = scratch.refinenet4(layer4, size=layer3.shape[2:])
        path = scratch.refinenet3(path, layer3, size=layer2.shape[2:])
        path = scratch.refinenet2(path, layer2, size=layer1.shape[2:])
        path = scratch.refinenet1(path, layer1)
        out = scratch.output_conv1(path)
        out = F.interpolate(
            out, (patch_h * PATCH_SIZE, patch_w * PATCH_SIZE), mode="bilinear", align_corners=True
        )
        return scratch.output_conv2(out)


class DepthAnythingV2(nn.Module):
    """The official Depth Anything V2 network: [N, 3, h, w] normalised RGB -> [N, h, w]."""

    def __init__(self, variant: str, max_depth: float | None = None):
        super().__init__()
        self.variant = variant
        self.max_depth = max_depth
        self.layer_indices = HEAD_CONFIGS[variant].layer_indices
        self.pretrained = DinoVisionTransformer(VIT_CONFIGS[variant])
        self.depth_head = DPTHead(
            self.pretrained.embed_dim, HEAD_CONFIGS[variant], metric=max_depth is not None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an input of shape [N, 3, h, w], got {tuple(x.shape)}")
        patch_h, patch_w = x.shape[-2] // PATCH_SIZE, x.shape[-1] // PATCH_SIZE
        features = self.pretrained.intermediate_layers(x, self.layer_indices)
        depth = self.depth_head(features, patch_h, patch_w)
        if self.max_depth is None:
            depth = F.relu(depth)
        else:
            depth = depth * self.max_depth
        return depth.squeeze(1)


def _check_variant(variant: str) -> None:
    if variant not in HEAD_CONFIGS:
        raise ValueError(
            f"unknown Depth Anything V2 variant {variant!r}; known: {', '.join(VARIANTS)}"
        )


def build(variant: str, max_depth: float | None = None) -> DepthAnythingV2:
    """A fresh Depth Anything V2 network (random weights, eval mode).

    `variant` is the encoder (vits, vitb, vitl). With `max_depth` None it is the relative
    model (disparity, final ReLU); otherwise the metric model whose sigmoid output is
    scaled to `max_depth` metres (20 for the Hypersim models, 80 for VKITTI).
    """
    _check_variant(variant)
    if max_depth is not None and not max_depth > 0:
        raise ValueError(f"max_depth must be a positive number of metres, got {max_depth!r}")
    return DepthAnythingV2(variant, max_depth).eval()


def convert_official_state_dict(variant: str, state_dict: dict) -> dict:
    """The official checkpoint's state dict under this module's keys (the same names).

    Raises a ValueError naming the first key that belongs to neither the encoder
    (`pretrained.`) nor the head (`depth_head.`), e.g. a wrapped or foreign checkpoint.
    """
    _check_variant(variant)
    for key in state_dict:
        if not key.startswith(OFFICIAL_PREFIXES):
            raise ValueError(
                f"key {key!r} is not part of a Depth Anything V2 {variant} checkpoint "
                f"(expected keys starting with {' or '.join(OFFICIAL_PREFIXES)})"
            )
    return dict(state_dict)
