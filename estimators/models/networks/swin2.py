"""Swin Transformer V2 backbone of MiDaS v3.1 (`dpt_swin2_large_384`, `dpt_swin2_tiny_256`).

The official models use timm 0.6's `swinv2_large_window12to24_192to384_22kft1k` and
`swinv2_tiny_window16_256` and take the output of the last block of each of the four
stages (before that stage's patch merging) as the DPT features. The modules here keep
timm 0.6's names (patch merging at the end of a stage), so the official keys load
unchanged under `pretrained.model.`; only the attention masks (computed here), the final
norm and the classifier (never used by the depth output) are left out.

A window layout is defined per feature grid exactly as timm 0.6 builds it for an
`img_size`: a stage window is clamped to the grid when the grid is not larger, and only
then does the shift vanish. At the trained square size this is the official model; a
non-square input whose every stage grid divides into windows runs as timm 0.6 would run
a model built for that size; anything else is a ValueError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

_LOGIT_SCALE_MAX = math.log(1.0 / 0.01)
_MASKED = -100.0  # timm's value for pairs of tokens from different shifted regions


@dataclass(frozen=True)
class Swin2Config:
    """One Swin-V2 backbone as MiDaS builds it."""

    image_size: int  # the trained (square) input side
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    pretrained_window_sizes: tuple[int, ...]  # 0: normalise position coordinates by the window
    hooks: tuple[int, ...]  # per stage, the block whose output is a DPT feature

    @property
    def stage_channels(self) -> tuple[int, ...]:
        """Channels of the four features."""
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))


CONFIGS: dict[str, Swin2Config] = {
    # timm 0.6 swinv2_large_window12to24_192to384_22kft1k, MiDaS hooks [1, 1, 17, 1]
    "swin2l24_384": Swin2Config(
        image_size=384,
        embed_dim=192,
        depths=(2, 2, 18, 2),
        num_heads=(6, 12, 24, 48),
        window_size=24,
        pretrained_window_sizes=(12, 12, 12, 6),
        hooks=(1, 1, 17, 1),
    ),
    # timm 0.6 swinv2_tiny_window16_256, MiDaS hooks [1, 1, 5, 1]
    "swin2t16_256": Swin2Config(
        image_size=256,
        embed_dim=96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        window_size=16,
        pretrained_window_sizes=(0, 0, 0, 0),
        hooks=(1, 1, 5, 1),
    ),
}

_PATCH = 4


def _window_and_shift(
    grid: tuple[int, int], target: int, shifted: bool
) -> tuple[tuple[int, int], tuple[int, int]]:
    """timm 0.6's per-axis rule: a window never exceeds the grid, and a clamped axis is not shifted."""
    window = tuple(g if g <= target else target for g in grid)
    shift = tuple(target // 2 if shifted and g > target else 0 for g in grid)
    return window, shift  # type: ignore[return-value]


def _partition(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """[B, H, W, C] -> [B, windows, window area, C], windows in row-major order."""
    b, h, w, c = x.shape
    wh, ww = window
    x = x.view(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // wh) * (w // ww), wh * ww, c)


def _unpartition(
    windows: torch.Tensor, window: tuple[int, int], grid: tuple[int, int]
) -> torch.Tensor:
    """Inverse of `_partition`."""
    b, _, _, c = windows.shape
    (h, w), (wh, ww) = grid, window
    x = windows.view(b, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def shifted_window_mask(
    grid: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]
) -> torch.Tensor:
    """The attention mask of a shifted-window block: [windows, area, area], 0 or -100.

    The same values as timm 0.6's `attn_mask` buffer (float32): tokens that the cyclic
    shift brought together from different image regions may not attend to each other.
    """
    h, w = grid
    labels = torch.zeros((1, h, w, 1))
    region = 0
    # timm's slices, kept as they are: with a zero shift on an axis, slice(-0, None)
    # covers the whole axis, so that axis makes a single region
    for rows in (slice(0, -window[0]), slice(-window[0], -shift[0]), slice(-shift[0], None)):
        for cols in (slice(0, -window[1]), slice(-window[1], -shift[1]), slice(-shift[1], None)):
            labels[:, rows, cols, :] = region
            region += 1
    windows = _partition(labels, window).view(-1, window[0] * window[1])
    difference = windows.unsqueeze(1) - windows.unsqueeze(2)
    return torch.where(difference != 0, torch.tensor(_MASKED), torch.tensor(0.0))


def relative_position_index(window: tuple[int, int]) -> torch.Tensor:
    """[area, area] index into the (2wh-1)(2ww-1) relative-offset table (timm's buffer)."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window[0]), torch.arange(window[1]), indexing="ij")
    )
    coords = coords.flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rows = relative[..., 0] + window[0] - 1
    cols = relative[..., 1] + window[1] - 1
    return rows * (2 * window[1] - 1) + cols


def relative_coords_table(window: tuple[int, int], pretrained_window: int) -> torch.Tensor:
    """[(2wh-1)(2ww-1), 2] log-spaced relative offsets fed to the continuous position bias MLP."""
    rows = torch.arange(-(window[0] - 1), window[0], dtype=torch.float32)
    cols = torch.arange(-(window[1] - 1), window[1], dtype=torch.float32)
    table = torch.stack(torch.meshgrid(rows, cols, indexing="ij")).permute(1, 2, 0).contiguous()
    if pretrained_window > 0:
        table[..., 0] /= pretrained_window - 1
        table[..., 1] /= pretrained_window - 1
    else:
        table[..., 0] /= window[0] - 1
        table[..., 1] /= window[1] - 1
    table *= 8
    table = torch.sign(table) * torch.log2(torch.abs(table) + 1.0) / math.log2(8)
    return table.view(-1, 2)


class WindowAttention(nn.Module):
    """Scaled cosine attention in windows with a log-spaced continuous position bias."""

    def __init__(self, dim: int, num_heads: int, pretrained_window: int):
        super().__init__()
        self.num_heads = num_heads
        self.pretrained_window = pretrained_window
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((num_heads, 1, 1))))
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, 512), nn.ReLU(inplace=True), nn.Linear(512, num_heads, bias=False)
        )
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def position_bias(self, window: tuple[int, int]) -> torch.Tensor:
        """[heads, area, area] bias, 16 * sigmoid(MLP(offset)), for one window size."""
        device = self.logit_scale.device
        table = relative_coords_table(window, self.pretrained_window).to(device)
        index = relative_position_index(window).to(device)
        per_offset = self.cpb_mlp(table)  # [offsets, heads]
        area = window[0] * window[1]
        bias = per_offset[index.view(-1)].view(area, area, self.num_heads).permute(2, 0, 1)
        return 16 * torch.sigmoid(bias)

    def forward(
        self, x: torch.Tensor, window: tuple[int, int], mask: torch.Tensor | None
    ) -> torch.Tensor:
        """x [B, windows, area, C] -> same shape; `mask` [windows, area, area] or None."""
        b, n_windows, area, c = x.shape
        qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, qkv_bias)
        qkv = qkv.view(b * n_windows, area, 3, self.num_heads, c // self.num_heads).permute(
            2, 0, 3, 1, 4
        )
        q, k, v = qkv.unbind(0)  # [B*windows, heads, area, head_dim]
        scale = torch.clamp(self.logit_scale, max=_LOGIT_SCALE_MAX).exp()
        q = F.normalize(q, dim=-1) * scale
        k = F.normalize(k, dim=-1)
        bias = self.position_bias(window).unsqueeze(0)  # [1, heads, area, area]
        if mask is not None:
            bias = (bias + mask.unsqueeze(1)).repeat(b, 1, 1, 1)  # [B*windows, heads, area, area]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
        out = out.transpose(1, 2).reshape(b, n_windows, area, c)
        return self.proj(out)


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinV2Block(nn.Module):
    """(Shifted-)window attention and MLP, each with a residual post-norm."""

    def __init__(
        self, dim: int, num_heads: int, window_size: int, shifted: bool, pretrained_window: int
    ):
        super().__init__()
        self.window_size = window_size
        self.shifted = shifted
        self.attn = WindowAttention(dim, num_heads, pretrained_window)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)
        self.norm2 = nn.LayerNorm(dim)
        self._masks: dict[tuple[int, int], torch.Tensor | None] = {}

    def layout(self, grid: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """(window, shift) of this block on a feature grid."""
        return _window_and_shift(grid, self.window_size, self.shifted)

    def attention_mask(self, grid: tuple[int, int]) -> torch.Tensor | None:
        """The shifted-window mask on `grid` (timm's `attn_mask` buffer), None when unshifted."""
        if grid not in self._masks:
            window, shift = self.layout(grid)
            self._masks[grid] = shifted_window_mask(grid, window, shift) if any(shift) else None
        return self._masks[grid]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, H, W, C] -> same shape."""
        grid = (x.shape[1], x.shape[2])
        window, shift = self.layout(grid)
        mask = self.attention_mask(grid)
        if mask is not None:
            mask = mask.to(x.device, x.dtype)
        shifted = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2)) if any(shift) else x
        attended = _unpartition(self.attn(_partition(shifted, window), window, mask), window, grid)
        if any(shift):
            attended = torch.roll(attended, shifts=shift, dims=(1, 2))
        x = x + self.norm1(attended)
        return x + self.norm2(self.mlp(x))


class PatchMerging(nn.Module):
    """2x2 neighbourhoods -> one token: concatenate (timm 0.6 order), reduce, post-norm."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat(
            [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1
        )
        return self.norm(self.reduction(x))


class PatchEmbed(nn.Module):
    """4x4 patches -> tokens [B, H/4, W/4, C], layer-normed."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=_PATCH, stride=_PATCH)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class Stage(nn.Module):
    """A stage's blocks, then (not in the last stage) the patch merging into the next."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        pretrained_window: int,
        merge: bool,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinV2Block(
                dim, num_heads, window_size, shifted=i % 2 == 1, pretrained_window=pretrained_window
            )
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if merge else None


class SwinTransformerV2(nn.Module):
    """The patch embedding and the four stages (no final norm, no classifier)."""

    def __init__(self, config: Swin2Config):
        super().__init__()
        self.patch_embed = PatchEmbed(config.embed_dim)
        last = len(config.depths) - 1
        self.layers = nn.ModuleList(
            Stage(
                config.embed_dim * 2**i,
                config.depths[i],
                config.num_heads[i],
                config.window_size,
                config.pretrained_window_sizes[i],
                merge=i < last,
            )
            for i in range(len(config.depths))
        )


class Swin2Backbone(nn.Module):
    """MiDaS's Swin-V2 encoder: image -> four NCHW features at strides 4, 8, 16, 32."""

    def __init__(self, config: Swin2Config):
        super().__init__()
        self.config = config
        self.model = SwinTransformerV2(config)

    def check_input_size(self, height: int, width: int) -> None:
        """ValueError unless every stage's feature grid divides into its windows."""
        stride = _PATCH * 2 ** (len(self.config.depths) - 1)
        side = self.config.image_size
        if height % stride or width % stride or min(height, width) < 2 * stride:
            raise ValueError(
                f"Swin-V2 input {height}x{width}: sides must be multiples of {stride} and at least "
                f"{2 * stride} (trained size {side}x{side})"
            )
        for i, stage in enumerate(self.model.layers):
            grid = (height // (_PATCH * 2**i), width // (_PATCH * 2**i))
            window, _ = stage.blocks[0].layout(grid)
            if grid[0] % window[0] or grid[1] % window[1]:
                raise ValueError(
                    f"Swin-V2 input {height}x{width}: stage {i} grid {grid[0]}x{grid[1]} does not divide "
                    f"into {self.config.window_size}x{self.config.window_size} windows "
                    f"(trained size {side}x{side}; use it, or sides that keep every stage grid a multiple "
                    f"of the window or no larger than it)"
                )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [N, 3, h, w] normalised -> features [N, C_i, h/4/2^i, w/4/2^i], i = 0..3."""
        self.check_input_size(x.shape[-2], x.shape[-1])
        tokens = self.model.patch_embed(x)
        features = []
        for stage, hook in zip(self.model.layers, self.config.hooks, strict=True):
            for index, block in enumerate(stage.blocks):
                tokens = block(tokens)
                if index == hook:
                    features.append(tokens.permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                tokens = stage.downsample(tokens)
        return features


def _config(name: str) -> Swin2Config:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(
            f"unknown Swin-V2 backbone {name!r}; known: {', '.join(CONFIGS)}"
        ) from None


def build_backbone(name: str) -> Swin2Backbone:
    """A fresh Swin-V2 backbone, `name` one of CONFIGS ("swin2l24_384", "swin2t16_256")."""
    return Swin2Backbone(_config(name))


def _unused_official_key(key: str) -> bool:
    """Official backbone keys with no module here: computed masks, final norm, classifier."""
    return key.endswith(".attn_mask") or key.startswith(("model.norm.", "model.head."))


def convert_state_dict(name: str, state_dict: dict) -> dict:
    """Official backbone entries (keys without `pretrained.`) -> keys of `build_backbone(name)`.

    The names are the same; the attention masks (recomputed from the grid, as timm does),
    the final norm and the ImageNet classifier (neither used by the depth output) are
    dropped.
    """
    _config(name)
    return {key: value for key, value in state_dict.items() if not _unused_official_key(key)}
