"""Plug-in estimators, `python:FILE.py:FACTORY`, and the checks every estimator passes.

`FACTORY()` returns an object with `kind` ("relative-disparity", "metric-depth" or
"metric-distance", see ESTIMATOR_KINDS)
and `predict(images, rays) -> ndarray`: images float32 [N, h, w, 3] RGB in 0..1, rays
float32 [N, h, w, 3] unit directions, result float32 [N, h, w] (DESIGN.md). The file is
imported from its path (it need not be on sys.path); it is the user's own code, run
because they named it.

The clip protocol (optional, what video networks offer): `predict_clip(images, rays) ->
ndarray` with images float32 [T, N, h, w, 3] (N streams of T consecutive frames; a 360
video's views, or one perspective video), rays [T, N, h, w, 3], result [T, N, h, w] of the
same kind as `predict`; T <= `clip_window` (optional attribute, default and least 32:
the windows are Video Depth Anything's). An estimator with `predict_clip` is run on videos
through windows of 32 frames (video.clip_windows); each call may give each stream its own
scale and shift (a relative network is consistent within a clip, not across clips or streams).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import BadInputError

PLUGIN_PREFIX = "python:"
# What `predict` returns: "relative-disparity", inverse planar depth up to scale and shift
# (Depth Anything V2, MiDaS); "metric-depth", metres along the view's axis (depth to the
# image plane: the metric Depth Anything V2 models, as they were trained); "metric-distance",
# metres along each pixel's ray (a plug-in that measures distance, the stereo matcher).
ESTIMATOR_KINDS = ("relative-disparity", "metric-depth", "metric-distance")
METRIC_KINDS = ("metric-depth", "metric-distance")
CLIP_WINDOW = 32  # the frames of one window of the clip protocol (Video Depth Anything's)


def is_metric(kind: str) -> bool:
    """True for metres (planar depth or ray distance), False for relative disparity."""
    return kind in METRIC_KINDS


def is_plugin_reference(name: str) -> bool:
    """True for a `python:FILE.py:FACTORY` model name."""
    return name.startswith(PLUGIN_PREFIX)


def parse_plugin_reference(reference: str) -> tuple[Path, str]:
    """(file, factory name) of `python:FILE.py:FACTORY`; BadInputError if malformed."""
    body = reference[len(PLUGIN_PREFIX) :] if is_plugin_reference(reference) else reference
    file, sep, factory = body.rpartition(":")
    if not sep or not file or not factory.isidentifier():
        raise BadInputError(
            f"plug-in model {reference!r} is not of the form python:FILE.py:FACTORY"
        )
    return Path(file).expanduser(), factory


def validate_estimator(estimator, source: str):
    """Return `estimator` if it has a known `kind` and a callable `predict`; BadInputError if not."""
    kind = getattr(estimator, "kind", None)
    if kind not in ESTIMATOR_KINDS:
        raise BadInputError(
            f"{source}: the estimator's kind is {kind!r}, expected one of {', '.join(ESTIMATOR_KINDS)}"
        )
    if not callable(getattr(estimator, "predict", None)):
        raise BadInputError(f"{source}: the estimator has no callable predict(images, rays)")
    clip = getattr(estimator, "predict_clip", None)
    if clip is not None and not callable(clip):
        raise BadInputError(f"{source}: the estimator's predict_clip is not callable")
    window = getattr(estimator, "clip_window", CLIP_WINDOW)
    if clip is not None and (not isinstance(window, int) or window < CLIP_WINDOW):
        raise BadInputError(f"{source}: clip_window must be an integer of at least {CLIP_WINDOW} "
                            f"(the windows of the clip protocol hold {CLIP_WINDOW} frames), got {window!r}")
    return estimator


def has_clip(estimator) -> bool:
    """True for an estimator that offers the clip protocol (`predict_clip`)."""
    return callable(getattr(estimator, "predict_clip", None))


def load_plugin(reference: str):
    """The estimator returned by FACTORY() of `python:FILE.py:FACTORY`, validated."""
    path, factory_name = parse_plugin_reference(reference)
    if not path.is_file():
        raise BadInputError(f"plug-in file {path} does not exist")
    module_name = f"depth360_plugin_{abs(hash(os.fspath(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise BadInputError(f"plug-in file {path} cannot be imported as Python (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the user's code: any failure is reported as theirs
        sys.modules.pop(module_name, None)
        raise BadInputError(f"plug-in file {path} failed to import: {type(error).__name__}: {error}") from error
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise BadInputError(f"plug-in file {path} has no callable {factory_name!r}")
    try:
        estimator = factory()
    except Exception as error:  # the user's code, as above
        raise BadInputError(f"{reference}: {factory_name}() failed: {type(error).__name__}: {error}") from error
    return validate_estimator(estimator, reference)


def check_clip_prediction(prediction, images: np.ndarray, source: str) -> np.ndarray:
    """`prediction` as float32 [T, N, h, w] matching clip `images` [T, N, h, w, 3]; BadInputError otherwise."""
    prediction = np.asarray(prediction)
    expected = images.shape[:4]
    if prediction.shape != expected:
        raise BadInputError(
            f"{source}: predict_clip returned shape {prediction.shape}, expected {expected} ([T, N, h, w])"
        )
    if not np.issubdtype(prediction.dtype, np.floating):
        raise BadInputError(f"{source}: predict_clip returned dtype {prediction.dtype}, expected float32")
    return prediction.astype(np.float32, copy=False)


def check_prediction(prediction, images: np.ndarray, source: str) -> np.ndarray:
    """`prediction` as float32 [N, h, w] matching `images` [N, h, w, 3]; BadInputError otherwise."""
    prediction = np.asarray(prediction)
    expected = images.shape[:3]
    if prediction.shape != expected:
        raise BadInputError(
            f"{source}: predict returned shape {prediction.shape}, expected {expected} ([N, h, w])"
        )
    if not np.issubdtype(prediction.dtype, np.floating):
        raise BadInputError(f"{source}: predict returned dtype {prediction.dtype}, expected float32")
    return prediction.astype(np.float32, copy=False)
