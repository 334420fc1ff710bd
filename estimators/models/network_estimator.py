"""The estimator protocol of DESIGN.md over a registry network, and `load_estimator`.

`NetworkEstimator.predict(images, rays)` runs each image exactly as the official code
does: the family's input preparation (`preprocessing.prepare_input`), the network, and
the official resampling of the output back to the image's pixels
(`preprocessing.resize_output`). It returns the official output: disparity up to scale
and shift for relative models, metric depth in metres for metric models. `rays` are
not used by monocular networks (they see pixels; the 360 path uses the rays to put
views back together) but are checked, so that every estimator takes the same call.

`VideoNetworkEstimator` (Video Depth Anything) adds the clip protocol:
`predict_clip(images [T, N, h, w, 3], rays) -> [T, N, h, w]`, N streams of T <= `clip_window`
frames each, every stream one forward pass of the network. Windowing a long video (the
official keyframes, alignment and blend) is the video layer's business, not the estimator's.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from ..errors import BadInputError
from . import plugins, registry
from .devices import autocast, choose_device, choose_precision, precision_label
from .registry import ModelSpec

DEFAULT_BATCH_SIZE = 4


def check_images_and_rays(images: np.ndarray, rays: np.ndarray | None) -> np.ndarray:
    """`images` as float32 [N, h, w, 3]; ValueError if it or `rays` has another shape."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3 or min(images.shape[:3]) < 1:
        raise ValueError(f"images must be float32 [N, h, w, 3] RGB, got shape {images.shape}")
    if rays is not None and np.shape(rays) != images.shape:
        raise ValueError(f"rays must have the images' shape {images.shape}, got {np.shape(rays)}")
    return images.astype(np.float32, copy=False)


class NetworkEstimator:
    """A registry network behind the estimator protocol (`kind`, `predict`)."""

    uses_rays = False  # a monocular network sees only pixels; callers may pass rays=None

    def __init__(self, spec: ModelSpec, network, device, dtype=None, batch_size: int = DEFAULT_BATCH_SIZE):
        import torch

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.spec = spec
        self.device = device
        self.dtype = torch.float32 if dtype is None else dtype
        self.batch_size = batch_size
        self.network = network.to(device).eval()

    @property
    def kind(self) -> str:
        """relative-disparity or metric-depth (planar metres), from the spec."""
        return self.spec.kind

    @property
    def name(self) -> str:
        """The registry name of the model."""
        return self.spec.name

    @property
    def native_size(self) -> int:
        """The network's native input side (518 for Depth Anything V2); 360 views default to at most this."""
        return self.spec.input_size

    @property
    def max_depth(self) -> float | None:
        """Metric models: the head's range in metres (outputs near it mean "beyond range")."""
        return self.spec.max_depth

    @property
    def precision(self) -> str:
        """fp32, fp16 or bf16."""
        return precision_label(self.dtype)

    def predict(self, images: np.ndarray, rays: np.ndarray | None = None) -> np.ndarray:
        """Official output float32 [N, h, w] for RGB images float32 [N, h, w, 3] in 0..1."""
        import torch

        from .preprocessing import prepare_input, resize_output

        images = check_images_and_rays(images, rays)
        count, height, width = images.shape[:3]
        result = np.empty((count, height, width), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, count, self.batch_size):
                stop = min(start + self.batch_size, count)
                batch = np.stack([prepare_input(image, self.spec) for image in images[start:stop]])
                tensor = torch.from_numpy(batch).to(self.device)
                with autocast(self.device, self.dtype):
                    raw = self.network(tensor)
                resized = resize_output(raw.float(), (height, width), self.spec)
                result[start:stop] = resized.cpu().numpy()
        return result

    def predict_tensor(self, images):
        """`predict` for RGB images already on the network's device: tensor [N, h, w, 3] (0..1) ->
        the official output float32 [N, h, w] there, with no trip through the host.

        The input preparation is the official one done with torch: a view of another size
        than the network's input is resized with torch's bicubic (OpenCV's, on the host path;
        the 360 trip's views have the network's own size by default, so neither runs), then
        normalised in float32 (the host path: float64, then float32; they differ in the last bit).
        """
        import torch
        import torch.nn.functional as F

        from .preprocessing import network_input_shape, resize_output

        count, height, width = images.shape[:3]
        size = network_input_shape(height, width, self.spec)
        tensor = images.to(self.device, torch.float32).permute(0, 3, 1, 2)
        if size != (height, width):
            tensor = F.interpolate(tensor, size=size, mode="bicubic", align_corners=False)
        mean = torch.tensor(self.spec.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        tensor = ((tensor - mean) / std).contiguous()
        with torch.no_grad(), autocast(self.device, self.dtype):
            raw = self.network(tensor)
        with torch.no_grad():
            return resize_output(raw.float(), (height, width), self.spec)


def check_clip(images: np.ndarray, rays: np.ndarray | None, window: int) -> np.ndarray:
    """`images` as float32 [T, N, h, w, 3] with 1 <= T <= window; ValueError otherwise."""
    images = np.asarray(images)
    if images.ndim != 5 or images.shape[4] != 3 or min(images.shape[:4]) < 1:
        raise ValueError(f"clip images must be float32 [T, N, h, w, 3] RGB, got shape {images.shape}")
    if images.shape[0] > window:
        raise ValueError(f"a clip holds at most {window} frames, got {images.shape[0]}")
    if rays is not None and np.shape(rays) != images.shape:
        raise ValueError(f"rays must have the clip's shape {images.shape}, got {np.shape(rays)}")
    return images.astype(np.float32, copy=False)


class VideoNetworkEstimator(NetworkEstimator):
    """A registry video network (Video Depth Anything): `predict` and `predict_clip`.

    Each frame is prepared as `infer_video_depth` does: the official resize with the input
    size `preprocessing.video_input_size` gives for the frame's shape (from `input_size`,
    518 by default, the official `--input_size`), ImageNet normalisation; the output goes
    back to the frame's pixels bilinearly, corners aligned.
    """

    def __init__(self, spec: ModelSpec, network, device, dtype=None, input_size: int | None = None):
        super().__init__(spec, network, device, dtype, batch_size=1)
        self.input_size = int(input_size or spec.input_size)

    @property
    def clip_window(self) -> int:
        """The most frames one clip may hold (32 for Video Depth Anything)."""
        return self.spec.clip_window

    def _stream(self, frames: np.ndarray):
        """One stream's frames float32 [T, h, w, 3] -> the network input tensor [1, T, 3, H, W]."""
        import torch

        from .preprocessing import prepare_input, video_input_size

        size = video_input_size(frames.shape[1], frames.shape[2], self.input_size)
        spec = dataclasses.replace(self.spec, input_size=size)
        return torch.from_numpy(np.stack([prepare_input(frame, spec) for frame in frames]))[None]

    def predict_clip(self, images: np.ndarray, rays: np.ndarray | None = None) -> np.ndarray:
        """Official output float32 [T, N, h, w] of N streams of T frames (float32 [T, N, h, w, 3] RGB 0..1)."""
        import torch

        from .preprocessing import resize_output

        images = check_clip(images, rays, self.clip_window)
        frames, streams, height, width = images.shape[:4]
        result = np.empty((frames, streams, height, width), dtype=np.float32)
        with torch.inference_mode():
            for n in range(streams):  # one stream at a time: memory of one window
                tensor = self._stream(images[:, n]).to(self.device)
                with autocast(self.device, self.dtype):
                    raw = self.network(tensor)[0]
                result[:, n] = resize_output(raw.float(), (height, width), self.spec).cpu().numpy()
        return result

    def predict(self, images: np.ndarray, rays: np.ndarray | None = None) -> np.ndarray:
        """Each image alone, as a clip of one frame: float32 [N, h, w] (the video adapters use `predict_clip`)."""
        images = check_images_and_rays(images, rays)
        return self.predict_clip(images[None])[0]


def load_estimator(
    name: str,
    models_dir: str | os.PathLike | None = None,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    input_size: int | None = None,
):
    """The estimator called `name`: a registry model with its official weights, or a plug-in.

    `python:FILE.py:FACTORY` loads a plug-in (device, precision and input size are its own
    business). `input_size` replaces the network's input side (None: the model's own).
    Raises BadInputError (unknown name, a model without a network, bad device),
    WeightsMissingError or WeightsInvalidError.
    """
    if plugins.is_plugin_reference(name):
        return plugins.load_plugin(name)
    try:
        spec = registry.get(name)
    except ValueError as error:
        raise BadInputError(str(error)) from None
    if not spec.architecture:
        raise BadInputError(f"model {name!r} is not a network: it has no monocular estimator")
    from .weights import existing_checkpoint, load_network

    existing_checkpoint(spec, models_dir)  # a missing file is reported before torch is imported
    torch_device = choose_device(device)
    dtype = choose_precision(torch_device, precision)
    network = load_network(spec, models_dir)
    if input_size is not None:
        spec = dataclasses.replace(spec, input_size=int(input_size))
    if spec.clip_window:
        return VideoNetworkEstimator(spec, network, torch_device, dtype)
    return NetworkEstimator(spec, network, torch_device, dtype, batch_size)
