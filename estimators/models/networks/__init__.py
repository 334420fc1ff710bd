"""Network definitions, looked up by a spec's `architecture` name.

Each family module provides `build(variant, **options) -> torch.nn.Module` (a fresh,
randomly initialised network in eval mode) and
`convert_official_state_dict(variant, state_dict) -> dict`, the one function that maps
an official checkpoint's keys to the module's (the same function loads a real download
and the reference fixtures). A network's forward takes a normalised float32
[N, 3, h, w] tensor and returns the official model's raw output [N, h, w]; a video
network (Video Depth Anything) takes a clip [B, T, 3, h, w] and returns [B, T, h, w].
"""

from __future__ import annotations

import importlib
from typing import Any

# architecture name -> (module in this package, variant within it)
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "depth-anything-v2-vits": ("depth_anything_v2", "vits"),
    "depth-anything-v2-vitb": ("depth_anything_v2", "vitb"),
    "depth-anything-v2-vitl": ("depth_anything_v2", "vitl"),
    "video-depth-anything-vits": ("video_depth_anything", "vits"),
    "video-depth-anything-vitb": ("video_depth_anything", "vitb"),
    "video-depth-anything-vitl": ("video_depth_anything", "vitl"),
    "midas-dpt-beit-large-512": ("midas", "dpt_beit_large_512"),
    "midas-dpt-beit-base-384": ("midas", "dpt_beit_base_384"),
    "midas-dpt-swin2-large-384": ("midas", "dpt_swin2_large_384"),
    "midas-dpt-swin2-tiny-256": ("midas", "dpt_swin2_tiny_256"),
    "midas-dpt-levit-224": ("midas", "dpt_levit_224"),
    "midas-dpt-large-384": ("midas", "dpt_large_384"),
    "midas-dpt-hybrid-384": ("midas", "dpt_hybrid_384"),
}


def _family(architecture: str):
    try:
        module, variant = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(f"unknown network architecture {architecture!r}") from None
    return importlib.import_module(f".{module}", __name__), variant


def build(architecture: str, **options: Any):
    """A fresh network of `architecture` (random weights, eval mode)."""
    family, variant = _family(architecture)
    return family.build(variant, **options)


def convert_official_state_dict(architecture: str, state_dict: dict) -> dict:
    """Map an official checkpoint's state dict to the keys of `build(architecture)`."""
    family, variant = _family(architecture)
    return family.convert_official_state_dict(variant, state_dict)
