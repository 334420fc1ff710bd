"""Equirect frames -> perspective views on a torch device, a batch of frames in one call.

The counterpart of panorama.projection.equirect_to_views + fusion.project_to_views: the
frames are padded as the reference pads them (columns wrap, rows past a pole come from
the other side of it), then every view of every frame is read by one `grid_sample` whose
grid is OpenCV's (sampler.py). The result is clipped to 0..1, as the estimator protocol
wants its images.
"""

from __future__ import annotations

import torch

from ..panorama.projection import View
from .geometry import projection_layout, view_size
from .sampler import sample


def frames_to_views(frames: torch.Tensor, views: tuple[View, ...]) -> torch.Tensor:
    """RGB frames [F, H, W, 3] (float, 0..1) -> views [F, V, h, w, 3], float32, clipped to 0..1."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3] RGB, got shape {tuple(frames.shape)}")
    count, height, width = frames.shape[:3]
    h, w = view_size(views)
    layout = projection_layout(views, height, width, frames.device)
    frames = frames.to(torch.float32)
    # Read in place through channel-first strides: no copy, no padding of the frame.
    sampled = sample(frames.permute(0, 3, 1, 2), layout.grid)  # [F, 3, V*h*w]
    if layout.edge.numel():
        taps = frames.reshape(count, height * width, 3).index_select(1, layout.taps)
        taps = taps.reshape(count, -1, 4, 3)
        wts = layout.weights[None, :, :, None]
        # OpenCV's order of operations: ((t0 w0 + t1 w1) + t2 w2) + t3 w3.
        edge = ((taps[:, :, 0] * wts[:, :, 0] + taps[:, :, 1] * wts[:, :, 1]) + taps[:, :, 2] * wts[:, :, 2]
                ) + taps[:, :, 3] * wts[:, :, 3]
        sampled[:, :, layout.edge] = edge.transpose(1, 2)
    out = sampled.reshape(count, 3, len(views), h, w).permute(0, 2, 3, 4, 1)
    return out.clamp_(0.0, 1.0)


def ray_tensor(views: tuple[View, ...], device) -> torch.Tensor:
    """float32 [V, h, w, 3]: every view pixel's ray (what a plug-in's `predict` gets)."""
    import numpy as np

    return torch.from_numpy(np.stack([v.rays() for v in views])).to(device)
