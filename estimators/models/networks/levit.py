"""LeViT-384 backbone of MiDaS v3.1 (`dpt_levit_224`).

The official model uses timm 0.6's `levit_384` (linear mode: tokens [B, N, C], blocks in
one flat sequence) and takes the outputs of blocks 3, 11 and 21 as three DPT features on
14x14, 7x7 and 4x4 grids. The modules here keep timm 0.6's names, so the official keys
load unchanged under `pretrained.model.`; the attention-bias indices are computed here,
and the blocks after the last hooked one and the classifier heads (never used by the
depth output) are left out. (The head's transposed-convolution stem is in midas.py.)

The attention biases are learnt per offset on the 14x14 grid of a 224x224 input, so the
network takes exactly that size; any other is a ValueError.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LevitConfig:
    """One LeViT backbone as MiDaS builds it."""

    image_size: int  # the only input side the attention biases allow
    embed_dim: tuple[int, int, int]
    key_dim: int
    num_heads: tuple[int, int, int]
    depth: tuple[int, int, int]
    hooks: tuple[int, int, int]  # indices into the flat block sequence

    @property
    def stage_channels(self) -> tuple[int, int, int]:
        """Channels of the three features."""
        return self.embed_dim


CONFIGS: dict[str, LevitConfig] = {
    # timm 0.6 levit_384, MiDaS hooks [3, 11, 21]
    "levit_384": LevitConfig(
        image_size=224,
        embed_dim=(384, 512, 768),
        key_dim=32,
        num_heads=(6, 9, 12),
        depth=(4, 4, 4),
        hooks=(3, 11, 21),
    ),
}

_ATTN_RATIO = 2  # value width / key width in the stage attentions
_MLP_RATIO = 2
_SUBSAMPLE_ATTN_RATIO = 4
_SUBSAMPLE_STRIDE = 2
_PATCH = 16


def attention_bias_idxs(resolution: int, stride: int = 1) -> torch.Tensor:
    """[queries, keys] index of each pair's offset (timm 0.6's `attention_bias_idxs`).

    Queries sit on every `stride`-th point of the resolution x resolution key grid; an
    offset (|dy|, |dx|) is numbered in the order it is first met, as timm does.
    """
    keys = list(itertools.product(range(resolution), range(resolution)))
    query_side = (resolution - 1) // stride + 1
    queries = itertools.product(range(query_side), range(query_side))
    numbering: dict[tuple[int, int], int] = {}
    rows = []
    for qy, qx in queries:
        row = []
        for ky, kx in keys:
            offset = (abs(qy * stride - ky), abs(qx * stride - kx))
            row.append(numbering.setdefault(offset, len(numbering)))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long)


class ConvNorm(nn.Sequential):
    """Conv2d without bias, then BatchNorm2d (timm's `c`, `bn`)."""

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, padding: int = 0
    ):
        super().__init__()
        self.c = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)


class LinearNorm(nn.Module):
    """Linear without bias, then BatchNorm1d over all tokens."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.c = nn.Linear(in_features, out_features, bias=False)
        self.bn = nn.BatchNorm1d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c(x)
        return self.bn(x.flatten(0, 1)).reshape_as(x)


class Residual(nn.Module):
    """x + m(x)."""

    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.m(x)


def _mlp(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(LinearNorm(dim, hidden), nn.Hardswish(), LinearNorm(hidden, dim))


class Attention(nn.Module):
    """Multi-head attention with a learnt bias per head and relative offset."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, resolution: int):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = _ATTN_RATIO * key_dim
        self.scale = key_dim**-0.5
        self.qkv = LinearNorm(dim, num_heads * (2 * key_dim + self.value_dim))
        self.proj = nn.Sequential(nn.Hardswish(), LinearNorm(num_heads * self.value_dim, dim))
        idxs = attention_bias_idxs(resolution)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, int(idxs.max()) + 1))
        self.register_buffer("attention_bias_idxs", idxs, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (
            self.qkv(x)
            .view(b, n, self.num_heads, -1)
            .split([self.key_dim, self.key_dim, self.value_dim], dim=3)
        )
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        attn = (
            q @ k.transpose(-2, -1) * self.scale
            + self.attention_biases[:, self.attention_bias_idxs]
        )
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, -1)
        return self.proj(x)


class Subsample(nn.Module):
    """Every `stride`-th token of a resolution x resolution grid."""

    def __init__(self, stride: int, resolution: int):
        super().__init__()
        self.stride = stride
        self.resolution = resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        x = x.view(b, self.resolution, self.resolution, c)[:, :: self.stride, :: self.stride]
        return x.reshape(b, -1, c)


class AttentionSubsample(nn.Module):
    """Attention from a subsampled query grid to the full grid: halves the grid, widens the channels."""

    def __init__(self, in_dim: int, out_dim: int, key_dim: int, num_heads: int, resolution: int):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = _SUBSAMPLE_ATTN_RATIO * key_dim
        self.scale = key_dim**-0.5
        self.kv = LinearNorm(in_dim, num_heads * (key_dim + self.value_dim))
        self.q = nn.Sequential(
            Subsample(_SUBSAMPLE_STRIDE, resolution), LinearNorm(in_dim, num_heads * key_dim)
        )
        self.proj = nn.Sequential(nn.Hardswish(), LinearNorm(num_heads * self.value_dim, out_dim))
        idxs = attention_bias_idxs(resolution, _SUBSAMPLE_STRIDE)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, int(idxs.max()) + 1))
        self.register_buffer("attention_bias_idxs", idxs, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        k, v = (
            self.kv(x).view(b, n, self.num_heads, -1).split([self.key_dim, self.value_dim], dim=3)
        )
        k, v = k.transpose(1, 2), v.transpose(1, 2)
        q = self.q(x).view(b, -1, self.num_heads, self.key_dim).transpose(1, 2)
        attn = (
            q @ k.transpose(-2, -1) * self.scale
            + self.attention_biases[:, self.attention_bias_idxs]
        )
        x = (
            (attn.softmax(dim=-1) @ v)
            .transpose(1, 2)
            .reshape(b, -1, self.num_heads * self.value_dim)
        )
        return self.proj(x)


def _stem(out_chs: int) -> nn.Sequential:
    """timm's stem_b16: four 3x3 stride-2 ConvNorms with Hardswish between them."""
    return nn.Sequential(
        ConvNorm(3, out_chs // 8, 3, 2, 1),
        nn.Hardswish(),
        ConvNorm(out_chs // 8, out_chs // 4, 3, 2, 1),
        nn.Hardswish(),
        ConvNorm(out_chs // 4, out_chs // 2, 3, 2, 1),
        nn.Hardswish(),
        ConvNorm(out_chs // 2, out_chs, 3, 2, 1),
    )


def _blocks(config: LevitConfig) -> list[nn.Module]:
    """timm 0.6's flat block sequence: per stage (attention, MLP) pairs, between stages a subsampling attention and an MLP."""
    resolution = config.image_size // _PATCH
    blocks: list[nn.Module] = []
    for stage, (dim, heads, depth) in enumerate(
        zip(config.embed_dim, config.num_heads, config.depth, strict=True)
    ):
        for _ in range(depth):
            blocks.append(Residual(Attention(dim, config.key_dim, heads, resolution)))
            blocks.append(Residual(_mlp(dim, _MLP_RATIO * dim)))
        if stage < len(config.embed_dim) - 1:
            next_dim = config.embed_dim[stage + 1]
            blocks.append(
                AttentionSubsample(dim, next_dim, config.key_dim, dim // config.key_dim, resolution)
            )
            resolution = (resolution - 1) // _SUBSAMPLE_STRIDE + 1
            blocks.append(Residual(_mlp(next_dim, _MLP_RATIO * next_dim)))
    return blocks


class Levit(nn.Module):
    """The stem and the blocks up to the last hooked one (no heads)."""

    def __init__(self, config: LevitConfig):
        super().__init__()
        self.patch_embed = _stem(config.embed_dim[0])
        self.blocks = nn.Sequential(*_blocks(config)[: config.hooks[-1] + 1])


class LevitBackbone(nn.Module):
    """MiDaS's LeViT encoder: 224x224 image -> three NCHW features on 14x14, 7x7, 4x4 grids."""

    def __init__(self, config: LevitConfig):
        super().__init__()
        self.config = config
        self.model = Levit(config)

    def check_input_size(self, height: int, width: int) -> None:
        """ValueError unless the input is the one size the attention biases are defined for."""
        side = self.config.image_size
        if (height, width) != (side, side):
            raise ValueError(
                f"LeViT input {height}x{width}: the network takes only {side}x{side} "
                f"(its attention biases are learnt on the {side // _PATCH}x{side // _PATCH} token grid)"
            )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [N, 3, 224, 224] normalised -> features [N, C_i, g_i, g_i], g = 14, 7, 4."""
        self.check_input_size(x.shape[-2], x.shape[-1])
        tokens = self.model.patch_embed(x).flatten(2).transpose(1, 2)
        features = []
        for index, block in enumerate(self.model.blocks):
            tokens = block(tokens)
            if index in self.config.hooks:
                side = math.isqrt(tokens.shape[1])  # square token grids throughout
                features.append(tokens.transpose(1, 2).unflatten(2, (side, side)).contiguous())
        return features


def _config(name: str) -> LevitConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown LeViT backbone {name!r}; known: {', '.join(CONFIGS)}") from None


def build_backbone(name: str) -> LevitBackbone:
    """A fresh LeViT backbone, `name` one of CONFIGS ("levit_384")."""
    return LevitBackbone(_config(name))


def _unused_official_key(key: str, last_block: int) -> bool:
    """Official backbone keys with no module here: computed indices, later blocks, heads."""
    if key.endswith(".attention_bias_idxs") or key.startswith(("model.head.", "model.head_dist.")):
        return True
    if key.startswith("model.blocks."):
        return int(key.split(".")[2]) > last_block
    return False


def convert_state_dict(name: str, state_dict: dict) -> dict:
    """Official backbone entries (keys without `pretrained.`) -> keys of `build_backbone(name)`.

    The names are the same; the attention-bias indices (recomputed, as timm does), the
    blocks after the last hooked one and the classifier heads (none of which reach the
    depth output) are dropped.
    """
    last_block = _config(name).hooks[-1]
    return {
        key: value for key, value in state_dict.items() if not _unused_official_key(key, last_block)
    }
