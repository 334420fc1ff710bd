"""What a run writes and where: the files of each frame, rendered in memory, then written atomically.

Two layouts name the same outputs (DESIGN.md, "Command line"):

- a still `photo.jpg` writes `OUTDIR/photo.distance.exr`, `photo.disparity.exr`,
  `photo.mask.exr`, `photo.preview.png` (the depth alone, percentile colours),
  `photo.distance.png` / `photo.disparity.png` (png16), `photo.left.png` (a stereo
  still's left eye, at its source's bit depth: the plate of this depth) and the sidecar `photo.json`;
- a video or sequence `clip` writes `OUTDIR/clip/distance_00001.exr`, ... ,
  `preview_00001.png` (colour | depth on a fixed colour range, no flicker),
  `rgbd_00001.png`, the run's `preview.mp4` and the sidecar `clip.json`. A run with
  `--frames A-B` names them `clip_0000A-0000B.json` and `preview_0000A-0000B.mp4`.

Frame numbers are 1-based, five digits (more past 99999).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..media import image_io, previews
from .frame_depth import FrameDepth
from .settings import DepthSettings
from .sources import Source

PREVIEW_MAX_WIDTH = 3840
PER_FRAME_KINDS = ("distance", "disparity", "mask", "preview", "rgbd", "plate")


def frame_tag(number: int) -> str:
    """The number as written in file names: five digits, more past 99999."""
    return f"{number:05d}"


@dataclass(frozen=True)
class OutputLayout:
    """Where one source's files go: `folder`, and the name of each file of a frame."""

    folder: Path
    name: str
    still: bool
    suffix: str = ""  # a ranged sequence run's own sidecar and video: "_0000A-0000B"

    @classmethod
    def for_source(cls, source: Source, out_dir: Path, first: int, last: int | None, ranged: bool) -> OutputLayout:
        if source.still:
            return cls(Path(out_dir), source.name, True)
        suffix = f"_{frame_tag(first)}-{frame_tag(last)}" if ranged and last is not None else ""
        return cls(Path(out_dir) / source.name, source.name, False, suffix)

    def file_name(self, kind: str, number: int, extension: str) -> str:
        """The name of frame `number`'s file of `kind` (distance, mask, preview, rgbd, plate...)."""
        if self.still:
            return f"{self.name}.{'left' if kind == 'plate' else kind}.{extension}"
        return f"{'left' if kind == 'plate' else kind}_{frame_tag(number)}.{extension}"

    def frame_files(self, save, number: int, plate: bool = False) -> list[str]:
        """Names of the per-frame files that `save` asks for (and the plate of a stereo still)."""
        save = set(save)
        names = []
        for kind in ("distance", "disparity"):
            if kind in save:
                names.append(self.file_name(kind, number, "exr"))
                if "png16" in save:
                    names.append(self.file_name(kind, number, "png"))
        for kind, extension in (("mask", "exr"), ("preview", "png"), ("rgbd", "png")):
            if kind in save:
                names.append(self.file_name(kind, number, extension))
        if plate and self.still:
            names.append(self.file_name("plate", number, "png"))
        return names

    @property
    def sidecar(self) -> Path:
        return self.folder / f"{self.name}{self.suffix}.json"

    @property
    def preview_video(self) -> Path | None:
        return None if self.still else self.folder / f"preview{self.suffix}.mp4"

    def is_own_file(self, name: str) -> bool:
        """True for a name this layout could have written (a frame file, a sidecar, a preview video)."""
        if self.still:
            return name.startswith(f"{self.name}.")
        head = name.split("_", 1)[0]
        return head in PER_FRAME_KINDS or head == "left" or name.startswith(self.name) or name.startswith("preview")


@dataclass
class FrameFiles:
    """One frame's files, rendered: EXRs, 16-bit PNGs (values, low, high), 8-bit RGB images and the plate."""

    number: int
    size: tuple[int, int] = (0, 0)  # (width, height) of the depth
    exr: dict[str, np.ndarray] = field(default_factory=dict)
    png16: dict[str, tuple[np.ndarray, float | None, float | None]] = field(default_factory=dict)
    rgb8: dict[str, np.ndarray] = field(default_factory=dict)
    plates: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)  # name: (RGB, bits per channel)
    preview: np.ndarray | None = None  # the frame of the preview video


def _depth_files(files: FrameFiles, layout: OutputLayout, save, depth: FrameDepth, settings: DepthSettings) -> None:
    number = files.number
    if "distance" in save and depth.distance is not None:
        files.exr[layout.file_name("distance", number, "exr")] = depth.distance
        if "png16" in save:
            files.png16[layout.file_name("distance", number, "png")] = (depth.distance, settings.near, settings.far)
    if "disparity" in save:
        files.exr[layout.file_name("disparity", number, "exr")] = depth.disparity
        if "png16" in save:
            low_high = (0.0, 1.0 / settings.near) if settings.calibrated else (None, None)
            files.png16[layout.file_name("disparity", number, "png")] = (depth.disparity, *low_high)
    if "mask" in save:
        files.exr[layout.file_name("mask", number, "exr")] = depth.mask.astype(np.float32)


def _depth_level(depth: FrameDepth, settings: DepthSettings) -> np.ndarray:
    """Nearness in 0..1 on the fixed display range: 1/far -> 0, 1/near -> 1."""
    low, high = 1.0 / settings.display_far, 1.0 / settings.display_near
    return np.clip((depth.disparity - low) / (high - low), 0.0, 1.0)


def _pictures(files: FrameFiles, layout: OutputLayout, save, rgb, depth: FrameDepth, settings: DepthSettings) -> None:
    number = files.number
    if "preview" in save and layout.still:
        files.rgb8[layout.file_name("preview", number, "png")] = image_io.colorize(depth.disparity, depth.mask)
    elif "preview" in save:
        if settings.calibrated:
            mapped = previews.inferno(_depth_level(depth, settings), depth.mask)
        else:
            mapped = image_io.colorize(depth.disparity, depth.mask)
        picture = previews.fit_width(np.concatenate([previews.to_uint8(rgb), mapped], axis=1), PREVIEW_MAX_WIDTH)
        files.rgb8[layout.file_name("preview", number, "png")] = picture
        files.preview = picture
    if "rgbd" in save:
        if settings.calibrated:
            level = _depth_level(depth, settings)
        else:
            level = previews.percentile_level(depth.disparity, depth.mask)
        grey = np.where(depth.mask, np.round(level * 255), 0).astype(np.uint8)
        files.rgb8[layout.file_name("rgbd", number, "png")] = np.concatenate(
            [previews.to_uint8(rgb), np.repeat(grey[..., None], 3, axis=2)], axis=0)


def render_frame(number: int, layout: OutputLayout, save, rgb: np.ndarray, depth: FrameDepth,
                 settings: DepthSettings, plate: int = 0) -> FrameFiles:
    """The files of frame `number` in memory (nothing is written yet); `plate`: the bits per channel
    of a stereo still's left-eye plate (those of its source), 0 for none."""
    files = FrameFiles(number, (depth.disparity.shape[1], depth.disparity.shape[0]))
    _depth_files(files, layout, save, depth, settings)
    _pictures(files, layout, save, rgb, depth, settings)
    if plate and layout.still:
        files.plates[layout.file_name("plate", number, "png")] = (rgb, plate)
    return files


def write_frame(layout: OutputLayout, files: FrameFiles) -> dict[str, tuple[float, float]]:
    """Write a frame's files into the layout's folder; the value range of each 16-bit PNG."""
    folder = layout.folder
    folder.mkdir(parents=True, exist_ok=True)
    for name, values in files.exr.items():
        image_io.write_exr(folder / name, values)
    ranges = {}
    for name, (values, low, high) in files.png16.items():
        ranges[name] = image_io.write_png16(folder / name, values, low, high)
    for name, (rgb, bits) in files.plates.items():
        image_io.write_rgb_png(folder / name, rgb, bits)
    for name, image in files.rgb8.items():
        image_io.write_bytes_atomic(folder / name, previews.encode_rgb_png(folder / name, image))
    return ranges


OUTPUT_MEANINGS = {
    "distance": "float32 metres along each pixel's ray (a photo: along the camera axis); off the mask, far",
    "disparity": "1 / distance where the mask is 1, 0 elsewhere (uncalibrated: the estimator's own output)",
    "mask": "1 valid, 0 invalid (sky, unseen, beyond far); invalid pixels hold far and disparity 0",
    "preview": "inferno colours of inverse distance, near is bright",
    "rgbd": "over-under: top colour, bottom grey 255*(1/d - 1/far)/(1/near - 1/far) (white near, black far or invalid)",
    "plate": "the left eye (RGB at the source's bit depth), the plate of this depth",
}


def describe_outputs(layout: OutputLayout, save, settings: DepthSettings, plate: int,
                     png16_ranges: dict[str, tuple[float, float]]) -> dict:
    """The sidecar's `outputs`: each kind's file (or file pattern) and meaning."""
    number = 1 if layout.still else None
    outputs: dict[str, dict] = {}
    for kind in ("distance", "disparity", "mask", "preview", "rgbd"):
        if kind in save and (kind != "distance" or settings.calibrated):
            extension = "exr" if kind in ("distance", "disparity", "mask") else "png"
            name = layout.file_name(kind, number or 0, extension)
            outputs[kind] = {"file": name if layout.still else name.replace("00000", "#####"),
                             "meaning": OUTPUT_MEANINGS[kind]}
            if kind in ("distance", "disparity") and "png16" in save:
                png = layout.file_name(kind, number or 0, "png")
                entry = {"file": png if layout.still else png.replace("00000", "#####"),
                         "meaning": "16-bit grey, linear from value_at_0 to value_at_65535"}
                low_high = png16_ranges.get(png)
                if low_high is None and (kind == "distance" or settings.calibrated):
                    low_high = (settings.near, settings.far) if kind == "distance" else (0.0, 1.0 / settings.near)
                if low_high is not None:
                    entry.update(value_at_0=low_high[0], value_at_65535=low_high[1])
                else:
                    entry["meaning"] = "16-bit grey, linear over each frame's own min..max"
                outputs[f"{kind}_png16"] = entry
    if plate and layout.still:
        outputs["plate"] = {"file": layout.file_name("plate", 1, "png"), "meaning": OUTPUT_MEANINGS["plate"]}
    return outputs
