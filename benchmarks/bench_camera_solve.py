"""The camera solve's cost per frame (video.camera_motion.CameraSolver) on a turning 360 clip.

A random-texture panorama rolled a pixel further each frame (a camera turning about the
vertical) is pushed through the solver at each `--widths` size; it prints the milliseconds
per frame, median of `--repeats` runs, and the spread. The 1,000-frame memory test's clip is
the 128-wide case; 1024 is the solver's own working width, what a 4K video costs it.

    .venv/bin/python benchmarks/bench_camera_solve.py [--widths 128,1024] [--frames 150,30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from depth360.estimators.video.camera_motion import CameraSolver


def turning_clip(width: int, frames: int) -> list[np.ndarray]:
    """uint8 [H, W, 3] frames of a random texture rolled one column further each frame."""
    base = np.random.default_rng(0).integers(0, 255, (width // 2, width, 3), dtype=np.uint8)
    return [np.roll(base, number, axis=1) for number in range(frames)]


def seconds_per_frame(clip: list[np.ndarray]) -> float:
    """One solve of the whole clip, in seconds per frame."""
    solver = CameraSolver()
    start = time.perf_counter()
    for number, frame in enumerate(clip, start=1):
        solver.push(number, frame)
    solver.finish()
    return (time.perf_counter() - start) / len(clip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="128,1024")
    parser.add_argument("--frames", default="150,30", help="frames per clip, one per width")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    counts = [int(f) for f in args.frames.split(",")]
    if len(counts) != len(widths):
        parser.error("--frames needs one count per width")
    print(f"camera solve, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}")
    for width, count in zip(widths, counts, strict=True):
        clip = turning_clip(width, count)
        runs = [1000 * seconds_per_frame(clip) for _ in range(args.repeats)]
        print(f"  {width}x{width // 2}, {count} frames: median {statistics.median(runs):.1f} ms a frame "
              f"({', '.join(f'{r:.1f}' for r in runs)})")


if __name__ == "__main__":
    main()
