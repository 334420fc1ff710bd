"""The DINOv2 ViT encoder as Depth Anything V2 uses it (patch 14, layer scale, no registers).

Module and parameter names follow the official checkpoints (`blocks.0.attn.qkv.weight`,
`blocks.0.ls1.gamma`, ...), so an official state dict loads without renaming.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

PATCH_SIZE = 14
# The official models are built for 518 x 518 inputs: a 37 x 37 grid of position embeddings.
PRETRAINING_SIZE = 518
# DINOv2 (without registers) adds this to the target grid size before computing the
# bicubic scale factor of the position embeddings; the interpolation uses that scale
# factor itself, so the offset changes the sampling positions, not only the output size.
POS_EMBED_INTERPOLATE_OFFSET = 0.1


@dataclass(frozen=True)
class VitConfig:
    """Size of one DINOv2 encoder."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: int = 4


VIT_CONFIGS: dict[str, VitConfig] = {
    "vits": VitConfig(embed_dim=384, depth=12, num_heads=6),
    "vitb": VitConfig(embed_dim=768, depth=12, num_heads=12),
    "vitl": VitConfig(embed_dim=1024, depth=24, num_heads=16),
}


class PatchEmbed(nn.Module):
    """Non-overlapping 14 x 14 patches -> tokens [N, patches, dim]."""

    def __init__(self, embed_dim: int, in_channels: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        head_dim = dim // self.num_heads
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)
        out = F.scaled_dot_product_attention(query, key, value)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """Linear -> exact GELU -> linear."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with layer scale on both residual branches."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """DINOv2 encoder; `intermediate_layers` gives the normalised patch tokens of chosen blocks."""

    def __init__(self, config: VitConfig):
        super().__init__()
        dim = config.embed_dim
        grid = PRETRAINING_SIZE // PATCH_SIZE
        self.embed_dim = dim
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        # Used only for masked pre-training; kept so that official checkpoints load strictly.
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def position_embedding(self, height: int, width: int) -> torch.Tensor:
        """Position embeddings [1, 1 + patches, dim] for an input of `height` x `width` pixels."""
        stored_patches = self.pos_embed.shape[1] - 1
        rows, cols = height // PATCH_SIZE, width // PATCH_SIZE
        if rows * cols == stored_patches and height == width:
            return self.pos_embed
        dtype = self.pos_embed.dtype
        pos_embed = self.pos_embed.float()
        class_embed, patch_embed = pos_embed[:, :1], pos_embed[:, 1:]
        grid = int(math.sqrt(stored_patches))
        scale = (
            (rows + POS_EMBED_INTERPOLATE_OFFSET) / math.sqrt(stored_patches),
            (cols + POS_EMBED_INTERPOLATE_OFFSET) / math.sqrt(stored_patches),
        )
        patch_embed = F.interpolate(
            patch_embed.reshape(1, grid, grid, -1).permute(0, 3, 1, 2),
            scale_factor=scale,
            mode="bicubic",
            antialias=False,
        )
        if patch_embed.shape[-2:] != (rows, cols):
            raise ValueError(
                f"position-embedding grid {tuple(patch_embed.shape[-2:])} does not match "
                f"the {rows} x {cols} patches of a {height} x {width} input"
            )
        patch_embed = patch_embed.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat((class_embed, patch_embed), dim=1).to(dtype)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Class token + patch tokens with position embeddings, [N, 1 + patches, dim]."""
        height, width = x.shape[-2:]
        if height % PATCH_SIZE or width % PATCH_SIZE:
            raise ValueError(
                f"input {height} x {width} is not a multiple of the patch size {PATCH_SIZE}"
            )
        patches = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(patches.shape[0], -1, -1), patches), dim=1)
        return tokens + self.position_embedding(height, width)

    def intermediate_layers(self, x: torch.Tensor, indices: tuple[int, ...]) -> list[torch.Tensor]:
        """Final-norm patch tokens [N, patches, dim] after each block in `indices` (class token dropped)."""
        x = self.tokens(x)
        outputs = []
        for index, block in enumerate(self.blocks[: max(indices) + 1]):
            x = block(x)
            if index in indices:
                outputs.append(self.norm(x)[:, 1:])
        return outputs
