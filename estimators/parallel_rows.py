"""Row-independent work spread over the threads OpenCV uses (numpy and OpenCV release the GIL in their loops).

The stereo edge steps decide each row (or column) of an eye on its own; splitting the rows
into one contiguous chunk per thread gives the same result as one call on all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

Item, Result = TypeVar("Item"), TypeVar("Result")
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
        return list(zip(chunks, pool.map(work, chunks), strict=True))


def map_row_blocks(work: Callable[[slice], np.ndarray], height: int, halo: int) -> np.ndarray:
    """work(rows) of a map `height` rows high, computed in blocks of rows on `worker_count()` threads:
    `work` gets a block's rows with up to `halo` more on each side and returns its map of them; the
    blocks' own rows are stitched. The same as work(slice(0, height)) where a row's result depends
    on the rows within `halo` of it only."""
    blocks = np.array_split(np.arange(height), max(1, min(worker_count(), height // max(MIN_ROWS, 4 * halo))))
    if len(blocks) == 1:
        return work(slice(0, height))

    def block(rows: np.ndarray) -> np.ndarray:
        top, bottom = max(rows[0] - halo, 0), min(rows[-1] + 1 + halo, height)
        return work(slice(top, bottom))[rows[0] - top:rows[-1] + 1 - top]

    with ThreadPoolExecutor(max_workers=len(blocks), thread_name_prefix="depth360-rows") as pool:
        return np.concatenate(list(pool.map(block, blocks)), axis=0)


def map_threads(work: Callable[[Item], Result], items: Sequence[Item]) -> list[Result]:
    """[work(item) for item in items] on up to `worker_count()` threads."""
    workers = min(worker_count(), len(items))
    if workers <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="depth360-rows") as pool:
        return list(pool.map(work, items))
