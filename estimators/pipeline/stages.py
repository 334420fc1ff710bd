"""Stages on threads joined by bounded queues; the first error in any stage stops them all.

Memory stays flat however long the shot (each queue holds a few frames), nothing hangs
after an error (every blocking put or get wakes up to look at the stop flag), and the
first error is raised in the caller's thread by `join()`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

END = object()  # put after a stage's last item


class Stopped(Exception):
    """Raised inside a stage when another stage failed."""


class StageThreads:
    """Run stage functions on threads; `put`/`get` move items between them (see the module docstring)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self.busy: dict[str, float] = {}
        self._lock = threading.Lock()

    def put(self, q: queue.Queue, item) -> None:
        """Put `item` on `q`, waiting for room; Stopped if another stage failed meanwhile."""
        while True:
            if self.stop.is_set():
                raise Stopped
            try:
                q.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def get(self, q: queue.Queue):
        """The next item of `q`; Stopped if another stage failed meanwhile."""
        while True:
            if self.stop.is_set():
                raise Stopped
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                continue

    def add_busy(self, stage: str, seconds: float) -> None:
        """Count `seconds` of work for `stage` (the sidecar's timings)."""
        with self._lock:
            self.busy[stage] = self.busy.get(stage, 0.0) + seconds

    def start(self, name: str, function: Callable[[], None]) -> None:
        """Run `function` on a thread of its own."""
        def body():
            try:
                function()
            except Stopped:
                pass
            except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
                with self._lock:
                    self.errors.append(error)
                self.stop.set()

        thread = threading.Thread(target=body, name=f"depth360-{name}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        """Wait for every stage; raise the first error (KeyboardInterrupt stops them all)."""
        try:
            for thread in self.threads:
                while thread.is_alive():
                    thread.join(timeout=0.1)
        except BaseException:
            self.stop.set()
            for thread in self.threads:
                thread.join()
            raise
        if self.errors:
            raise self.errors[0]
