"""MiDaS v3.0 backbones (ViT-L/16 and the ViT-B/16 + ResNet-50 hybrid) and DPT token reassembly.

Official behaviour (isl-org/MiDaS `midas/vit.py`, `midas/backbones/utils.py`): the transformer
runs at any input size whose sides are multiples of 16, with its absolute position embedding
resized bilinearly (align_corners=False, no antialias) to the token grid; the outputs of four
hooked blocks are "reassembled" into feature maps (`act_postprocess{i}` in the checkpoint):
readout projection of the class token, tokens to a grid, 1x1 conv, then resampling to 1/4,
1/8, 1/16 and 1/32 of the input. The hybrid takes its two finest maps straight from the
ResNet stages instead. The reassembly is shared with the BEiT backbone (beit.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

PATCH_SIZE = 16


class ProjectReadout(nn.Module):
    """Concatenate the class token to every patch token, then Linear + GELU back to `dim`."""

    def __init__(self, dim: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, 1:]
        readout = tokens[:, :1].expand_as(patches)
        return self.project(torch.cat((patches, readout), dim=-1))


# Resampling after the 1x1 projection, per reassembly level: the factor relative to the
# 1/16 token grid (official act_postprocess1..4).
_RESAMPLE_FACTORS = {1: 4, 2: 2, 3: 1, 4: 0.5}


class Reassemble(nn.Module):
    """Transformer tokens [N, 1 + h*w, dim] -> feature map [N, channels, h*f, w*f]."""

    def __init__(self, dim: int, channels: int, level: int):
        super().__init__()
        self.readout = ProjectReadout(dim)
        self.project = nn.Conv2d(dim, channels, kernel_size=1)
        factor = _RESAMPLE_FACTORS[level]
        if factor > 1:
            self.resample = nn.ConvTranspose2d(channels, channels, kernel_size=factor, stride=factor)
        elif factor == 1:
            self.resample = nn.Identity()
        else:
            self.resample = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        patches = self.readout(tokens).transpose(1, 2).unflatten(2, grid)
        return self.resample(self.project(patches))


def convert_reassembly_key(key: str) -> str:
    """Official `act_postprocess{i}.{0,3,4}.*` key -> `reassemble{i}.{readout,project,resample}.*`."""
    head, _, rest = key.partition(".")
    if not head.startswith("act_postprocess"):
        return key
    index, _, rest = rest.partition(".")
    part = {"0": "readout", "3": "project", "4": "resample"}.get(index)
    if part is None:
        raise ValueError(f"unexpected reassembly key {key!r}")
    return f"reassemble{head[len('act_postprocess'):]}.{part}.{rest}"


def resize_position_embedding(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[1, 1 + g*g, C] class + square-grid embedding resized bilinearly to `grid` (h, w)."""
    cls_embed, grid_embed = pos_embed[:, :1], pos_embed[0, 1:]
    side = int(round(grid_embed.shape[0] ** 0.5))
    if (side, side) == tuple(grid):
        return pos_embed
    grid_embed = grid_embed.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid_embed = F.interpolate(grid_embed, size=grid, mode="bilinear", align_corners=False)
    grid_embed = grid_embed.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)
    return torch.cat((cls_embed, grid_embed), dim=1)


@dataclass(frozen=True)
class _ViTConfig:
    dim: int
    depth: int
    num_heads: int
    hooks: tuple[int, ...]  # blocks whose outputs are reassembled (the hybrid: last two only)
    channels: tuple[int, int, int, int]  # feature-map channels, finest first
    hybrid: bool  # patch embedding by ResNet-50 stages (timm vit_base_r50_s16_384)


PRETRAIN_SIZE = 384
CONFIGS: dict[str, _ViTConfig] = {
    "vitl16_384": _ViTConfig(1024, 24, 16, (5, 11, 17, 23), (256, 512, 1024, 1024), False),
    "vitb_rn50_384": _ViTConfig(768, 12, 12, (8, 11), (256, 512, 768, 768), True),
}


def _config(name: str) -> _ViTConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown MiDaS ViT backbone {name!r}; known: {sorted(CONFIGS)}") from None


class HybridPatchEmbed(nn.Module):
    """ResNet-50 stages 1-3 (1/16 of the input, 1024 channels) and a 1x1 projection to `dim`.

    The keys of timm's HybridEmbed (`backbone.*`, `proj.*`), built without the dummy forward
    pass timm uses to size it.
    """

    def __init__(self, dim: int):
        super().__init__()
        from timm.layers import StdConv2dSame
        from timm.models.resnetv2 import ResNetV2

        self.backbone = ResNetV2(
            layers=(3, 4, 9),
            num_classes=0,
            global_pool="",
            preact=False,
            stem_type="same",
            conv_layer=partial(StdConv2dSame, eps=1e-8),
        )
        self.proj = nn.Conv2d(self.backbone.num_features, dim, kernel_size=1)


class ViTBackbone(nn.Module):
    """The `pretrained` module of MiDaS v3.0: a timm ViT (`model`) and its reassembly."""

    def __init__(self, config: _ViTConfig):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        self.hybrid = config.hybrid
        self.hooks = config.hooks
        # weight_init="skip" keeps PyTorch's default layer init (timm's is much slower for
        # ViT-L); the embeddings it leaves uninitialised are set below.
        self.model = VisionTransformer(
            img_size=PRETRAIN_SIZE,
            patch_size=PATCH_SIZE,
            embed_dim=config.dim,
            depth=config.depth,
            num_heads=config.num_heads,
            num_classes=0,
            weight_init="skip",
        )
        nn.init.trunc_normal_(self.model.pos_embed, std=0.02)
        nn.init.normal_(self.model.cls_token, std=1e-6)
        if config.hybrid:
            self.model.patch_embed = HybridPatchEmbed(config.dim)
        first_level = 3 if config.hybrid else 1
        for level in range(first_level, 5):
            reassemble = Reassemble(config.dim, config.channels[level - 1], level)
            self.add_module(f"reassemble{level}", reassemble)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Four feature maps at 1/4, 1/8, 1/16, 1/32 of the input, finest first."""
        h, w = x.shape[2:]
        if h % PATCH_SIZE or w % PATCH_SIZE:
            raise ValueError(f"ViT input sides must be multiples of {PATCH_SIZE}, got {h}x{w}")
        grid = (h // PATCH_SIZE, w // PATCH_SIZE)
        maps: list[torch.Tensor] = []
        embed = self.model.patch_embed
        if self.hybrid:
            resnet = embed.backbone
            x = resnet.stem(x)
            for i, stage in enumerate(resnet.stages):
                x = stage(x)
                if i < 2:
                    maps.append(x)
        tokens = embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat((self.model.cls_token.expand(x.shape[0], -1, -1), tokens), dim=1)
        tokens = tokens + resize_position_embedding(self.model.pos_embed, grid)
        hooked = []
        for index, block in enumerate(self.model.blocks[: self.hooks[-1] + 1]):
            tokens = block(tokens)
            if index in self.hooks:
                hooked.append(tokens)
        first_level = 5 - len(hooked)
        for level, block_tokens in enumerate(hooked, start=first_level):
            maps.append(getattr(self, f"reassemble{level}")(block_tokens, grid))
        return maps


def build_backbone(name: str) -> ViTBackbone:
    """A fresh MiDaS v3.0 backbone: "vitl16_384" or "vitb_rn50_384"."""
    return ViTBackbone(_config(name))


def convert_state_dict(name: str, state_dict: dict) -> dict:
    """Official `pretrained.*` entries (prefix removed) -> `build_backbone(name)` keys.

    Drops the ImageNet classifier (`model.head.*`), which the depth model never uses.
    """
    _config(name)
    return {
        convert_reassembly_key(key): value
        for key, value in state_dict.items()
        if not key.startswith("model.head.")
    }
