"""Streaming frames out of videos and numbered image sequences, 1-based, one at a time.

Sources (DESIGN.md, "Command line"):

- a video file (`.mp4`, `.mov`, `.mkv`, ...; H.264, H.265 and whatever else the FFmpeg
  bundled with PyAV decodes; 8-bit and 10/12-bit): frames are numbered 1, 2, 3, ... in
  the order the decoder delivers them (presentation order), never by timestamp. A
  variable-frame-rate file is detected (`SourceInfo.variable_frame_rate`) and still gives
  every decoded frame exactly once: no frame is dropped or duplicated to fake a constant
  rate, so frame n is the n-th picture of the file.
- an image sequence, as a printf pattern (`shot/frame_%05d.png`) or as a folder holding
  one run of numbered images (`shot/`): frame 1 is the lowest-numbered file, and the
  numbers must run without a gap (a gap is an error naming the missing file).

`read_frames` decodes lazily: memory does not grow with the length of the source. A
range `first..last` of a video is reached by decoding (not converting) the frames
before it, which is exact for every file, unlike seeking by timestamp. A video that ends
before its header says (truncated, damaged) raises BadInputError naming the file and
the last good frame.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import BadInputError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".webp", ".bmp")
# Packets read (not decoded) when probing a video's timestamps for a variable frame rate.
PROBE_PACKETS = 300
# Frame intervals may differ by this fraction (plus one timestamp tick) and still be constant.
VFR_TOLERANCE = 0.1
REORDER_DEPTH = 32
_PRINTF = re.compile(r"%(0?)(\d*)d")
_NUMBERED = re.compile(r"^(.*?)(\d+)$")


@dataclass(frozen=True)
class FrameRange:
    """Frames `first`..`last`, 1-based and inclusive; `last` None means to the end."""

    first: int = 1
    last: int | None = None

    def __str__(self) -> str:
        return f"{self.first}-{'' if self.last is None else self.last}"


def parse_frame_range(text: str) -> FrameRange:
    """`A-B` (or `A-` to the end, or `N` for one frame) as a FrameRange; BadInputError if malformed."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:(-)\s*(\d*)\s*)?", text or "")
    if not match:
        raise BadInputError(f"--frames {text!r} is not of the form A-B (1-based, inclusive)")
    first = int(match.group(1))
    last = first if match.group(2) is None else (int(match.group(3)) if match.group(3) else None)
    if first < 1:
        raise BadInputError(f"--frames {text!r}: frames are numbered from 1")
    if last is not None and last < first:
        raise BadInputError(f"--frames {text!r}: the last frame comes before the first")
    return FrameRange(first, last)


@dataclass(frozen=True)
class SourceInfo:
    """What a source is, found without decoding it.

    `name`: the output folder name (`clip.mp4`, `clip/` and `clip_%05d.png` all give
    `clip`). `frame_count`: exact for sequences and for videos whose container counts
    frames, else estimated from the duration (`frame_count_exact` False), or None.
    `fps`: nominal (average) rate, None for image sequences. `files`: a sequence's files,
    frame 1 first. `notes`: warnings to show the user (a variable frame rate, say).
    """

    path: Path
    kind: Literal["video", "sequence"]
    name: str
    width: int
    height: int
    frame_count: int | None
    frame_count_exact: bool
    fps: float | None = None
    variable_frame_rate: bool = False
    bit_depth: int = 8
    codec: str | None = None
    duration_s: float | None = None
    files: tuple[Path, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> dict:
        """A JSON-ready summary for the sidecar."""
        summary = {
            "path": str(self.path), "kind": self.kind, "width": self.width, "height": self.height,
            "frame_count": self.frame_count, "frame_count_exact": self.frame_count_exact,
            "numbering": "decode order, 1-based" if self.kind == "video" else "file order, 1-based",
        }
        if self.kind == "video":
            summary.update(fps=self.fps, variable_frame_rate=self.variable_frame_rate,
                           bit_depth=self.bit_depth, codec=self.codec)
        else:
            summary.update(first_file=self.files[0].name, last_file=self.files[-1].name)
        return summary


def is_video_path(path: str | os.PathLike) -> bool:
    """True if `path` names a video file by its suffix."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_sequence_path(path: str | os.PathLike) -> bool:
    """True if `path` is a printf pattern or a folder (an image sequence)."""
    return bool(_PRINTF.search(Path(path).name)) or Path(path).is_dir()


def probe(source: str | os.PathLike, *, sizes: bool = True) -> SourceInfo:
    """Describe a video file, a printf pattern or a folder of numbered images. `sizes` False: an image
    sequence is listed without decoding a file (width and height 0; for Blender's own Python, which
    may lack OpenCV)."""
    path = Path(source)
    if _PRINTF.search(path.name):
        return _probe_pattern(path, sizes)
    if path.is_dir():
        return _probe_folder(path, sizes)
    if not path.exists():
        raise BadInputError(f"input {path} does not exist")
    if not is_video_path(path):
        raise BadInputError(
            f"{path} is not a video ({', '.join(VIDEO_SUFFIXES)}), an image folder or a printf pattern"
        )
    return _probe_video(path)


# --- image sequences -------------------------------------------------------------------


def _sequence_name(prefix: str, folder: Path) -> str:
    name = prefix.rstrip("_-. ")
    return name or folder.resolve().name


def _check_contiguous(numbered: list[tuple[int, Path]], render: Callable[[int], str], what: str) -> None:
    numbers = [n for n, _ in numbered]
    for position, (previous, current) in enumerate(zip(numbers, numbers[1:], strict=False), start=1):
        if current == previous:
            raise BadInputError(f"image sequence {what}: two files carry the number {current}")
        if current != previous + 1:
            raise BadInputError(
                f"image sequence {what}: {render(previous + 1)} is missing (frame {position + 1} of the "
                f"sequence, between {numbered[position - 1][1].name} and {numbered[position][1].name})"
            )


def _probe_pattern(pattern: Path, sizes: bool = True) -> SourceInfo:
    match = _PRINTF.search(pattern.name)
    prefix, suffix = pattern.name[: match.start()], pattern.name[match.end() :]
    if _PRINTF.search(suffix) or _PRINTF.search(prefix):
        raise BadInputError(f"image sequence {pattern}: the pattern has more than one %d field")
    folder = pattern.parent
    width = int(match.group(2) or 0)
    if not folder.is_dir():
        raise BadInputError(f"image sequence {pattern}: folder {folder} does not exist")
    regex = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix) + r"$")
    numbered = []
    for entry in os.scandir(folder):
        found = regex.match(entry.name)
        if found and (pattern.name % int(found.group(1))) == entry.name:
            numbered.append((int(found.group(1)), folder / entry.name))
    if not numbered:
        raise BadInputError(f"image sequence {pattern}: no file matches the pattern")
    numbered.sort()
    template = pattern.name if width else prefix + "%d" + suffix
    _check_contiguous(numbered, lambda n: template % n, str(pattern))
    return _sequence_info(pattern, _sequence_name(prefix, folder), numbered, sizes)


def _probe_folder(folder: Path, sizes: bool = True) -> SourceInfo:
    groups: dict[tuple[str, str], list[tuple[int, Path]]] = {}
    for entry in os.scandir(folder):
        stem, suffix = os.path.splitext(entry.name)
        if entry.name.startswith(".") or suffix.lower() not in IMAGE_SUFFIXES or not entry.is_file():
            continue
        found = _NUMBERED.match(stem)
        if found:
            groups.setdefault((found.group(1), suffix), []).append((int(found.group(2)), folder / entry.name))
    if not groups:
        raise BadInputError(f"image sequence {folder}: the folder holds no numbered images")
    if len(groups) > 1:
        runs = ", ".join(f"{prefix}#{suffix}" for prefix, suffix in sorted(groups))
        raise BadInputError(
            f"image sequence {folder}: the folder holds several numbered runs ({runs}); "
            f"name one with a printf pattern such as {folder / 'frame_%05d.png'}"
        )
    (prefix, suffix), numbered = next(iter(groups.items()))
    numbered.sort()
    digits = {len(p.stem) - len(prefix) for _, p in numbered}
    pad = min(digits) if len(digits) == 1 else 0
    _check_contiguous(numbered, lambda n: f"{prefix}{n:0{pad}d}{suffix}", str(folder))
    return _sequence_info(folder, folder.resolve().name, numbered, sizes)


def _sequence_info(path: Path, name: str, numbered: list[tuple[int, Path]], sizes: bool = True) -> SourceInfo:
    from .image_io import read_image

    height, width = read_image(numbered[0][1]).shape[:2] if sizes else (0, 0)
    return SourceInfo(
        path=path, kind="sequence", name=name, width=width, height=height,
        frame_count=len(numbered), frame_count_exact=True, files=tuple(p for _, p in numbered),
    )


# --- videos ------------------------------------------------------------------------------


def _open_container(path: Path):
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise BadInputError(
            f"cannot open video {path}: {_ffmpeg_message(error)} (no frame could be decoded; "
            f"an MP4 cut short loses its index and cannot be read at all)"
        ) from None
    if not container.streams.video:
        container.close()
        raise BadInputError(f"video {path} has no video stream")
    return container


def _ffmpeg_message(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def _probe_video(path: Path) -> SourceInfo:
    with _open_container(path) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        if not context.width or not context.height:
            raise BadInputError(f"video {path}: the stream has no picture size (damaged header?)")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else None
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        count, exact = (int(stream.frames), True) if stream.frames else (None, False)
        if count is None and duration and fps:
            count = max(1, round(duration * fps))
        pix = context.format
        bit_depth = max((c.bits for c in pix.components), default=8) if pix is not None else 8
        intervals = _packet_intervals(container, stream)
    vfr = _is_variable(intervals, float(stream.time_base) if stream.time_base else 0.0)
    notes = ()
    if vfr:
        notes = (
            f"{path} has a variable frame rate (frame intervals {min(intervals) * 1000:.0f}-"
            f"{max(intervals) * 1000:.0f} ms): frames are numbered in decode order (1, 2, 3, ...), "
            f"not by time, and every frame is kept",
        )
    return SourceInfo(
        path=path, kind="video", name=path.stem, width=context.width, height=context.height,
        frame_count=count, frame_count_exact=exact, fps=fps, variable_frame_rate=vfr,
        bit_depth=bit_depth, codec=context.name, duration_s=duration, notes=notes,
    )


def _packet_intervals(container, stream) -> list[float]:
    """Seconds between the first PROBE_PACKETS presentation times (packets only, no decoding)."""
    import av

    times = []
    try:
        for packet in container.demux(stream):
            if packet.pts is not None:
                times.append(float(packet.pts * packet.time_base))
            if len(times) >= PROBE_PACKETS:
                break
    except av.error.FFmpegError:
        pass  # a damaged tail is reported by read_frames, with the last good frame
    times.sort()
    if len(times) >= PROBE_PACKETS:
        # frames reordered (B-frames) may have their packets just past the probe: drop the tail
        times = times[: -REORDER_DEPTH]
    return [b - a for a, b in zip(times, times[1:], strict=False) if b > a]


def _is_variable(intervals: list[float], tick: float) -> bool:
    if len(intervals) < 2:
        return False
    low, high = min(intervals), max(intervals)
    return high - low > VFR_TOLERANCE * low + tick


def _frame_to_rgb(frame, bit_depth: int) -> np.ndarray:
    if bit_depth > 8:
        # planar 16-bit: PyAV 16's packed rgb48le conversion garbles some 10-bit frames
        return frame.to_ndarray(format="gbrp16le").astype(np.float32) / np.float32(65535)
    return frame.to_ndarray(format="rgb24").astype(np.float32) / np.float32(255)


def _read_video(info: SourceInfo, first: int, last: int | None, wanted: Callable[[int], bool]):
    import av

    path = info.path
    number = 0
    last_start = None  # seconds: presentation time of the last good frame
    longest = 1.0 / info.fps if info.fps else 0.0  # the longest frame interval seen
    with _open_container(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        decoded = container.decode(stream)
        while last is None or number < last:
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError) as error:
                raise BadInputError(
                    f"video {path} is damaged after frame {number} (the last good frame): "
                    f"{_ffmpeg_message(error)}"
                ) from None
            number += 1
            if frame.pts is not None and frame.time_base is not None:
                start = float(frame.pts * frame.time_base)
                if last_start is not None and start > last_start:
                    longest = max(longest, start - last_start)
                last_start = start
            if number >= first and wanted(number):
                yield number, _frame_to_rgb(frame, info.bit_depth)
    if last is None or number < last:
        _check_complete(info, number, last_start, longest)
    if last is not None and number < last:
        raise BadInputError(f"video {path} has {number} frames; frames {first}-{last} were asked for")


def _check_complete(info: SourceInfo, decoded: int, last_start: float | None, longest: float) -> None:
    """BadInputError if the video ended before its header says it should (truncated)."""
    short_by_count = bool(info.frame_count_exact and info.frame_count and decoded < info.frame_count)
    short_by_time = (
        info.duration_s is not None and last_start is not None and longest > 0
        and last_start + longest < info.duration_s - 1.5 * longest
    )
    if decoded == 0 or short_by_count or short_by_time:
        if info.frame_count:
            expected = f"{'' if info.frame_count_exact else 'about '}{info.frame_count} frames"
        else:
            expected = f"{info.duration_s or 0:.2f} s"
        raise BadInputError(
            f"video {info.path} ends early: frame {decoded} is the last good frame, but its header "
            f"says it holds {expected} (the file is probably truncated)"
        )


def _read_sequence(info: SourceInfo, first: int, last: int | None, wanted: Callable[[int], bool]):
    from .image_io import read_image

    files = info.files
    stop = len(files) if last is None else last
    if stop > len(files):
        raise BadInputError(
            f"image sequence {info.path} has {len(files)} frames; frames {first}-{last} were asked for"
        )
    for number in range(first, stop + 1):
        if not wanted(number):
            continue
        image = read_image(files[number - 1])
        if image.shape[:2] != (info.height, info.width):
            raise BadInputError(
                f"image sequence {info.path}: {files[number - 1].name} is {image.shape[1]}x{image.shape[0]}, "
                f"the sequence is {info.width}x{info.height}"
            )
        yield number, image


def read_frames(
    source: SourceInfo | str | os.PathLike,
    first: int = 1,
    last: int | None = None,
    *,
    wanted: Callable[[int], bool] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame number, float32 [H, W, 3] RGB 0..1) for frames `first`..`last` (1-based, inclusive).

    `last` None reads to the end (and checks the video was not cut short). `wanted(n)`
    False skips frame n without converting it. Raises BadInputError naming the file and
    the last good frame for a damaged video, and if `last` is past the end.
    """
    info = source if isinstance(source, SourceInfo) else probe(source)
    if first < 1 or (last is not None and last < first):
        raise BadInputError(f"frames {first}-{last} of {info.path}: not a 1-based inclusive range")
    wanted = wanted or (lambda _number: True)
    if info.kind == "video":
        return _read_video(info, first, last, wanted)
    return _read_sequence(info, first, last, wanted)
