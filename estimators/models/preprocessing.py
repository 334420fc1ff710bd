"""The official input preparation and output resampling of each network family.

Depth Anything V2 (`DepthAnythingV2.image2tensor` / `infer_image`): keep the aspect
ratio, scale so that the lower side is `input_size` ("lower_bound"), round both sides to
multiples of 14, OpenCV bicubic, ImageNet mean/std; the prediction goes back to the
image size with bilinear interpolation, corners aligned.

Video Depth Anything (`infer_video_depth`): the same as Depth Anything V2 per frame, except
that frames wider than 16:9 (long side / short side > 1.78) are given a smaller input
size, `round(int(input_size * 1.777 / ratio) / 14) * 14` (`video_input_size`).

MiDaS v3/v3.1 (`midas/model_loader.py` and `run.py`): the same resize code with
`resize_method="minimal"` (scale by whichever of input_size/height and
input_size/width is closer to 1, so small images are upscaled less than "lower_bound"
would; for images larger than the network size both agree), sides rounded to multiples
of 32, OpenCV bicubic, mean = std = 0.5. The Swin/Swin2 and LeViT models do not keep the
aspect ratio: they squash every image to input_size x input_size. The prediction goes
back with bicubic interpolation, corners not aligned.

Both official pipelines resize and normalise in float64 (the image is divided by 255.0)
and cast to float32 last; so does this module, which is what makes `prepare_input`
match the official tensors to about 1e-6.
"""

from __future__ import annotations

from typing import Literal, Protocol

import cv2
import numpy as np

ResizeMethod = Literal["lower_bound", "upper_bound", "minimal"]

class InputSpec(Protocol):
    """The fields of a `registry.ModelSpec` that this module reads."""

    family: str
    input_size: int
    multiple_of: int
    resize_method: str
    keep_aspect_ratio: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _constrain_to_multiple_of(
    value: float, multiple: int, min_value: int = 0, max_value: int | None = None
) -> int:
    # np.round (half to even), then floor/ceil to respect a bound: the official rule.
    result = int(np.round(value / multiple) * multiple)
    if max_value is not None and result > max_value:
        result = int(np.floor(value / multiple) * multiple)
    if result < min_value:
        result = int(np.ceil(value / multiple) * multiple)
    return result


def resized_shape(
    height: int,
    width: int,
    target_height: int,
    target_width: int,
    multiple_of: int,
    method: ResizeMethod,
    keep_aspect_ratio: bool = True,
) -> tuple[int, int]:
    """(height, width) the official `Resize` transform gives an image of `height` x `width`."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height} x {width}")
    scale_height = target_height / height
    scale_width = target_width / width
    if keep_aspect_ratio:
        if method == "lower_bound":
            scale = max(scale_height, scale_width)
        elif method == "upper_bound":
            scale = min(scale_height, scale_width)
        elif method == "minimal":
            closer_width = abs(1 - scale_width) < abs(1 - scale_height)
            scale = scale_width if closer_width else scale_height
        else:
            raise ValueError(f"unknown resize method {method!r}")
        scale_height = scale_width = scale
    if method == "lower_bound":
        bounds_h, bounds_w = {"min_value": target_height}, {"min_value": target_width}
    elif method == "upper_bound":
        bounds_h, bounds_w = {"max_value": target_height}, {"max_value": target_width}
    elif method == "minimal":
        bounds_h = bounds_w = {}
    else:
        raise ValueError(f"unknown resize method {method!r}")
    new_height = _constrain_to_multiple_of(scale_height * height, multiple_of, **bounds_h)
    new_width = _constrain_to_multiple_of(scale_width * width, multiple_of, **bounds_w)
    return new_height, new_width


# Video Depth Anything: the aspect ratio above which infer_video_depth shrinks the input size.
VIDEO_RATIO_LIMIT = 1.78
VIDEO_RATIO_TARGET = 1.777


def video_input_size(height: int, width: int, input_size: int) -> int:
    """The input size `infer_video_depth` uses for frames of `height` x `width` (module docstring)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {height} x {width}")
    ratio = max(height, width) / min(height, width)
    if ratio > VIDEO_RATIO_LIMIT:
        input_size = int(input_size * VIDEO_RATIO_TARGET / ratio)
        input_size = round(input_size / 14) * 14
    return input_size


def network_input_shape(height: int, width: int, spec: InputSpec) -> tuple[int, int]:
    """(H, W) of the network input that `prepare_input` makes from a `height` x `width` image."""
    if spec.family == "stereo":
        raise ValueError(f"model family {spec.family!r} has no network input to prepare")
    size = spec.input_size
    return resized_shape(
        height, width, size, size, spec.multiple_of, spec.resize_method, spec.keep_aspect_ratio
    )


def prepare_input(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The official network input float32 [3, H, W] for an RGB image [h, w, 3].

    `image` is uint8 (0..255) or floating point (0..1). It is resized as the family's
    official code does (see the module docstring) and normalised with `spec.mean`/`spec.std`.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape [h, w, 3], got {image.shape}")
    if image.dtype == np.uint8:
        pixels = image / 255.0
    elif np.issubdtype(image.dtype, np.floating):
        pixels = image.astype(np.float64)
    else:
        raise ValueError(f"expected a uint8 or floating-point image, got dtype {image.dtype}")
    height, width = network_input_shape(image.shape[0], image.shape[1], spec)
    resized = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_CUBIC)
    normalised = (resized - np.asarray(spec.mean)) / np.asarray(spec.std)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)).astype(np.float32)


def resize_output(prediction, size: tuple[int, int], spec: InputSpec):
    """The official final resampling of a raw prediction [N, h, w] (or [h, w]) to `size` (H, W).

    Depth Anything V2: bilinear, align_corners=True; MiDaS: bicubic, align_corners=False.
    A numpy array gives a float32 numpy array, a torch tensor a tensor on its device.
    """
    import torch
    import torch.nn.functional as F

    if spec.family in ("depth-anything-v2", "video-depth-anything"):
        options = {"mode": "bilinear", "align_corners": True}
    elif spec.family == "midas":
        options = {"mode": "bicubic", "align_corners": False}
    else:
        raise ValueError(f"model family {spec.family!r} has no network output to resize")
    height, width = (int(side) for side in size)
    if height <= 0 or width <= 0:
        raise ValueError(f"output size must be positive, got {size!r}")
    is_numpy = not isinstance(prediction, torch.Tensor)
    tensor = torch.from_numpy(np.asarray(prediction, dtype=np.float32)) if is_numpy else prediction
    if tensor.ndim not in (2, 3):
        raise ValueError(
            f"expected a prediction of shape [N, h, w] or [h, w], got {tuple(tensor.shape)}"
        )
    batched = tensor if tensor.ndim == 3 else tensor[None]
    resized = F.interpolate(batched[:, None], size=(height, width), **options)[:, 0]
    if tensor.ndim == 2:
        resized = resized[0]
    return resized.numpy() if is_numpy else resized
