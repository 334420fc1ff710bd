"""The temporal stabiliser's per-frame work on a torch device (video.temporal's rules).

`DeviceStabiliser` is video.temporal.TemporalStabiliser with the full-size work on the
device: the area-averaged fitting grid of each frame, the aligned frame, and the
motion-aware filter over the last frames (colour change, its 3 x 3 dilation with wrapped
columns, the decayed weighted mean), whose history stays on the device. The small work stays
the reference's own on the host: the window's static reference and the robust affine fits
(`build_reference`, `robust_affine_fit`, on grids of `fit_rows` rows). When
video/temporal.py changes its rules, this mirror follows (tests/engine/test_device_path.py
holds the two together on a shot).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..video import reprojection
from ..video.temporal import TemporalStabiliser
from .reprojection import backward_sample, sample_points


@functools.lru_cache(maxsize=16)
def _area_table(source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    """cv2 INTER_AREA's weights along one axis (computeResizeAreaTab): (index [target, span], weight)."""
    scale = source / target
    entries: list[list[tuple[int, float]]] = []
    for d in range(target):
        fs1 = d * scale
        fs2 = fs1 + scale
        cell = min(scale, source - fs1)
        s1, s2 = math.ceil(fs1), math.floor(fs2)
        s2 = min(s2, source - 1)
        s1 = min(s1, s2)
        row = []
        if s1 - fs1 > 1e-3:
            row.append((s1 - 1, float(np.float32((s1 - fs1) / cell))))
        row += [(s, float(np.float32(1.0 / cell))) for s in range(s1, s2)]
        if fs2 - s2 > 1e-3:
            row.append((s2, float(np.float32(min(min(fs2 - s2, 1.0), cell) / cell))))
        entries.append(row)
    span = max(len(row) for row in entries)
    index = np.zeros((target, span), np.int64)
    weight = np.zeros((target, span), np.float32)
    for d, row in enumerate(entries):
        for k, (s, w) in enumerate(row):
            index[d, k], weight[d, k] = s, w
    return index, weight


@functools.lru_cache(maxsize=16)
def _area_matrix(source: int, target: int, device) -> torch.Tensor:
    """The INTER_AREA weights along one axis as a dense [target, source] matrix (banded)."""
    index, weight = _area_table(source, target)
    matrix = np.zeros((target, source), np.float32)
    np.add.at(matrix, (np.repeat(np.arange(target), index.shape[1]), index.reshape(-1)), weight.reshape(-1))
    return torch.from_numpy(matrix).to(device)


def area_resize(values: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """cv2.resize(values [H, W] float32, (cols, rows), INTER_AREA) for a shrink, on the device:
    OpenCV's weights, applied as two matrix products (rows, then columns)."""
    height, width = values.shape
    across = _area_matrix(width, cols, values.device)
    down = _area_matrix(height, rows, values.device)
    return (down @ values.to(torch.float32)) @ across.T


def fit_grid(disparity: torch.Tensor, valid: torch.Tensor, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """temporal.fit_grid: the area-averaged float64 grid (host) and where it is fully valid."""
    height, width = disparity.shape
    if height <= rows:
        return disparity.cpu().numpy().astype(np.float64), valid.cpu().numpy().copy()
    cols = max(1, round(width * rows / height))
    weight = valid.to(torch.float32)
    total = area_resize(torch.where(valid, disparity, torch.zeros((), device=disparity.device)), rows, cols)
    coverage = area_resize(weight, rows, cols)
    total, coverage = total.cpu().numpy(), coverage.cpu().numpy()
    grid_valid = coverage > 0.999
    return np.where(grid_valid, total / np.maximum(coverage, 1e-6), 0.0).astype(np.float64), grid_valid


def to_colour8(colour: torch.Tensor) -> torch.Tensor:
    """cv2.convertScaleAbs(colour, alpha=255): |255 x| rounded half to even, saturated, uint8."""
    scaled = colour.to(torch.float32) * 255.0
    return scaled.abs_().round_().clamp_(0.0, 255.0).to(torch.uint8)


def _first_level_at_or_above(threshold: float) -> int:
    """The smallest 8-bit level numpy counts as `>= threshold` (256: none)."""
    levels = np.arange(256, dtype=np.uint8)
    reached = np.flatnonzero(levels >= threshold)
    return int(reached[0]) if reached.size else 256


def _grow(mask: torch.Tensor, wrap: bool) -> torch.Tensor:
    """3 x 3 dilation of a bool map: columns wrapped (or the edge repeated), nothing past the top
    and bottom rows (cv2.dilate of pad_columns' result); as two separable ORs."""
    left, right = (mask[:, -1:], mask[:, :1]) if wrap else (mask[:, :1], mask[:, -1:])
    padded = torch.cat((left, mask, right), dim=1)
    across = padded[:, :-2] | padded[:, 1:-1] | padded[:, 2:]
    grown = across.clone()
    grown[1:] |= across[:-1]
    grown[:-1] |= across[1:]
    return grown


def changed_pixels(colour8: torch.Tensor, past8: torch.Tensor, threshold: float, wrap: bool) -> torch.Tensor:
    """Where the largest channel difference reaches `threshold`, grown by one pixel (3 x 3): bool [H, W]."""
    difference = torch.maximum(colour8, past8) - torch.minimum(colour8, past8)  # cv2.absdiff, in uint8
    largest = torch.maximum(torch.maximum(difference[..., 0], difference[..., 1]), difference[..., 2])
    level = _first_level_at_or_above(threshold)
    changed = largest >= level if level < 256 else torch.zeros_like(largest, dtype=torch.bool)
    return _grow(changed, wrap)


def _backward_sample(inverse, pose, other_inverse, other_valid, other_pose, other_colour8):
    """device.reprojection.backward_sample; on a CPU the host's (cv2.remap's gathers are several times
    faster than torch's there, and give the same values), sharing the tensors' memory."""
    if inverse.device.type != "cpu":
        return backward_sample(inverse, pose, other_inverse, other_valid, other_pose, other_colour8)
    sampled = reprojection.backward_sample(inverse.numpy(), pose, other_inverse.numpy(), other_valid.numpy(),
                                           other_pose, other_colour8.numpy())
    return tuple(torch.from_numpy(values) for values in
                 (sampled.inverse, sampled.expected, sampled.carried, sampled.valid, sampled.colour))


class DeviceStabiliser(TemporalStabiliser):
    """TemporalStabiliser with the full-size work on the device: push frames in order, get each one
    stabilised (`StabilisedFrame.disparity` a float32 tensor on the device).

    The rules are the host's own (TemporalStabiliser.push, the alignments); only the
    primitives they call on full-size maps are replaced: the inputs, the fitting grids, the
    point samples of the camera solve's structure, the aligned frame, and both filters,
    whose history stays on the device. The moving camera's filter reprojects past frames
    with device.reprojection.backward_sample (on a CUDA device; on a CPU with the host's).
    """

    def _inputs(self, disparity, valid):
        disparity = disparity.to(torch.float32)
        return disparity, valid & torch.isfinite(disparity)

    def _grid(self, disparity, valid, rows: int) -> tuple[np.ndarray, np.ndarray]:
        return fit_grid(disparity, valid, rows)

    def _sample(self, values, xy: np.ndarray) -> np.ndarray:
        return sample_points(values, xy)

    def _aligned(self, disparity, valid, scale: float, shift: float):
        return torch.where(valid, disparity * scale + shift, torch.zeros((), device=disparity.device))

    def _colour8(self, colour, device) -> torch.Tensor:
        colour = colour if torch.is_tensor(colour) else torch.from_numpy(np.asarray(colour, np.float32))
        return to_colour8(colour.to(device))

    def _filter(self, number: int, aligned: torch.Tensor, valid: torch.Tensor, colour) -> torch.Tensor:
        """TemporalStabiliser._filter on the device: the motion filter with no pose (every past frame
        by the still camera's rule)."""
        return self._motion_filter(number, aligned, valid, colour, None, True)

    def _motion_filter(self, number: int, aligned: torch.Tensor, valid: torch.Tensor, colour, pose,
                       keep: bool) -> torch.Tensor:
        """TemporalStabiliser._motion_filter on the device (`pose` None: the still camera's filter)."""
        settings = self.settings
        device = aligned.device
        colour8 = self._colour8(colour, device)
        self._forget_before(self._history, number - settings.filter_window)
        valid_f = valid.to(torch.float32)
        total, weight = aligned * valid_f, valid_f.clone()
        here = None if pose is None else self._units(pose)
        level = _first_level_at_or_above(settings.colour_threshold * 255.0)
        for past_number, (past_aligned, past_valid, past_colour8, past_pose) in self._history.items():
            decay = float(np.float32(settings.filter_decay ** (number - past_number)))
            if pose is None or past_pose is None or past_pose.same_as(pose, np.pi / aligned.shape[0] / 4, 1e-9):
                changed = changed_pixels(colour8, past_colour8, settings.colour_threshold * 255.0, self.wrap)
                use, carried = (past_valid & ~changed).to(torch.float32), past_aligned
            else:
                inverse, expected, carried, sampled_valid, sampled_colour = _backward_sample(
                    aligned, here, past_aligned, past_valid, self._units(past_pose), past_colour8)
                agree = sampled_valid & ((inverse - expected).abs()
                                         <= torch.clamp(expected, min=1e-12) * float(np.float32(settings.agreement)))
                difference = (torch.maximum(colour8, sampled_colour) - torch.minimum(colour8, sampled_colour)).amax(-1)
                use = (agree & (difference < level)).to(torch.float32)
            use *= valid_f * decay
            total += use * carried
            weight += use
        if keep:
            self._history[number] = (aligned, valid, colour8, pose)
        zero = torch.zeros((), device=device)
        return torch.where(weight > 0, total / torch.clamp(weight, min=1e-30), zero)
