"""A preview MP4 (H.264) encoded frame by frame as frames arrive, renamed into place at the end."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from . import image_io


class PreviewVideo:
    """`add(rgb uint8)` frames in order, then `close(success)`: the file exists only after a success."""

    def __init__(self, path: Path, fps: float | None):
        self.path = path
        self.fps = fps or 24.0
        self._atomic = None
        self._container = None
        self._stream = None
        self.frames = 0

    def _open(self, width: int, height: int) -> None:
        import av

        self._atomic = image_io.atomic_path(self.path)
        temporary = self._atomic.__enter__()
        self._container = av.open(str(temporary), "w", format="mp4")
        rate = Fraction(self.fps).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = width + width % 2, height + height % 2
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": "20", "preset": "veryfast"}
        self._stream.codec_context.thread_count = 1

    def add(self, rgb: np.ndarray) -> None:
        """Encode the next frame (uint8 RGB [H, W, 3]; odd sizes are padded by one pixel)."""
        import av

        height, width = rgb.shape[:2]
        if self._container is None:
            self._open(width, height)
        rgb = np.pad(rgb, ((0, self._stream.height - height), (0, self._stream.width - width), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self, success: bool) -> Path | None:
        """Finish the file (success) or drop it; the path written, or None."""
        if self._container is None:
            return None
        try:
            if success:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
            if success:
                self._atomic.__exit__(None, None, None)
            else:
                error = RuntimeError("pipeline failed")
                self._atomic.__exit__(type(error), error, None)
        return self.path if success else None
