"""Bilinear sampling on a torch device that matches OpenCV's `remap`, and equirect padding.

The numpy reference samples with `cv2.remap` (INTER_LINEAR, BORDER_REPLICATE), which does not
interpolate at the exact coordinate: it rounds each coordinate to 1/32 of a pixel
(`INTER_BITS` = 5) and uses the weights of that grid. At a depth edge the difference from
exact bilinear interpolation reaches 1/64 of the step, far more than the 1e-4 the device
trip must agree within. So the grids here are rounded the same way (round half to even, as
OpenCV's `cvRound`) before `grid_sample` (bilinear, border padding = replicate) reads them.
What remains is the float32 arithmetic of the normalised grid: about 1e-7 of the source's
width, in pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

INTER_TAB_SIZE = 32  # OpenCV's remap grid: 1 / 32 pixel


def quantised(coordinate: np.ndarray) -> np.ndarray:
    """float64 coordinates rounded to OpenCV remap's 1/32 pixel grid (from its float32 maps)."""
    scaled = np.asarray(coordinate, dtype=np.float32).astype(np.float64) * INTER_TAB_SIZE
    return np.rint(scaled) / INTER_TAB_SIZE


def make_grid(x: np.ndarray, y: np.ndarray, height: int, width: int, device, offset: float = 0.0) -> torch.Tensor:
    """A `grid_sample` grid [1, 1, P, 2] for pixel coordinates (x, y) (flat, float32 as cv2 gets
    them) in a source `height` x `width`, less `offset` after rounding (cv2 read a source padded
    by `offset` pixels, the grid reads the unpadded one); align_corners=True normalisation."""
    gx = (quantised(x).reshape(-1) - offset) * (2.0 / max(width - 1, 1)) - 1.0
    gy = (quantised(y).reshape(-1) - offset) * (2.0 / max(height - 1, 1)) - 1.0
    grid = np.stack((gx, gy), axis=-1).astype(np.float32)
    return torch.from_numpy(grid).reshape(1, 1, -1, 2).to(device)


class ViewReads:
    """OpenCV remap's reads (INTER_LINEAR, BORDER_REPLICATE) of a fixed point list per view, on a device.

    `xs`, `ys`: per view, the float32 coordinates cv2 gets in a map of `height` x `width`.
    `read(maps [C, V, h, w]) -> [C, V * longest]`: view v's values at positions v * longest
    onwards, its list padded (to `longest`) by repeating its last point. Two ways, one result:

    - `exact`: `Taps`, cv2's taps and weights gathered and combined in cv2's order of
      operations: its bits, on a CPU. Many passes over the data.
    - otherwise `grid_sample` (one fused kernel per read, several times faster on a CPU): the
      coordinates rounded to cv2's 1/32 pixel grid and the maps placed on a canvas whose
      sides are powers of two, where the kernel's un-normalisation (x + 1) * side / 2 - 1/2
      lands exactly on cv2's coordinates; so it finds cv2's taps and fractions, and only its
      arithmetic (fused multiply-adds) differs, by an ulp or two.
    """

    def __init__(self, xs, ys, height: int, width: int, device, exact: bool = False):
        self.counts = tuple(int(np.size(x)) for x in xs)
        self.longest = max(max(self.counts), 1)
        self.height, self.width, self.exact = height, width, exact
        x = np.stack([_padded_points(np.asarray(p, np.float32), self.longest) for p in xs])
        y = np.stack([_padded_points(np.asarray(p, np.float32), self.longest) for p in ys])
        if exact:
            per_view = (height + 2) * (width + 2)
            offsets = np.repeat(np.arange(len(xs), dtype=np.int64) * per_view, self.longest)
            self.taps = Taps(x.reshape(-1), y.reshape(-1), height, width, device, offsets)
            return
        self.canvas = (canvas_side(height + 2), canvas_side(width + 2))
        gx = (2.0 * (quantised(x) + 1.0) + 1.0) / self.canvas[1] - 1.0  # +1: the repeated border pixel
        gy = (2.0 * (quantised(y) + 1.0) + 1.0) / self.canvas[0] - 1.0
        grid = np.stack((gx, gy), axis=-1).astype(np.float32)  # exact: dyadic, well inside float32
        self.grid = torch.from_numpy(grid).reshape(len(xs), 1, self.longest, 2).to(device)

    def read(self, maps: torch.Tensor) -> torch.Tensor:
        channels, views = maps.shape[:2]
        padded = Taps.pad(maps.to(torch.float32))
        if self.exact:
            return self.taps.read(padded.reshape(channels, -1))
        canvas = torch.zeros((views, channels, *self.canvas), dtype=torch.float32, device=maps.device)
        canvas[:, :, :self.height + 2, :self.width + 2] = padded.transpose(0, 1)
        out = F.grid_sample(canvas, self.grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out[:, :, 0].transpose(0, 1).reshape(channels, -1)


def _padded_points(values: np.ndarray, length: int) -> np.ndarray:
    fill = values[-1] if values.size else np.float32(0.0)
    return np.concatenate((values.reshape(-1), np.full(length - values.size, fill, np.float32)))


def canvas_side(size: int) -> int:
    """The power of two at least `size`."""
    return 1 << max(int(size) - 1, 1).bit_length()


def cv2_taps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV remap's bilinear taps of float32 coordinates: (columns [P, 4], rows [P, 4], weights [P, 4]
    float32), taps in the order top-left, top-right, bottom-left, bottom-right."""
    qx = np.rint(np.asarray(x, np.float32).astype(np.float64) * INTER_TAB_SIZE).astype(np.int64).reshape(-1)
    qy = np.rint(np.asarray(y, np.float32).astype(np.float64) * INTER_TAB_SIZE).astype(np.int64).reshape(-1)
    ix, iy = qx >> 5, qy >> 5
    fx = ((qx & (INTER_TAB_SIZE - 1)) / INTER_TAB_SIZE).astype(np.float32)
    fy = ((qy & (INTER_TAB_SIZE - 1)) / INTER_TAB_SIZE).astype(np.float32)
    one = np.float32(1.0)
    cols = np.stack((ix, ix + 1, ix, ix + 1), axis=1)
    rows = np.stack((iy, iy, iy + 1, iy + 1), axis=1)
    weights = np.stack(((one - fy) * (one - fx), (one - fy) * fx, fy * (one - fx), fy * fx), axis=1)
    return cols, rows, weights


def sample(source: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample `source` [N, C, h, w] at `grid` [N or 1, 1, P, 2]: [N, C, P] (as cv2.remap would)."""
    if grid.shape[0] != source.shape[0]:
        grid = grid.expand(source.shape[0], *grid.shape[1:])
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[:, :, 0, :]


def pad_equirect(frames: torch.Tensor, pad: int = 2) -> torch.Tensor:
    """projection.pad_equirect on [N, C, H, W] (any strides): columns wrap, rows past a pole are
    the rows just before it, half a turn away in longitude. One copy of the frames."""
    height, width = frames.shape[-2:]
    if pad > height:
        raise ValueError(f"equirect image of {height} rows is too small to pad by {pad}")
    half = width // 2
    out = torch.empty((*frames.shape[:-2], height + 2 * pad, width + 2 * pad), dtype=frames.dtype,
                      device=frames.device)
    body = out[..., pad:pad + width]
    body[..., pad:pad + height, :] = frames
    for row in range(pad):  # padded row `row` is frame row pad-1-row; the bottom ones mirror the last rows
        top, bottom = frames[..., pad - 1 - row, :], frames[..., height - 1 - row, :]
        body[..., row, :half], body[..., row, half:] = top[..., width - half:], top[..., :width - half]
        below = pad + height + row
        body[..., below, :half], body[..., below, half:] = bottom[..., width - half:], bottom[..., :width - half]
    out[..., :pad] = body[..., width - pad:]
    out[..., pad + width:] = body[..., :pad]
    return out


def _weight_table() -> np.ndarray:
    """OpenCV's bilinear weights for each (fy, fx) on the 1/32 grid: float32 [1024, 4], row fy * 32 + fx."""
    fraction = (np.arange(INTER_TAB_SIZE) / INTER_TAB_SIZE).astype(np.float32)
    fy, fx = np.meshgrid(fraction, fraction, indexing="ij")
    one = np.float32(1.0)
    table = np.stack(((one - fy) * (one - fx), (one - fy) * fx, fy * (one - fx), fy * fx), axis=-1)
    return table.reshape(-1, 4).astype(np.float32)


WEIGHTS = _weight_table()


class Taps:
    """OpenCV remap's exact bilinear reads (INTER_LINEAR, BORDER_REPLICATE) of fixed points, on a device.

    Built once from the float32 coordinates cv2 would get, for a source of `height` x `width`
    that `read` pads by one pixel (edge repeated) so that every tap lies inside it: the
    top-left tap's flat index in the padded source (`base`, plus `offset` per source when
    several are stacked), and the 1/32 pixel code of the fractions, whose four weights come
    from OpenCV's own table. `read` forms ((t0 w0 + t1 w1) + t2 w2) + t3 w3 in float32, as
    cv2.remap does: the same bits on a CPU (`grid_sample` would be within 1e-7 of the width
    in pixels, which at a depth edge is more than the trip may differ by).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, height: int, width: int, device, offset=None):
        qx = np.rint(np.asarray(x, np.float32).astype(np.float64) * INTER_TAB_SIZE).astype(np.int64)
        qy = np.rint(np.asarray(y, np.float32).astype(np.float64) * INTER_TAB_SIZE).astype(np.int64)
        ix = np.clip((qx >> 5) + 1, 0, width)  # +1: the padded source; the clip only guards stray points
        iy = np.clip((qy >> 5) + 1, 0, height)
        self.step = width + 2
        base = iy * self.step + ix + (0 if offset is None else offset)
        code = (qy & (INTER_TAB_SIZE - 1)) * INTER_TAB_SIZE + (qx & (INTER_TAB_SIZE - 1))
        self.base = torch.from_numpy(base.reshape(-1)).to(device)
        self.code = torch.from_numpy(code.reshape(-1)).to(device)
        self.table = torch.from_numpy(WEIGHTS).to(device)

    @staticmethod
    def pad(source: torch.Tensor) -> torch.Tensor:
        """source [..., h, w] padded by one pixel, the edges repeated: [..., h + 2, w + 2]."""
        shape = source.shape
        flat = source.reshape(-1, 1, *shape[-2:])
        return F.pad(flat, (1, 1, 1, 1), mode="replicate").reshape(*shape[:-2], shape[-2] + 2, shape[-1] + 2)

    def read(self, padded_flat: torch.Tensor) -> torch.Tensor:
        """Values at the points from padded sources flattened to [..., N]: [..., P] float32."""
        out = None
        for k, shift in enumerate((0, 1, self.step, self.step + 1)):
            term = padded_flat.index_select(-1, self.base + shift) * self.table[:, k].index_select(0, self.code)
            out = term if out is None else out.add_(term)
        return out
