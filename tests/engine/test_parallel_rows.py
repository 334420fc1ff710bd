"""Row-parallel helpers (estimators.parallel_rows): the same result as one call on all rows."""

from __future__ import annotations

import contextlib

import cv2
import numpy as np

from depth360.estimators.parallel_rows import map_row_blocks, map_row_chunks, map_threads


@contextlib.contextmanager
def opencv_threads(count: int):
    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def test_row_blocks_with_a_halo_stitch_to_the_whole_maps_result():
    values = np.random.default_rng(0).random((301, 97), dtype=np.float32)
    kernel = np.ones((7, 3), np.uint8)  # three rows above and below

    def work(rows: slice) -> np.ndarray:
        return cv2.dilate(values[rows], kernel)

    with opencv_threads(3):
        stitched = map_row_blocks(work, values.shape[0], halo=3)
        short = map_row_blocks(work, values.shape[0], halo=2)
    np.testing.assert_array_equal(stitched, work(slice(0, values.shape[0])))
    assert not np.array_equal(short, stitched)  # a halo too short shows at the blocks' borders


def test_row_chunks_cover_every_row_once_in_order():
    rows = np.flatnonzero(np.random.default_rng(1).random(1000) > 0.3)
    with opencv_threads(4):
        results = map_row_chunks(lambda chunk: chunk * 2, rows)
    assert len(results) == 4
    np.testing.assert_array_equal(np.concatenate([chunk for chunk, _ in results]), rows)
    for chunk, doubled in results:
        np.testing.assert_array_equal(doubled, chunk * 2)
    assert map_row_chunks(lambda chunk: chunk, rows[:0]) == []
    with opencv_threads(1):
        assert len(map_row_chunks(lambda chunk: chunk, rows)) == 1
    assert map_threads(lambda x: x + 1, [1, 2, 3]) == [2, 3, 4]
