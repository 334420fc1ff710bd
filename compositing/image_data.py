"""Footage files as Blender image datablocks: stills, numbered sequences and movies.

A plate or depth path names a still (`photo.png`), one file of a numbered sequence
(`shot/distance_00001.exr`, frame numbers 1-based as DESIGN.md writes them), a printf
pattern of one (`shot/distance_%05d.exr`), or a movie. Sequences and movies play in
step with the scene: scene frame N shows file number N (movie frame N).

`load_plate_and_depth` checks everything a builder needs (files exist, the depth is a
float file, plate and depth have the same aspect) and raises `CompositingInputError`
before anything in the scene changes; images it loaded for a failed check are removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import bpy
import numpy as np

from ..estimators.errors import BadInputError

MOVIE_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg"})
_NUMBERED = re.compile(r"^(?P<stem>.*?)(?P<digits>\d+)(?P<suffix>\.[A-Za-z0-9]+)$")
_PRINTF = re.compile(r"%0?(?P<width>\d*)d")
ASPECT_TOLERANCE = 0.01


class CompositingInputError(BadInputError):
    """A plate or depth file a builder cannot use (missing, wrong kind, wrong shape)."""


@dataclass(frozen=True)
class Footage:
    """Where the frames of a plate or depth live; `source` as Blender's `Image.source`."""

    path: Path  # the still, the movie, or the first file of the sequence
    source: Literal["FILE", "SEQUENCE", "MOVIE"]
    frame_count: int = 1

    def frame_path(self, frame: int) -> Path:
        """The file holding scene frame `frame` (stills: always the same file)."""
        if self.source != "SEQUENCE":
            return self.path
        match = _NUMBERED.match(self.path.name)
        width = len(match["digits"])
        number = min(max(int(frame), 1), self.frame_count)
        return self.path.with_name(f"{match['stem']}{number:0{width}d}{match['suffix']}")


def resolve_footage(path: str | Path) -> Footage:
    """Classify `path` as still, numbered sequence or movie; CompositingInputError if missing."""
    path = Path(bpy.path.abspath(str(path))) if str(path).startswith("//") else Path(path)
    pattern = _PRINTF.search(path.name)
    if pattern:
        width = int(pattern["width"] or 1)
        path = path.with_name(_PRINTF.sub(f"{1:0{width}d}", path.name, count=1))
    if not path.is_file():
        raise CompositingInputError(f"{path}: file not found")
    if path.suffix.lower() in MOVIE_SUFFIXES:
        return Footage(path, "MOVIE")
    match = _NUMBERED.match(path.name)
    if match is None:
        return Footage(path, "FILE")
    numbered = re.compile(
        re.escape(match["stem"]) + rf"(\d{{{len(match['digits'])}}})" + re.escape(match["suffix"]) + "$"
    )
    numbers = sorted(
        int(m.group(1)) for m in map(numbered.match, (p.name for p in path.parent.iterdir())) if m
    )
    if len(numbers) < 2 and pattern is None:
        return Footage(path, "FILE")
    first = path.with_name(f"{match['stem']}{numbers[0]:0{len(match['digits'])}d}{match['suffix']}")
    if numbers[0] != 1:
        raise CompositingInputError(f"{path}: a sequence must be numbered from 1, it starts at {numbers[0]}")
    count = next((i for i, n in enumerate(numbers, 1) if n != i), len(numbers) + 1) - 1
    return Footage(first, "SEQUENCE", count)


@dataclass(frozen=True)
class LoadedFootage:
    """A plate or depth ready for a builder: its image datablock, frames and pixel size."""

    image: bpy.types.Image
    footage: Footage
    width: int
    height: int


def _load(footage: Footage, created: list) -> bpy.types.Image:
    before = set(bpy.data.images)
    try:
        image = bpy.data.images.load(str(footage.path), check_existing=True)
    except RuntimeError as error:
        raise CompositingInputError(f"{footage.path}: Blender cannot read it ({error})") from None
    if image not in before:
        created.append(image)
    return image


def _size(image: bpy.types.Image, footage: Footage) -> tuple[int, int]:
    width, height = image.size
    if width == 0 or height == 0:
        raise CompositingInputError(f"{footage.path}: Blender cannot read an image from it")
    return int(width), int(height)


def load_plate_and_depth(plate_path, depth_path) -> tuple[LoadedFootage, LoadedFootage]:
    """Load (or reuse) the plate and depth images after checking them; raises before any change.

    The plate keeps its colour space (sRGB for ordinary footage); the depth is set to
    Non-Color so the values arrive unchanged. CompositingInputError when a file is
    missing or unreadable, the depth is not a float file (OpenEXR, 16-bit PNG), or the
    aspects differ by more than 1 %.
    """
    plate = resolve_footage(plate_path)
    depth = resolve_footage(depth_path)
    created: list = []
    try:
        plate_image = _load(plate, created)
        depth_image = _load(depth, created)
        plate_w, plate_h = _size(plate_image, plate)
        depth_w, depth_h = _size(depth_image, depth)
        if not depth_image.is_float:
            raise CompositingInputError(
                f"{depth.path}: depth must be a float file (OpenEXR or 16-bit PNG), "
                "this one holds 8-bit values"
            )
        if abs((plate_w / plate_h) / (depth_w / depth_h) - 1.0) > ASPECT_TOLERANCE:
            raise CompositingInputError(
                f"{depth.path}: depth is {depth_w}x{depth_h} but the plate {plate.path} is "
                f"{plate_w}x{plate_h}; they must have the same aspect"
            )
    except CompositingInputError:
        for image in created:
            bpy.data.images.remove(image)
        raise
    depth_image.colorspace_settings.name = "Non-Color"
    # After this, the size reads 0 x 0 until an image user asks for a frame.
    for image, footage in ((plate_image, plate), (depth_image, depth)):
        if footage.source == "SEQUENCE":
            image.source = "SEQUENCE"
    return (LoadedFootage(plate_image, plate, plate_w, plate_h),
            LoadedFootage(depth_image, depth, depth_w, depth_h))


def sync_image_user(image_user, image: bpy.types.Image, footage: Footage) -> None:
    """Make an image user follow the scene frame: scene frame N shows frame N.

    `image_user` is anything with Blender's image-user frame settings: an `ImageUser`
    (texture nodes, textures) or a compositor Image node.
    """
    if footage.source == "FILE":
        return
    count = footage.frame_count if footage.source == "SEQUENCE" else max(image.frame_duration, 1)
    image_user.frame_start = 1
    image_user.frame_offset = 0
    image_user.frame_duration = count
    image_user.use_auto_refresh = True


def read_depth_frame(footage: Footage, frame: int) -> np.ndarray:
    """Float32 [H, W] depth of one frame, top row first, read through Blender.

    CompositingInputError when Blender cannot read the frame's file or it holds 8-bit
    values (each frame of a sequence is checked, not only the first).
    """
    path = footage.frame_path(frame)
    try:
        image = bpy.data.images.load(str(path), check_existing=False)
    except RuntimeError as error:
        raise CompositingInputError(f"{path}: Blender cannot read it ({error})") from None
    try:
        image.colorspace_settings.name = "Non-Color"
        width, height = _size(image, Footage(path, "FILE"))
        if not image.is_float:
            raise CompositingInputError(
                f"{path}: depth must be a float file (OpenEXR or 16-bit PNG), this one holds 8-bit values")
        pixels = np.empty(width * height * image.channels, dtype=np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return pixels.reshape(height, width, -1)[::-1, :, 0].copy()
