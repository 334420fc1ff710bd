"""Blending views' maps into equirect maps on a torch device (panorama.blending's rule).

Each view's map is sampled at its footprint pixels (one `grid_sample` for all views and all
frames: frames are channels), weighted by the cos^2 border weights and accumulated with one
`index_add_`; the weight sum of an all-valid layout is cached. A `valid` mask drops a view's
pixels whose bilinear neighbourhood holds an invalid one, as the reference does.
"""

from __future__ import annotations

import torch

from ..panorama.projection import View
from .geometry import Footprints, footprints
from .sampler import pad_equirect, sample

TINY = torch.finfo(torch.float32).tiny


def _sampled(fp: Footprints, maps: torch.Tensor) -> torch.Tensor:
    """maps [F, V, h, w] -> values at every footprint entry [F, V * Pmax]."""
    count = maps.shape[0]
    source = maps.transpose(0, 1)  # views are the batch, frames the channels
    if fp.padded:
        source = pad_equirect(source)
    values = sample(source.contiguous(), fp.grid)  # [V, F, Pmax]
    return values.transpose(0, 1).reshape(count, -1)


def blend(maps: torch.Tensor, views: tuple[View, ...], height: int, width: int,
          valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-view maps [F, V, h, w] -> (merged [F, H, W] float32, weight sum [F, H, W]).

    Where no view saw a pixel (weight sum 0) the merged value is 0. `valid` [F, V, h, w]
    bool (None: all valid).
    """
    count = maps.shape[0]
    size = height * width
    fp = footprints(tuple(views), height, width, maps.device)
    weights = fp.weights.expand(count, -1)
    if valid is not None and bool(valid.all()):
        valid = None
    if valid is None:
        weight_sum = fp.weight_sum.expand(count, -1)
    else:
        weights = weights * (_sampled(fp, valid.to(torch.float32)) > 0.999)
        weight_sum = torch.zeros(count, size + 1, dtype=torch.float32, device=maps.device)
        weight_sum = weight_sum.index_add_(1, fp.pixels, weights)[:, :size]
    total = torch.zeros(count, size + 1, dtype=torch.float32, device=maps.device)
    total.index_add_(1, fp.pixels, _sampled(fp, maps.to(torch.float32)).mul_(weights))
    merged = total[:, :size] / torch.clamp(weight_sum, min=TINY)
    return merged.reshape(count, height, width), weight_sum.reshape(count, height, width).clone()
