"""Seconds per 4K top-bottom ODS frame (each eye 3840 x 1920) for the stereo engine, and peak memory.

Not a test: prints figures. The frame is synthetic (a multi-scale colour texture seen by two
eyes with room-like disparities of 3 to 36 pixels), so the script needs no renders or files:

    .venv/bin/python benchmarks/bench_stereo.py [--repeats 5] [--max-match-width 2048] [--edges [--segment]]
        [--scenes room:0,outdoor:1] [--keep-freed-memory]

`--edges`: the cost of issue 15's edge step (stereo.occlusion_edges and stereo.colour_edges, what
`--edges auto` adds to `--model stereo`), medians side by side in one run, alternating: the
estimate with `edges=False` and with `edges=True`, at the engine's (and the pipeline's) default
ODS geometry, and the step's own seconds inside the runs with it. The synthetic frame has few depth jumps (a band of boxes), so the step has little
to do there; `--scenes` times it on the edge tests' ODS renders instead (tests/engine/test_edges:
`room:SEED` random rooms, `outdoor:SEED` landscapes, 2048 per eye, bicubic to `--eye-width`),
which needs bpy (.venv) or the renders' disk cache. `--segment`: the step with the segmentation of
`--edges snap` (stereo.segmented_edges) against none.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from peak_memory import peak_rss_mib, reset_peak_rss

from depth360.estimators.stereo.matching import estimate_stereo_equirect, split_stereo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.groundtruth (--scenes)


def synthetic_top_bottom_frame(eye_width: int = 3840, seed: int = 0) -> np.ndarray:
    """uint8 [2H, W, 3] top-bottom frame: left eye on top, right eye below."""
    import cv2

    height = eye_width // 2
    rng = np.random.default_rng(seed)
    texture = np.zeros((height, eye_width, 3), np.float32)
    for cells in (16, 64, 256, 1024):
        noise = rng.random((max(2, cells // 2), cells, 3), dtype=np.float32)
        texture += cv2.resize(noise, (eye_width, height), interpolation=cv2.INTER_CUBIC) / 4
    rows = np.arange(height)[:, None]
    cols = np.arange(eye_width)[None, :]
    # Walls a few metres away, a floor coming closer toward the bottom, and boxes in front: a
    # continuous spread of disparities (each populated level costs the sub-pixel refit a pass).
    floor = 25.0 * np.clip((rows / height - 0.5) * 2.0, 0.0, 1.0) ** 2
    boxes = 8.0 * ((cols // (eye_width // 8)) % 2) * ((rows > height * 0.45) & (rows < height * 0.6))
    disparity = 3.0 + floor + boxes + 0.0 * cols
    map_x = (cols + disparity).astype(np.float32) % eye_width  # left(x) = right(x - disparity)
    map_y = np.broadcast_to(rows, map_x.shape).astype(np.float32)
    right = cv2.remap(texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    frame = np.concatenate([texture, right], axis=0)
    return np.clip(frame * 255, 0, 255).astype(np.uint8)


def _rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--eye-width", type=int, default=3840)
    parser.add_argument("--max-match-width", type=int, default=None,
                        help="match at most this wide (default: the engine's default)")
    parser.add_argument("--edges", action="store_true", help="time the edge step: with and without, side by side")
    parser.add_argument("--scenes", default=None, help="with --edges: project renders (room:SEED,outdoor:SEED)")
    parser.add_argument("--segment", action="store_true",
                        help="with --edges: the step of --edges snap (with the segmentation of the plate)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="keep freed memory between frames, as the depth360 command does (cli.allocator)")
    args = parser.parse_args()
    if args.keep_freed_memory:
        from depth360.estimators.cli.allocator import keep_freed_memory

        print(f"freed memory kept: {keep_freed_memory()}")
    if args.edges:
        frames = ([("synthetic", synthetic_top_bottom_frame(args.eye_width))] if args.scenes is None else
                  [rendered_top_bottom_frame(scene, args.eye_width) for scene in args.scenes.split(",")])
        for name, frame in frames:
            print(f"{name}:")
            edge_step_cost(frame, args.repeats, args.segment)
        return

    frame = synthetic_top_bottom_frame(args.eye_width)
    options = {} if args.max_match_width is None else {"max_match_width": args.max_match_width}
    estimate_stereo_equirect(*split_stereo(frame[:, ::8][::8], "top-bottom"))  # imports, warm-up
    rss_before = _rss_mib()
    peak_is_reset = reset_peak_rss()
    seconds, cpu_seconds = [], []
    for _ in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        left, right = split_stereo(frame, "top-bottom")
        result = estimate_stereo_equirect(left, right, **options)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - start_cpu)
    peak = peak_rss_mib()
    eye_height = frame.shape[0] // 2
    print(f"stereo ODS, top-bottom frame {args.eye_width}x{eye_height} per eye, "
          f"{os.cpu_count()} CPU cores, options {options or 'default'}")
    print(f"seconds per frame: median {statistics.median(seconds):.2f} "
          f"(runs: {', '.join(f'{s:.2f}' for s in seconds)})")
    print(f"CPU seconds per frame (all threads): median {statistics.median(cpu_seconds):.2f}; "
          f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(other work on the machine stretches the wall-clock figure)")
    scope = "during the estimates" if peak_is_reset else "of the whole process, frame synthesis included"
    print(f"peak resident memory {scope}: {peak:.0f} MiB, of which {peak - rss_before:.0f} MiB above the "
          f"{rss_before:.0f} MiB held before (interpreter, libraries, the input frame)")
    print(f"valid pixels: {result.mask.mean():.1%}")


def rendered_top_bottom_frame(scene: str, eye_width: int) -> tuple[str, np.ndarray]:
    """(name, uint8 top-bottom frame) of the edge tests' render `room:SEED` or `outdoor:SEED`, each eye
    bicubic to `eye_width`."""
    from tests.groundtruth import scene_pair

    kind, _, seed = scene.partition(":")
    if kind not in ("room", "outdoor") or not seed.isdigit():
        raise SystemExit(f"--scenes: {scene!r} is not room:SEED or outdoor:SEED")
    pair = scene_pair(f"{kind} {seed}", eye_width)
    frame = np.round(np.concatenate([pair.left_rgb, pair.right_rgb], axis=0) * 255).astype(np.uint8)
    return f"{scene} (render 2048 per eye, bicubic to {eye_width})", frame


def edge_step_cost(frame: np.ndarray, repeats: int, segment: bool = False) -> None:
    """Median seconds per frame without and with the edge step, alternating, the overhead, and the step's
    own seconds inside the runs with it (`matching.snap_match_edges` timed where the engine calls it:
    on a noisy machine the difference of two whole-frame medians scatters more than the step takes)."""
    from depth360.estimators.stereo import matching

    left, right = split_stereo(frame, "top-bottom")
    with warnings.catch_warnings():  # the warm-up's small frame has little measurable disparity
        warnings.simplefilter("ignore")
        estimate_stereo_equirect(*split_stereo(frame[:, ::8][::8], "top-bottom"), edges=True)
    seconds, step = {False: [], True: []}, []
    snap = matching.snap_match_edges

    def timed_snap(*args, **kwargs):
        start = time.perf_counter()
        try:
            return snap(*args, **kwargs)
        finally:
            step.append(time.perf_counter() - start)

    matching.snap_match_edges = timed_snap
    try:
        for repeat in range(repeats):
            for edges in ((False, True) if repeat % 2 == 0 else (True, False)):
                start = time.perf_counter()
                estimate_stereo_equirect(left, right, edges=edges, segment=edges and segment)
                seconds[edges].append(time.perf_counter() - start)
    finally:
        matching.snap_match_edges = snap
    without, with_ = statistics.median(seconds[False]), statistics.median(seconds[True])
    print(f"stereo ODS {left.shape[1]}x{left.shape[0]} per eye, {os.cpu_count()} CPU cores, {repeats} runs each; "
          f"the step {'with' if segment else 'without'} the segmentation (--edges {'snap' if segment else 'auto'})")
    print(f"without the edge step: median {without:.2f} s ({', '.join(f'{s:.2f}' for s in seconds[False])})")
    print(f"with the edge step:    median {with_:.2f} s ({', '.join(f'{s:.2f}' for s in seconds[True])})")
    print(f"edge step: +{with_ - without:.2f} s, {100 * (with_ / without - 1):+.1f}%; load average "
          f"{os.getloadavg()[0]:.1f}")
    inside = statistics.median(step)
    print(f"the step itself, inside the runs with it: median {inside:.2f} s ({', '.join(f'{s:.2f}' for s in step)}), "
          f"{100 * inside / without:.1f}% of the frame without it")


if __name__ == "__main__":
    main()
