"""MiDaS v3.1 BEiT backbones (BEiT-L/16 at 512, BEiT-B/16 at 384) for the DPT head.

Official behaviour (isl-org/MiDaS `midas/backbones/beit.py`, which patches timm's BEiT): no
absolute position embedding; every block's relative position bias table, learnt for the
square pretraining grid, is resized bilinearly (align_corners=False) to the input's token
grid, so any input whose sides are multiples of 16 runs, at any aspect ratio. The outputs of
four hooked blocks are reassembled into feature maps exactly as for ViT (vit.py).

The relative position index is computed on the fly for the input's grid (the official
checkpoints store it as a buffer: `convert_state_dict` drops it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .vit import Reassemble, convert_reassembly_key

PATCH_SIZE = 16
# The three extra bias rows of a BEiT table: class->token, token->class, class->class.
_CLASS_TOKEN_ROWS = 3


def relative_position_index(grid: tuple[int, int], device=None) -> torch.Tensor:
    """BEiT's [1 + h*w, 1 + h*w] index into a bias table for token grid (h, w)."""
    from timm.models.beit import gen_relative_position_index

    return gen_relative_position_index(tuple(grid), device=device)


class Attention(nn.Module):
    """BEiT self-attention with a per-block relative position bias (official key names)."""

    def __init__(self, dim: int, num_heads: int, pretrain_grid: tuple[int, int]):
        super().__init__()
        self.num_heads = num_heads
        self.pretrain_grid = pretrain_grid
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        table_rows = (2 * pretrain_grid[0] - 1) * (2 * pretrain_grid[1] - 1) + _CLASS_TOKEN_ROWS
        self.relative_position_bias_table = nn.Parameter(torch.zeros(table_rows, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.proj = nn.Linear(dim, dim)

    def relative_position_bias(self, grid: tuple[int, int], index: torch.Tensor) -> torch.Tensor:
        """[heads, 1 + h*w, 1 + h*w] bias for token grid `grid`, the table resized if needed."""
        table = self.relative_position_bias_table
        if tuple(grid) != self.pretrain_grid:
            pairs, extra = table[:-_CLASS_TOKEN_ROWS], table[-_CLASS_TOKEN_ROWS:]
            old_shape = (2 * self.pretrain_grid[0] - 1, 2 * self.pretrain_grid[1] - 1)
            new_shape = (2 * grid[0] - 1, 2 * grid[1] - 1)
            pairs = pairs.reshape(1, *old_shape, -1).permute(0, 3, 1, 2)
            pairs = F.interpolate(pairs, size=new_shape, mode="bilinear", align_corners=False)
            pairs = pairs.permute(0, 2, 3, 1).reshape(new_shape[0] * new_shape[1], -1)
            table = torch.cat((pairs, extra))
        tokens = index.shape[0]
        return table[index.reshape(-1)].reshape(tokens, tokens, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, grid: tuple[int, int], index: torch.Tensor) -> torch.Tensor:
        n, tokens, dim = x.shape
        qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, qkv_bias)
        q, k, v = qkv.reshape(n, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias(grid, index).unsqueeze(0).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(n, tokens, dim))


class Block(nn.Module):
    """Pre-norm transformer block with layer scale (`gamma_1`, `gamma_2`)."""

    def __init__(self, dim: int, num_heads: int, pretrain_grid: tuple[int, int]):
        super().__init__()
        from timm.layers import Mlp

        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, pretrain_grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)
        self.gamma_1 = nn.Parameter(torch.full((dim,), 0.1))
        self.gamma_2 = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor, grid: tuple[int, int], index: torch.Tensor) -> torch.Tensor:
        x = x + self.gamma_1 * self.attn(self.norm1(x), grid, index)
        return x + self.gamma_2 * self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """16x16 patches -> tokens, at any input size (official `patch_embed.proj`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Beit(nn.Module):
    """The BEiT encoder (`pretrained.model`), without its unused classifier."""

    def __init__(self, dim: int, depth: int, num_heads: int, pretrain_size: int):
        super().__init__()
        pretrain_grid = (pretrain_size // PATCH_SIZE,) * 2
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, num_heads, pretrain_grid) for _ in range(depth))

    def forward(self, x: torch.Tensor, hooks: tuple[int, ...]) -> list[torch.Tensor]:
        """Token outputs [N, 1 + h*w, dim] of blocks `hooks` (increasing)."""
        grid = (x.shape[2] // PATCH_SIZE, x.shape[3] // PATCH_SIZE)
        index = relative_position_index(grid, device=x.device)
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), tokens), dim=1)
        hooked = []
        for number, block in enumerate(self.blocks[: hooks[-1] + 1]):
            tokens = block(tokens, grid, index)
            if number in hooks:
                hooked.append(tokens)
        return hooked


@dataclass(frozen=True)
class _BeitConfig:
    dim: int
    depth: int
    num_heads: int
    pretrain_size: int
    hooks: tuple[int, int, int, int]
    channels: tuple[int, int, int, int]  # feature-map channels, finest first


CONFIGS: dict[str, _BeitConfig] = {
    "beitl16_512": _BeitConfig(1024, 24, 16, 512, (5, 11, 17, 23), (256, 512, 1024, 1024)),
    "beitb16_384": _BeitConfig(768, 12, 12, 384, (2, 5, 8, 11), (96, 192, 384, 768)),
}


def _config(name: str) -> _BeitConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown MiDaS BEiT backbone {name!r}; known: {sorted(CONFIGS)}") from None


class BeitBackbone(nn.Module):
    """The `pretrained` module of a MiDaS BEiT model: encoder and four reassembly levels."""

    def __init__(self, config: _BeitConfig):
        super().__init__()
        self.hooks = config.hooks
        self.model = Beit(config.dim, config.depth, config.num_heads, config.pretrain_size)
        for level, channels in enumerate(config.channels, start=1):
            self.add_module(f"reassemble{level}", Reassemble(config.dim, channels, level))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Four feature maps at 1/4, 1/8, 1/16, 1/32 of the input, finest first."""
        h, w = x.shape[2:]
        if h % PATCH_SIZE or w % PATCH_SIZE:
            raise ValueError(f"BEiT input sides must be multiples of {PATCH_SIZE}, got {h}x{w}")
        grid = (h // PATCH_SIZE, w // PATCH_SIZE)
        hooked = self.model(x, self.hooks)
        return [
            getattr(self, f"reassemble{level}")(tokens, grid)
            for level, tokens in enumerate(hooked, start=1)
        ]


def build_backbone(name: str) -> BeitBackbone:
    """A fresh MiDaS BEiT backbone: "beitl16_512" or "beitb16_384"."""
    return BeitBackbone(_config(name))


# Official entries the depth model never uses: the ImageNet classifier and its pooling norm.
_UNUSED_PREFIXES = ("model.head.", "model.fc_norm.")


def convert_state_dict(name: str, state_dict: dict) -> dict:
    """Official `pretrained.*` entries (prefix removed) -> `build_backbone(name)` keys.

    Drops the stored relative position indices (computed per input grid) and the unused
    classifier head and its norm.
    """
    _config(name)
    return {
        convert_reassembly_key(key): value
        for key, value in state_dict.items()
        if not key.startswith(_UNUSED_PREFIXES)
        and not key.endswith(".attn.relative_position_index")
    }
