"""Reading images and writing depth files; every write is complete or absent.

Reading: PNG, JPEG, TIFF, WebP, BMP (8 or 16 bit, grey, RGB or RGBA) through OpenCV,
OpenEXR through the OpenEXR package, always to float32 RGB in 0..1 (alpha is dropped,
as the official model code does; EXIF orientation is applied). EXR pixels are
scene-linear by the format's convention, so they are clipped to 0..1 and sRGB-encoded,
which is what the networks were trained on; other formats are taken as stored.

Writing: depth as single-channel float32 OpenEXR, channel "Y" (the OpenEXR name for a
one-channel grey image; Blender 4.2 to 5.0 loads it as a float image with R = G = B =
the stored values, exactly; the Blender side marks it Non-Color), ZIP-compressed
(lossless, so it round-trips bit for bit); 16-bit PNG with a linear value range recorded
in the sidecar; an 8-bit colour-mapped preview (inferno, near is bright); a JSON
sidecar. Each file is written to a temporary name in its folder, then `os.replace`d.
A depth file never holds NaN or Inf: writing one raises ValueError.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import BadInputError

EXR_CHANNEL = "Y"
EXR_SUFFIXES = (".exr",)
PNG16_MAX = 65535


def _umask_at_import() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Changing the umask to read it is a race with other threads creating files (Blender, the
# pipeline's stages): read it once here, at import, and from /proc where Linux has it.
_UMASK_AT_IMPORT = _umask_at_import()


def _umask() -> int:
    """The process umask, read without changing it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return _UMASK_AT_IMPORT


def temporary_owner() -> str:
    """`host@pid`: the owner part of this process's temporary file names (see `atomic_path`)."""
    host = socket.gethostname().split(".")[0].replace("@", "_") or "host"
    return f"{host}@{os.getpid()}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it when the block succeeds, removed if not.

    The temporary is `.NAME.HOST@PID.RANDOM.tmp`: a later run can tell a temporary left by a
    dead process on this host from one another process is writing right now.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{temporary_owner()}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(temporary)
    os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path`, complete or not at all."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


def _read_exr_rgb(path: Path) -> np.ndarray:
    channels = _exr_channels(path)
    names = set(channels)
    if {"R", "G", "B"} <= names:
        rgb = np.stack([channels[c] for c in "RGB"], axis=-1)
    elif len(channels) == 1:
        rgb = np.repeat(next(iter(channels.values()))[..., None], 3, axis=-1)
    elif "Y" in names:
        rgb = np.repeat(channels["Y"][..., None], 3, axis=-1)
    else:
        raise BadInputError(f"cannot read image {path}: EXR channels {sorted(names)} are neither RGB nor grey")
    rgb = np.nan_to_num(rgb.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return _srgb_encode(rgb).astype(np.float32)


def _read_opencv_rgb(path: Path) -> np.ndarray:
    import cv2

    data = np.fromfile(path, dtype=np.uint8)  # imdecode: also for non-ASCII paths on Windows
    image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) if data.size else None
    if image is None:
        raise BadInputError(f"cannot read image {path}: not a readable PNG, JPEG, TIFF, EXR or other image")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.dtype == np.uint8:  # one pass, the same values as astype(float32) / 255
        return np.divide(image, np.float32(255), dtype=np.float32)
    if image.dtype == np.uint16:
        return np.divide(image, np.float32(PNG16_MAX), dtype=np.float32)
    if image.dtype in (np.float32, np.float64):
        return np.clip(np.nan_to_num(image.astype(np.float32)), 0.0, 1.0)
    raise BadInputError(f"cannot read image {path}: pixel type {image.dtype} is not supported")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Float32 [H, W, 3] RGB in 0..1 of an image file; BadInputError naming the file if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"cannot read image {path}: no such file")
    try:
        if path.suffix.lower() in EXR_SUFFIXES:
            image = _read_exr_rgb(path)
        else:
            image = _read_opencv_rgb(path)
    except OSError as error:
        raise BadInputError(f"cannot read image {path}: {error.strerror or error}") from None
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise BadInputError(f"cannot use image {path}: it is only {image.shape[1]}x{image.shape[0]} pixels")
    return np.ascontiguousarray(image, dtype=np.float32)


def _exr_channels(path: Path) -> dict[str, np.ndarray]:
    import OpenEXR

    try:
        with OpenEXR.File(str(path), separate_channels=True) as file:
            return {name: channel.pixels for name, channel in file.channels().items()}
    except (RuntimeError, OSError, ValueError) as error:
        raise BadInputError(f"cannot read EXR {path}: {error}") from None


def _check_depth(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"{what} must be a 2-D [H, W] array, got shape {values.shape}")
    values = values.astype(np.float32, copy=False)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} holds NaN or Inf; invalid pixels must take a finite value and be masked")
    return values


def write_exr(path: str | os.PathLike, values: np.ndarray) -> None:
    """Write [H, W] float32 `values` as a one-channel ("Y") ZIP-compressed OpenEXR."""
    import OpenEXR

    values = np.ascontiguousarray(_check_depth(values, f"EXR {path}"))
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with atomic_path(path) as temporary, OpenEXR.File(header, {EXR_CHANNEL: values}) as file:
        file.write(str(temporary))


def read_exr(path: str | os.PathLike) -> np.ndarray:
    """The float32 [H, W] values of a one-channel EXR written by `write_exr`."""
    path = Path(path)
    channels = _exr_channels(path)
    if len(channels) != 1:
        raise BadInputError(f"EXR {path} has channels {sorted(channels)}, expected one")
    return np.asarray(next(iter(channels.values())), dtype=np.float32)


def _encode_png(path: Path, image: np.ndarray) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"cannot encode PNG {path}")
    return encoded.tobytes()


def write_png16(
    path: str | os.PathLike, values: np.ndarray, low: float | None = None, high: float | None = None
) -> tuple[float, float]:
    """Write `values` as a grey 16-bit PNG, `low` -> 0 and `high` -> 65535 linearly (clipped).

    `low`/`high` default to the minimum and maximum; returns them for the sidecar
    (value = low + (high - low) * pixel / 65535).
    """
    values = _check_depth(values, f"PNG {path}")
    low = float(values.min()) if low is None else float(low)
    high = float(values.max()) if high is None else float(high)
    span = high - low if high > low else 1.0
    scaled = np.clip((values.astype(np.float64) - low) / span, 0.0, 1.0) * PNG16_MAX
    write_bytes_atomic(path, _encode_png(Path(path), np.round(scaled).astype(np.uint16)))
    return low, high


def _colorize_bgr(nearness: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    import cv2

    from ..sampling import percentile_sample

    nearness = _check_depth(nearness, "preview")
    valid = np.ones(nearness.shape, bool) if valid is None else np.asarray(valid, bool)
    if valid.any():
        low, high = np.percentile(percentile_sample(nearness, valid), [1.0, 99.0])
    else:
        low, high = 0.0, 1.0
    span = high - low if high > low else 1.0
    level = np.subtract(nearness, np.float32(low))
    np.maximum(level, 0.0, out=level)
    # Scales, rounds to nearest and saturates at 255 in one pass.
    bgr = cv2.applyColorMap(cv2.convertScaleAbs(level, alpha=255.0 / span), cv2.COLORMAP_INFERNO)
    bgr[~valid] = 0
    return bgr


def bits_per_channel(path: str | os.PathLike) -> int:
    """8 for an 8-bit PNG or a JPEG (read from the header, not decoded), else 16: the precision a
    copy of the image needs to lose nothing."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        return 8
    if suffix == ".png":
        try:
            with open(path, "rb") as file:
                header = file.read(25)  # signature, IHDR length and type, width, height, bit depth
        except OSError:
            return 16
        if len(header) == 25 and header[:8] == b"\x89PNG\r\n\x1a\n" and header[24] <= 8:
            return 8
    return 16


def write_rgb_png(path: str | os.PathLike, rgb: np.ndarray, bits: int = 16) -> None:
    """Write an RGB image [H, W, 3] (float 0..1) as an 8- or 16-bit PNG, atomically."""
    import cv2

    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"{path}: an RGB image must be [H, W, 3], got {rgb.shape}")
    if bits not in (8, 16):
        raise ValueError(f"{path}: a PNG holds 8 or 16 bits per channel, got {bits}")
    top = 255.0 if bits == 8 else 65535.0
    levels = np.round(np.clip(rgb, 0.0, 1.0) * top).astype(np.uint8 if bits == 8 else np.uint16)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(levels, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"{path}: could not encode a PNG")
    write_bytes_atomic(path, encoded.tobytes())


def colorize(nearness: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """uint8 [H, W, 3] RGB inferno rendering of `nearness` (larger = nearer = brighter).

    The 1st..99th percentile of the valid pixels spans the colour map (of a fixed-seed
    random sample of them on large frames, `sampling.percentile_sample`); invalid
    pixels are black.
    """
    return np.ascontiguousarray(_colorize_bgr(nearness, valid)[..., ::-1])


def write_preview(path: str | os.PathLike, nearness: np.ndarray, valid: np.ndarray | None = None) -> None:
    """Write the 8-bit colour-mapped preview PNG of `nearness` (see `colorize`)."""
    write_bytes_atomic(path, _encode_png(Path(path), _colorize_bgr(nearness, valid)))


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write `data` as an indented JSON sidecar (NaN/Inf are refused)."""
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))
