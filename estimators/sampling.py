"""Percentiles of large maps from a fixed-seed random sample (shared by calibration and previews)."""

from __future__ import annotations

import numpy as np

# Most valid pixels percentiles are taken over: above it, a fixed-seed random sample of about
# this many. Exact percentiles cost most of a second at 8K, and the sample's 2nd percentile
# lies within the true 1.99th..2.01st. (Random, not a regular stride: a stride can beat
# against the regular structure of an upsampled map.)
PERCENTILE_SAMPLES = 1 << 21


def percentile_sample(values: np.ndarray, mask: np.ndarray, limit: int = PERCENTILE_SAMPLES) -> np.ndarray:
    """The values where `mask`, flat; above `limit` of them, a fixed-seed random sample of about `limit`."""
    flat, ok = values.reshape(-1), mask.reshape(-1)
    count = int(np.count_nonzero(ok))
    if count <= limit:
        return flat if count == flat.size else flat[ok]
    picks = np.random.default_rng(0).integers(0, flat.size, size=int(limit * flat.size / count))
    return flat[picks] if count == flat.size else flat[picks][ok[picks]]
