"""Video Depth Anything: Depth Anything V2's DINOv2 encoder and DPT head with temporal attention.

Numerically the official `VideoDepthAnything` (DepthAnything/Video-Depth-Anything,
Apache-2.0). The encoder and the head's convolutions are the project's Depth Anything V2
modules (`dinov2.DinoVisionTransformer`, `depth_anything_v2.DPTHead`), shared, not copied;
what is new is four temporal modules in the head (AnimateDiff-style motion modules):

- on the reassembled maps of the third and fourth encoder levels (after `projects` and
  `resize_layers`, before `layer3_rn`/`layer4_rn`), and on the fusion paths after
  `refinenet4` and after `refinenet3`;
- each: per-frame GroupNorm (32 groups, eps 1e-6), a linear `proj_in`, one transformer
  block of two temporal self-attention layers (8 heads, pre-LayerNorm, residual) and a
  GEGLU feed-forward (x4, pre-LayerNorm, residual), a linear `proj_out`, plus the input;
- the attention runs along time for every pixel of the map; before the q/k/v
  projections (no bias) it adds a fixed sine table `pe` [1, 32, C] (sin on even
  channels, cos on odd, 10000^(-2i/C)): the first T rows for a clip of T <= 32 frames.

Module names mirror the official checkpoints (`pretrained.*`, `head.*`). The sine tables
are in the official files (persistent buffers there); here they are computed
(non-persistent), and `convert_official_state_dict` checks a file's tables against them
and drops them. The relative and the metric checkpoints share this architecture (the
output ends in ReLU for both; the metric one is metres of planar depth).
Input [B, T, 3, H, W] normalised RGB (H, W multiples of 14), output [B, T, H, W].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .depth_anything_v2 import HEAD_CONFIGS, DPTHead
from .dinov2 import PATCH_SIZE, VIT_CONFIGS, DinoVisionTransformer

VARIANTS = tuple(HEAD_CONFIGS)
OFFICIAL_PREFIXES = ("pretrained.", "head.")
TEMPORAL_WINDOW = 32  # rows of the sine tables: the longest clip the network takes
ATTENTION_HEADS = 8
GROUP_NORM_GROUPS = 32
FEED_FORWARD_MULT = 4
SINE_TABLE_SUFFIX = ".pos_encoder.pe"
# Frames whose encoder and last fusion stages run at once (bounds activation memory; the
# result does not depend on it: those stages treat every frame alone).
FRAME_CHUNK = 8


def sine_table(channels: int, length: int = TEMPORAL_WINDOW) -> torch.Tensor:
    """The official temporal position table [1, length, channels], computed as the official code does."""
    position = torch.arange(length).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, channels, 2) * (-math.log(10000.0) / channels))
    table = torch.zeros(1, length, channels)
    table[0, :, 0::2] = torch.sin(position * div_term)
    table[0, :, 1::2] = torch.cos(position * div_term)
    return table


class PositionalEncoding(nn.Module):
    """Adds the first T rows of the sine table to [N, T, C] (a computed, non-persistent buffer)."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("pe", sine_table(channels), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, : x.shape[1]].to(x.dtype)


class TemporalAttention(nn.Module):
    """Self-attention along time: [B*T, P, C] -> [B*T, P, C], each of the P pixels on its own."""

    def __init__(self, channels: int):
        super().__init__()
        self.heads = ATTENTION_HEADS
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])
        self.pos_encoder = PositionalEncoding(channels)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        batch_frames, pixels, channels = x.shape
        batch = batch_frames // frames
        # (b f) p c -> (b p) f c
        x = x.reshape(batch, frames, pixels, channels).permute(0, 2, 1, 3).reshape(batch * pixels, frames, channels)
        x = self.pos_encoder(x)
        head_dim = channels // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch * pixels, frames, self.heads, head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.to_q(x)), split(self.to_k(x)), split(self.to_v(x)))
        out = out.transpose(1, 2).reshape(batch * pixels, frames, channels)
        out = self.to_out[1](self.to_out[0](out))
        return out.reshape(batch, pixels, frames, channels).permute(0, 2, 1, 3).reshape(batch_frames, pixels, channels)


class GEGLU(nn.Module):
    """Linear to twice the width; the first half times GELU (exact) of the second."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        return hidden * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU -> dropout (none) -> linear back, named as the official `ff.net.*`."""

    def __init__(self, channels: int):
        super().__init__()
        inner = channels * FEED_FORWARD_MULT
        self.net = nn.ModuleList([GEGLU(channels, inner), nn.Dropout(0.0), nn.Linear(inner, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class TemporalTransformerBlock(nn.Module):
    """Two pre-norm temporal attention layers and a pre-norm feed-forward, each residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalAttention(channels) for _ in range(2)])
        self.norms = nn.ModuleList([nn.LayerNorm(channels) for _ in range(2)])
        self.ff = FeedForward(channels)
        self.ff_norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms, strict=True):
            x = attention(norm(x), frames) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer(nn.Module):
    """GroupNorm -> proj_in -> transformer block -> proj_out, plus the input (`temporal_transformer`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(GROUP_NORM_GROUPS, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(channels)])
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """[B*T, C, h, w] (frames of a clip consecutive) -> the same shape."""
        batch_frames, channels, height, width = x.shape
        hidden = self.norm(x).permute(0, 2, 3, 1).reshape(batch_frames, height * width, channels)
        hidden = self.proj_in(hidden)
        for block in self.transformer_blocks:
            hidden = block(hidden, frames)
        hidden = self.proj_out(hidden)
        return hidden.reshape(batch_frames, height, width, channels).permute(0, 3, 1, 2) + x


class TemporalModule(nn.Module):
    """One motion module (`motion_modules.i.temporal_transformer`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        return self.temporal_transformer(x, frames)


class TemporalDPTHead(DPTHead):
    """Depth Anything V2's DPT head with the four temporal modules (module docstring)."""

    def __init__(self, embed_dim: int, variant: str):
        config = HEAD_CONFIGS[variant]
        super().__init__(embed_dim, config, metric=False)
        channels = config.out_channels
        self.motion_modules = nn.ModuleList(
            TemporalModule(c) for c in (channels[2], channels[3], config.features, config.features)
        )

    def reassemble(self, tokens: torch.Tensor, level: int, patch_h: int, patch_w: int) -> torch.Tensor:
        """Token map of one encoder level -> projected, resized map [N, C, h, w]."""
        x = tokens.permute(0, 2, 1).reshape(tokens.shape[0], tokens.shape[-1], patch_h, patch_w)
        return self.resize_layers[level](self.projects[level](x))

    def finish(self, path_3: torch.Tensor, layer_1: torch.Tensor, layer_2: torch.Tensor,
               patch_h: int, patch_w: int) -> torch.Tensor:
        """The per-frame end of the head: refinenet2, refinenet1 and the output convolutions."""
        scratch = self.scratch
        path_2 = scratch.refinenet2(path_3, scratch.layer2_rn(layer_2), size=layer_1.shape[2:])
        path_1 = scratch.refinenet1(path_2, scratch.layer1_rn(layer_1))
        out = scratch.output_conv1(path_1)
        out = F.interpolate(out, (patch_h * PATCH_SIZE, patch_w * PATCH_SIZE), mode="bilinear", align_corners=True)
        return scratch.output_conv2(out)


class VideoDepthAnything(nn.Module):
    """The official Video Depth Anything network: [B, T, 3, H, W] normalised RGB -> [B, T, H, W]."""

    def __init__(self, variant: str):
        super().__init__()
        self.variant = variant
        self.layer_indices = HEAD_CONFIGS[variant].layer_indices
        self.pretrained = DinoVisionTransformer(VIT_CONFIGS[variant])
        self.head = TemporalDPTHead(self.pretrained.embed_dim, variant)

    def _encode(self, images: torch.Tensor, patch_h: int, patch_w: int) -> list[torch.Tensor]:
        """The four reassembled maps of every image [N, 3, H, W], encoded FRAME_CHUNK images at a time."""
        levels: list[list[torch.Tensor]] = [[], [], [], []]
        for start in range(0, images.shape[0], FRAME_CHUNK):
            features = self.pretrained.intermediate_layers(images[start : start + FRAME_CHUNK], self.layer_indices)
            for level, tokens in enumerate(features):
                levels[level].append(self.head.reassemble(tokens, level, patch_h, patch_w))
        return [torch.cat(maps) for maps in levels]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[2] != 3:
            raise ValueError(f"expected a clip of shape [B, T, 3, H, W], got {tuple(x.shape)}")
        batch, frames = x.shape[:2]
        if not 1 <= frames <= TEMPORAL_WINDOW:
            raise ValueError(f"a clip holds 1 to {TEMPORAL_WINDOW} frames, got {frames}")
        patch_h, patch_w = x.shape[-2] // PATCH_SIZE, x.shape[-1] // PATCH_SIZE
        layer_1, layer_2, layer_3, layer_4 = self._encode(x.flatten(0, 1), patch_h, patch_w)
        head, scratch = self.head, self.head.scratch
        layer_3 = head.motion_modules[0](layer_3, frames)
        layer_4 = head.motion_modules[1](layer_4, frames)
        layer_3_rn = scratch.layer3_rn(layer_3)
        path_4 = scratch.refinenet4(scratch.layer4_rn(layer_4), size=layer_3_rn.shape[2:])
        path_4 = head.motion_modules[2](path_4, frames)
        path_3 = scratch.refinenet3(path_4, layer_3_rn, size=layer_2.shape[2:])
        path_3 = head.motion_modules[3](path_3, frames)
        depth = torch.cat([
            head.finish(path_3[i : i + FRAME_CHUNK], layer_1[i : i + FRAME_CHUNK], layer_2[i : i + FRAME_CHUNK],
                        patch_h, patch_w)
            for i in range(0, path_3.shape[0], FRAME_CHUNK)
        ])
        return F.relu(depth).squeeze(1).unflatten(0, (batch, frames))


def _check_variant(variant: str) -> None:
    if variant not in HEAD_CONFIGS:
        raise ValueError(f"unknown Video Depth Anything variant {variant!r}; known: {', '.join(VARIANTS)}")


def build(variant: str) -> VideoDepthAnything:
    """A fresh Video Depth Anything network (random weights, eval mode); `variant`: vits, vitb, vitl."""
    _check_variant(variant)
    return VideoDepthAnything(variant).eval()


def convert_official_state_dict(variant: str, state_dict: dict) -> dict:
    """The official checkpoint's state dict under this module's keys (the same names).

    The sine tables (`...pos_encoder.pe`) the official files hold are checked against the
    computed ones and left out (this network computes them). ValueError naming the first
    key outside `pretrained.`/`head.`, or a sine table that differs (another architecture).
    """
    _check_variant(variant)
    converted = {}
    for key, value in state_dict.items():
        if not key.startswith(OFFICIAL_PREFIXES):
            raise ValueError(
                f"key {key!r} is not part of a Video Depth Anything {variant} checkpoint "
                f"(expected keys starting with {' or '.join(OFFICIAL_PREFIXES)})"
            )
        if key.endswith(SINE_TABLE_SUFFIX):
            expected = sine_table(value.shape[-1], value.shape[-2]) if value.ndim == 3 else None
            if expected is None or not torch.allclose(value.float(), expected, atol=1e-5):
                raise ValueError(f"{key} is not the official temporal sine table of shape [1, 32, C]")
            continue
        converted[key] = value
    return converted
