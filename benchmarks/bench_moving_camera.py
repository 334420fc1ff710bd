"""Moving-camera figures (issue 13) on the project's ground-truth walks, layout by layout.

    .venv/bin/python benchmarks/bench_moving_camera.py [--width 512] [--frames 24] [--seeds 0,1,2]
                                                        [--views cube] [--modes none,still,motion]

For `room_walk` and each seed of `outdoor_walk` (a random layout per seed):

1. The camera solve against the true camera (`CameraSolver` on the frames alone):
   rotation error (max over frames), step direction error (max over steps of >= 5 cm),
   path length ratio with the scale fixed on frame 1.
2. The per-frame oracle (tests/moving_camera.py: each frame's true inverse depth under
   its own affine map, scale 0.7-1.4, shift +-20% of the range, 0.5% noise) through
   `pipeline.run`, scored on mask-1 pixels: their coverage of the finite truth, AbsRel
   after one affine fit over the shot, the worst frame after its own fit, and the mean
   frame-to-frame change of the disparity scale, for `--no-stabilise` (none), the
   still-camera stabiliser (`--no-camera-solve`: still) and the motion-compensated
   stabiliser (motion). `--views cube` runs the oracle per perspective view through the
   360 fusion, as `depth360 estimate --views cube` does; the default is the whole frame.
   Outdoor runs use `--sky mask` (ground beyond --far leaves the mask).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from depth360.estimators import pipeline  # noqa: E402
from depth360.estimators.pipeline.frame_estimators import (  # noqa: E402
    FusionFrameEstimator,
    PlainFrameEstimator,
)
from tests.engine.test_moving_camera import camera_errors, shot_figures, solve  # noqa: E402
from tests.moving_camera import AffineOracle, render, write_frames  # noqa: E402

MODES = {"none": {"stabilise": False, "camera_solve": False}, "still": {"camera_solve": False}, "motion": {}}


def layout_figures(scene: str, seed: int | None, args) -> None:
    truths = render(scene, args.width, args.frames, 4, seed)
    name = f"{scene}" + (f" seed {seed}" if seed is not None else "")
    started = time.perf_counter()
    frames, _ = solve(truths)
    rotation, directions, length = camera_errors(frames, truths)
    print(f"{name}: camera solve: rotation max {rotation.max():.3f} deg, step direction max {directions.max():.2f} "
          f"deg ({len(directions)} steps), path length ratio {length:.4f} ({time.perf_counter() - started:.0f} s)",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-moving-") as work:
        folder = write_frames(truths, Path(work) / "frames" / "shot")
        for mode in args.modes.split(","):
            oracle = AffineOracle(truths, seed or 0)
            estimator = FusionFrameEstimator(oracle, args.views) if args.views else PlainFrameEstimator(oracle)
            request = pipeline.EstimateRequest(
                inputs=(str(folder),), output_dir=str(Path(work) / mode), save=("disparity", "mask"),
                sky="mask" if scene.startswith("outdoor") else "keep", **MODES[mode])
            started = time.perf_counter()
            pipeline.run(request, frame_estimator=estimator)
            coverage, shot, worst, drift = shot_figures(Path(work) / mode / "shot", truths)
            print(f"{name}: oracle{' --views ' + args.views if args.views else ''} {mode:6s}: coverage {coverage:.3f}, "
                  f"shot AbsRel {100 * shot:.2f}%, worst frame {100 * worst:.2f}%, scale drift {100 * drift:.2f}% "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--seeds", default="0,1,2", help="outdoor_walk layouts")
    parser.add_argument("--views", default=None, help="run the oracle per view through the 360 fusion (e.g. cube)")
    parser.add_argument("--modes", default="none,still,motion")
    parser.add_argument("--no-room", action="store_true")
    args = parser.parse_args()
    layouts = ([] if args.no_room else [("room_walk", None)]) + [("outdoor_walk", int(s)) for s in args.seeds.split(",") if s]
    for scene, seed in layouts:
        layout_figures(scene, seed, args)


if __name__ == "__main__":
    main()
