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
from .sampler import ViewReads, pad_equirect

TINY = torch.finfo(torch.float32).tiny
# Read the views' maps with cv2's own arithmetic (sampler.ViewReads): the numpy trip's bits on a
# CPU, at several times the cost; by default grid_sample, within an ulp or two of them.
EXACT_READS = False


def read_views(reads: ViewReads, source_pad: int, maps: torch.Tensor) -> torch.Tensor:
    """maps [C, V, h, w] -> their values at the reads' points [C, V * longest] (cv2.remap's)."""
    source = maps.to(torch.float32)
    if source_pad:
        source = pad_equirect(source, source_pad)
    return reads.read(source)


def _sampled(fp: Footprints, maps: torch.Tensor) -> torch.Tensor:
    return read_views(fp.reads, fp.source_pad, maps)


def blend(maps: torch.Tensor, views: tuple[View, ...], height: int, width: int,
          valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-view maps [F, V, h, w] -> (merged [F, H, W] float32, weight sum [F, H, W]).

    Where no view saw a pixel (weight sum 0) the merged value is 0. `valid` [F, V, h, w]
    bool (None: all valid).
    """
    count = maps.shape[0]
    size = height * width
    fp = footprints(tuple(views), height, width, maps.device, EXACT_READS)
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
    total.index_add_(1, fp.pixels, _sampled(fp, maps).mul_(weights))
    merged = total[:, :size] / torch.clamp(weight_sum, min=TINY)
    return merged.reshape(count, height, width), weight_sum.reshape(count, height, width).clone()
