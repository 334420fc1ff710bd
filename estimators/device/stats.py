"""Order statistics of tensors that equal numpy's to the last bit: percentiles, medians, samples.

The device trip makes the same decisions as the numpy reference (which pixels are sky, which
pairs are outliers, where calibration puts near and far), so its percentiles and medians
must be numpy's exactly, not torch's (`torch.quantile` rounds differently, `torch.median`
returns the lower of the two middle values). The order statistics are found on the device
(a sort on a GPU, a selection on the CPU); numpy's own interpolation rule
(`np.percentile`'s "linear": `a + (b - a) * t`, or `b - (b - a) * (1 - t)` for t >= 0.5,
the difference in the input's dtype, the rest in float64) is then applied to those few
numbers on the host.
"""

from __future__ import annotations

import numpy as np
import torch

from ..sampling import PERCENTILE_SAMPLES

# Below this many values a sort is as cheap as selections on the CPU.
SORT_BELOW = 1 << 15


def _kth_values(values: torch.Tensor, ks: list[int]) -> np.ndarray:
    """The ks-th smallest (0-based) of a 1-D tensor of finite values, as a numpy array of its dtype.

    A GPU sorts. The CPU bins the values (monotone, so the bins follow the sorted order),
    counts them, and selects each k inside its own bin only: a few passes over the data
    instead of a sort or a selection per k.
    """
    count = values.numel()
    unique = sorted(set(ks))
    if values.device.type != "cpu" or count <= SORT_BELOW:
        ordered = torch.sort(values).values
        found = dict(zip(unique, ordered[torch.tensor(unique, device=values.device)].cpu().numpy(), strict=True))
    else:
        found = _binned_select(values, unique)
    return np.array([found[k] for k in ks], dtype=_numpy_dtype(values))


def _binned_select(values: torch.Tensor, ks: list[int], bins: int = 4096) -> dict:
    low, high = torch.aminmax(values)
    if not bool(high > low):
        return {k: low.numpy() for k in ks}
    scale = (bins - 1) / (high.to(torch.float64) - low.to(torch.float64)).item()
    index = ((values.to(torch.float64) - low.item()) * scale).to(torch.long).clamp_(0, bins - 1)
    ends = torch.cumsum(torch.bincount(index, minlength=bins), 0)
    found = {}
    for k in ks:
        b = int(torch.searchsorted(ends, k, right=True).item())
        before = int(ends[b - 1].item()) if b > 0 else 0
        inside = values[index == b]
        found[k] = torch.kthvalue(inside, k - before + 1).values.numpy()
    return found


def _numpy_dtype(values: torch.Tensor):
    return {torch.float32: np.float32, torch.float64: np.float64}[values.dtype]


def percentiles(values: torch.Tensor, qs) -> np.ndarray:
    """`np.percentile(values, qs)` (linear) of a non-empty 1-D tensor without NaN: float64 [len(qs)]."""
    count = values.numel()
    if count == 0:
        raise ValueError("percentiles of an empty tensor")
    virtual = (count - 1) * np.true_divide(np.asarray(qs, dtype=np.float64), 100)
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= count - 1
    previous[above] = -1
    following[above] = -1
    below = virtual < 0
    previous[below] = 0
    following[below] = 0
    gamma = virtual - previous
    previous, following = previous.astype(np.intp), following.astype(np.intp)
    found = _kth_values(values, [int(i) % count for i in np.r_[previous, following]])
    a, b = found[: len(previous)], found[len(previous):]
    difference = np.subtract(b, a)
    result = np.asanyarray(np.add(a, difference * gamma))
    np.subtract(b, difference * (1 - gamma), out=result, where=gamma >= 0.5, casting="unsafe",
                dtype=type(result.dtype))
    return result


def median(values: torch.Tensor) -> float:
    """`np.median(values)` of a non-empty 1-D tensor without NaN (the mean of the two middle values)."""
    count = values.numel()
    if count == 0:
        raise ValueError("median of an empty tensor")
    middle = [count // 2 - 1, count // 2] if count % 2 == 0 else [(count - 1) // 2]
    return float(np.mean(_kth_values(values, middle)))


_PICKS: dict[tuple[int, str], torch.Tensor] = {}


def _sample_picks(size: int, wanted: int, device: torch.device) -> torch.Tensor:
    """The first `wanted` of numpy's fixed-seed picks for a map of `size` values, on `device`.

    numpy's generator gives the same first values however many are drawn, so one growing
    array per (size, device) serves every frame's count of valid pixels.
    """
    key = (size, str(device))
    cached = _PICKS.get(key)
    if cached is None or cached.numel() < wanted:
        drawn = np.random.default_rng(0).integers(0, size, size=max(wanted, int(wanted * 1.25)))
        index_type = np.int32 if size < 2**31 else np.int64
        cached = torch.from_numpy(drawn.astype(index_type)).to(device)
        if len(_PICKS) >= 4:
            _PICKS.pop(next(iter(_PICKS)))
        _PICKS[key] = cached
    return cached[:wanted]


def percentile_sample(values: torch.Tensor, mask: torch.Tensor, limit: int = PERCENTILE_SAMPLES) -> torch.Tensor:
    """sampling.percentile_sample on tensors: the same fixed-seed picks, so the same values."""
    flat, ok = values.reshape(-1), mask.reshape(-1)
    count = int(torch.count_nonzero(ok).item())
    if count <= limit:
        return flat if count == flat.numel() else flat[ok]
    if limit != PERCENTILE_SAMPLES:
        raise ValueError("percentile_sample on a device uses the engine's PERCENTILE_SAMPLES")
    picks = _sample_picks(flat.numel(), int(limit * flat.numel() / count), values.device).long()
    chosen = flat.index_select(0, picks)  # index_select: advanced indexing is several times slower on a CPU
    if count == flat.numel():
        return chosen
    return chosen[ok.view(torch.uint8).index_select(0, picks).view(torch.bool)]
