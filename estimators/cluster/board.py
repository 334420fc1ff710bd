"""Progress of a cluster job: chunks report to one board, the driver reads it.

Each chunk runs the one pipeline with `--progress json`; its JSON lines go to a
`LineSink` that forwards the frame numbers to the job's `ProgressBoard` (a Ray actor
on the driver's node), and its warnings likewise. The driver drains the board a few
times a second into one `pipeline.progress.Progress`: one bar, one log line every few
seconds, or one JSON line per frame, across all chunks, as a single run prints them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable


class ProgressBoard:
    """Events of a job's chunks, in arrival order, until the driver drains them (a Ray actor)."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def started(self, key: str, identity: dict) -> None:
        """A chunk attempt started on the node `identity` describes (its owner host@pid too)."""
        self.events.append(("started", key, identity))

    def frame(self, key: str, number: int) -> None:
        """A chunk wrote frame `number`."""
        self.events.append(("frame", key, number))

    def message(self, key: str, text: str) -> None:
        """A chunk printed a line on stderr (a warning, a note)."""
        self.events.append(("message", key, text))

    def drain(self) -> list[tuple]:
        """Every event since the last drain."""
        events, self.events = self.events, []
        return events


class LineSink(io.TextIOBase):
    """A text stream that hands every complete line to `send` (what a chunk's progress writes to)."""

    def __init__(self, send: Callable[[str], None]):
        super().__init__()
        self._send = send
        self._buffer = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if line.strip():
                self._send(line)
        return len(text)

    def isatty(self) -> bool:
        return False


def frame_of(line: str) -> int | None:
    """The frame number of a `--progress json` line, else None."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    frame = data.get("frame") if isinstance(data, dict) else None
    return frame if isinstance(frame, int) else None
