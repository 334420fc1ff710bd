"""The inputs of a run: still images, videos and image sequences, all read as numbered frames.

A still is a one-frame source: its frame 1 is the image. Videos and sequences are
probed up front (media.video_io) so that a bad file fails before any work; a still is
decoded once, by the pipeline's read stage, and checked there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import BadInputError
from ..media import image_io, video_io


@dataclass(frozen=True)
class Source:
    """One input. `name`: what its outputs are named after (a still's stem, a video's or
    sequence's folder name). `info`: the probe of a video or sequence (None for a still)."""

    path: Path
    kind: Literal["still", "video", "sequence"]
    name: str
    info: video_io.SourceInfo | None = None

    @property
    def still(self) -> bool:
        return self.kind == "still"

    @property
    def frame_count(self) -> int | None:
        """Frames in the source (1 for a still; None where a video does not say)."""
        return 1 if self.info is None else self.info.frame_count

    @property
    def frame_count_exact(self) -> bool:
        return self.info is None or self.info.frame_count_exact

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of its frames where known before decoding (not for a still)."""
        return None if self.info is None else (self.info.width, self.info.height)

    @property
    def fps(self) -> float | None:
        return None if self.info is None else self.info.fps

    @property
    def notes(self) -> tuple[str, ...]:
        return () if self.info is None else self.info.notes

    def frames(self, first: int, last: int | None, wanted: Callable[[int], bool] | None = None,
               workers: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """(number, float32 RGB [H, W, 3] 0..1) for frames first..last; BadInputError naming the file.

        `workers` > 0: an image sequence's files are decoded that many at a time on worker
        threads, ahead of the frame being yielded (in order; an error where its frame comes).
        A video decodes in order (PyAV's own frame threads).
        """
        if self.kind == "sequence" and workers > 0:
            yield from _decoded_ahead(self.info, first, last, wanted, workers)
        elif self.info is not None:
            yield from video_io.read_frames(self.info, first, last, wanted=wanted)
        elif first == 1 and (wanted is None or wanted(1)):
            yield 1, image_io.read_image(self.path)

    def describe(self) -> dict:
        """A JSON-ready summary for the sidecar."""
        if self.info is not None:
            return self.info.describe()
        return {"path": str(self.path), "kind": "still", "frame_count": 1}

    def identity(self) -> dict:
        """What tells this input from another with the same name (compared on resume)."""
        if self.kind == "sequence":
            files = self.info.files
            return {"frames": len(files), "first_file": files[0].name, "last_file": files[-1].name,
                    "width": self.info.width, "height": self.info.height}
        stat = os.stat(self.path)
        return {"bytes": stat.st_size, "modified_ns": stat.st_mtime_ns}


def _decoded_ahead(info: video_io.SourceInfo, first: int, last: int | None, wanted, workers: int):
    """A sequence's frames decoded on `workers` threads, at most 2 x workers ahead, yielded in order."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    stop = len(info.files) if last is None else last
    numbers = (n for n in range(first, stop + 1) if wanted is None or wanted(n))
    if last is not None and last > len(info.files):  # the reader's own message for a range past the end
        yield from video_io.read_frames(info, first, last, wanted=wanted)
        return

    def one(number: int) -> np.ndarray:
        return next(iter(video_io.read_frames(info, number, number)))[1]

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="depth360-decode") as pool:
        ahead: deque = deque()
        for number in numbers:
            ahead.append((number, pool.submit(one, number)))
            if len(ahead) >= 2 * workers:
                number, future = ahead.popleft()
                yield number, future.result()
        while ahead:
            number, future = ahead.popleft()
            yield number, future.result()


def open_source(text: str | os.PathLike) -> Source:
    """The source named by `text`; BadInputError if it does not exist or cannot be probed."""
    path = Path(text)
    if video_io.is_video_path(path) or video_io.is_sequence_path(path):
        info = video_io.probe(path)
        return Source(path, info.kind, info.name, info)
    if not path.is_file():
        raise BadInputError(f"input {path} does not exist")
    return Source(path, "still", path.stem)


def open_sources(inputs) -> list[Source]:
    """Every input as a Source; BadInputError for a missing input or two inputs sharing output names."""
    sources = [open_source(text) for text in inputs]
    seen: dict[tuple[str, bool], Path] = {}
    for source in sources:
        key = (source.name, source.still)
        if key in seen:
            raise BadInputError(f"inputs {seen[key]} and {source.path} would write the same output names")
        seen[key] = source.path
    return sources
