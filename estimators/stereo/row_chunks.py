"""Row-independent work spread over the threads OpenCV uses (numpy releases the GIL in its loops).

The stereo edge steps decide each row (or column) of an eye on its own; splitting the rows
into one contiguous chunk per thread gives the same result as one call on all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

Result = TypeVar("Result")
# Fewer rows than this per chunk cost more in per-call overhead than a thread gains.
MIN_ROWS = 32


def worker_count() -> int:
    """Threads for the edge steps: OpenCV's count (a cluster task's share of the node sets it)."""
    import cv2

    return max(1, cv2.getNumThreads())


def map_row_chunks(work: Callable[[np.ndarray], Result], rows: np.ndarray) -> list[tuple[np.ndarray, Result]]:
    """(chunk, work(chunk)) for contiguous chunks of the index array `rows`, run on `worker_count()`
    threads (one chunk, in this thread, where the rows are few; none where there are none)."""
    if rows.size == 0:
        return []
    chunks = np.array_split(rows, max(1, min(worker_count(), rows.size // MIN_ROWS)))
    if len(chunks) == 1:
        return [(rows, work(rows))]
    with ThreadPoolExecutor(max_workers=len(chunks), thread_name_prefix="depth360-rows") as pool:
        return list(zip(chunks, pool.map(work, chunks)))
