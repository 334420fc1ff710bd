"""Pictures for people: 8-bit colour maps of depth, frames side by side, and their PNG bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float RGB 0..1 as uint8, rounded."""
    return np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


def encode_rgb_png(path: Path, rgb: np.ndarray) -> bytes:
    """The PNG bytes of a uint8 RGB image (`path` only names it in an error)."""
    import cv2

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise OSError(f"cannot encode PNG {path}")
    return encoded.tobytes()


def percentile_level(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """`values` mapped to 0..1 by the 1st..99th percentile of the valid ones (clipped)."""
    from ..sampling import percentile_sample

    valid = np.ones(values.shape, bool) if valid is None else np.asarray(valid, bool)
    low, high = np.percentile(percentile_sample(values, valid), [1.0, 99.0]) if valid.any() else (0.0, 1.0)
    span = high - low if high > low else 1.0
    return np.clip((values - low) / span, 0.0, 1.0)


def inferno(level: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """uint8 RGB inferno colours of `level` in 0..1 (clipped); invalid pixels black."""
    import cv2

    bgr = cv2.applyColorMap(np.round(np.clip(level, 0.0, 1.0) * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    bgr[~valid] = 0
    return bgr[..., ::-1]


def fit_width(image: np.ndarray, max_width: int) -> np.ndarray:
    """`image` area-resized to at most `max_width` columns (unchanged if narrower)."""
    import cv2

    height, width = image.shape[:2]
    if width <= max_width:
        return image
    scale = max_width / width
    return cv2.resize(image, (max_width, max(2, round(height * scale))), interpolation=cv2.INTER_AREA)


def read_rgb_png(path: Path) -> np.ndarray:
    """A PNG as uint8 RGB; OSError naming it if it cannot be read."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read preview {path}")
    return image[..., ::-1]
