"""Progress of a run: a terminal bar with fps and ETA on stderr, or JSON lines on stdout.

`progress="bar"`: on a terminal, one self-overwriting line on stderr, at most every
`BAR_INTERVAL_S` seconds and at the end: ``clip  [######......]  12/60  20%  3.1 fps  ETA 0:15``.
Where stderr is not a terminal (a pipe, a farm's log file) the bar is never redrawn:
one plain line at most every `LOG_INTERVAL_S` seconds and one at the end, with no
carriage return: ``clip: 12/60 frames (20%), 3.1 fps, ETA 0:15``.
`progress="json"`: one line per finished frame on stdout, flushed, for the Blender
worker: ``{"frame": 12, "done": 12, "total": 60, "fps": 3.1, "eta_s": 15.5}`` where
`frame` is the frame number just written, `done` how many of the run's `total`
frames are finished (frames found complete from an earlier run count as done at once),
`fps` the rate of frames computed in this run (None until measurable) and `eta_s` the
seconds left at that rate (None likewise). `progress="none"` is silent.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Literal, TextIO

ProgressMode = Literal["bar", "json", "none"]
PROGRESS_MODES = ("bar", "json", "none")
BAR_INTERVAL_S = 0.2
LOG_INTERVAL_S = 5.0
BAR_WIDTH = 24


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """Counts finished frames of a run and reports them (thread-safe)."""

    def __init__(self, total: int, mode: ProgressMode = "bar", *, label: str = "",
                 stdout: TextIO | None = None, stderr: TextIO | None = None):
        if mode not in PROGRESS_MODES:
            raise ValueError(f"progress must be one of {', '.join(PROGRESS_MODES)}, got {mode!r}")
        self.total = int(total)
        self.mode = mode
        self.label = label
        self.done = 0
        self.computed = 0
        self._stdout = stdout or sys.stdout
        self._stderr = stderr or sys.stderr
        self._started: float | None = None
        self._last_bar = 0.0
        self._last_line = 0.0
        self._logged_done = -1
        self._lock = threading.Lock()
        isatty = getattr(self._stderr, "isatty", None)
        self.terminal = bool(isatty and isatty())

    def relabel(self, label: str) -> None:
        """Name what the next frames belong to (the input being estimated)."""
        self.label = label

    def start(self) -> None:
        """Start the clock (when the first frame enters the pipeline)."""
        with self._lock:
            if self._started is None:
                self._started = time.perf_counter()

    @property
    def fps(self) -> float | None:
        """Frames computed per second in this run so far."""
        if self._started is None or self.computed == 0:
            return None
        elapsed = time.perf_counter() - self._started
        return self.computed / elapsed if elapsed > 0 else None

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate."""
        fps = self.fps
        return None if not fps else (self.total - self.done) / fps

    def skipped(self, count: int) -> None:
        """Count `count` frames already complete from an earlier run."""
        with self._lock:
            self.done += count
        self._report(None, final=False)

    def frame_done(self, number: int) -> None:
        """Frame `number` was written."""
        with self._lock:
            self.done += 1
            self.computed += 1
        self._report(number, final=False)

    def finish(self) -> None:
        """End the bar's line (a terminal) or write the closing line (a log)."""
        if self.mode == "bar":
            self._report(None, final=True)
            if self.terminal:
                self._stderr.write("\n")
                self._stderr.flush()

    def clear_line(self) -> str:
        """What to write before a message so that it does not land on the bar's line."""
        return "\n" if self.mode == "bar" and self.terminal and self._last_bar else ""

    def _report(self, number: int | None, final: bool) -> None:
        fps, eta = self.fps, self.eta_s
        if self.mode == "json" and number is not None:
            line = {"frame": number, "done": self.done, "total": self.total,
                    "fps": None if fps is None else round(fps, 3),
                    "eta_s": None if eta is None else round(eta, 1)}
            self._stdout.write(json.dumps(line) + "\n")
            self._stdout.flush()
        elif self.mode == "bar" and not self.terminal:
            self._log_line(fps, eta, final)
        elif self.mode == "bar":
            now = time.perf_counter()
            if not final and now - self._last_bar < BAR_INTERVAL_S and self.done < self.total:
                return
            self._last_bar = now
            filled = round(BAR_WIDTH * self.done / self.total) if self.total else BAR_WIDTH
            percent = 100 * self.done / self.total if self.total else 100
            rate = f"{fps:.2f} fps" if fps else "-- fps"
            left = f"ETA {_clock(eta)}" if eta is not None else "ETA --"
            text = (f"\r{self.label}  [{'#' * filled}{'.' * (BAR_WIDTH - filled)}]  "
                    f"{self.done}/{self.total}  {percent:3.0f}%  {rate}  {left}")
            self._stderr.write(text)
            self._stderr.flush()

    def _log_line(self, fps: float | None, eta: float | None, final: bool) -> None:
        now = time.perf_counter()
        if not final and (self.computed == 0 or now - self._last_line < LOG_INTERVAL_S):
            return
        if final and self.done in (self._logged_done, 0):
            return
        self._last_line = now
        self._logged_done = self.done
        percent = 100 * self.done / self.total if self.total else 100
        rate = f"{fps:.2f} fps" if fps else "-- fps"
        left = f"ETA {_clock(eta)}" if eta is not None else "ETA --"
        self._stderr.write(f"{self.label}: {self.done}/{self.total} frames ({percent:.0f}%), {rate}, {left}\n")
        self._stderr.flush()
