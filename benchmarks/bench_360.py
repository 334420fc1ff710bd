"""Seconds per equirect frame spent by the 360 engine itself (projection, alignment, blending,
calibration) for each view preset, with the fused accuracy, on an analytic room.

Not a test: prints figures. The estimator is an oracle plug-in (the DESIGN.md protocol)
that returns each view's true inverse planar depth under a random per-view scale, shift,
+-10% linear ramp and 0.5% noise, so `predict` costs almost nothing and the times are the
engine's own overhead; AbsRel is after a global affine fit, as in the acceptance tests:

    .venv/bin/python benchmarks/bench_360.py [--width 3840] [--presets cube,ico,equirect] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
from depth360.estimators.equirect import ray_directions
from depth360.estimators.fusion import estimate_equirect

ROOM_CENTRE = np.array([0.3, -0.2, 0.1])  # camera position inside the room, metres
ROOM_HALF_SIZE = np.array([3.0, 2.0, 1.4])


def room_distance(rays: np.ndarray) -> np.ndarray:
    """Distance along unit rays [..., 3] to the walls of an axis-aligned room."""
    rays = np.asarray(rays, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(rays > 0, (ROOM_HALF_SIZE + ROOM_CENTRE) / rays, (-ROOM_HALF_SIZE + ROOM_CENTRE) / rays)
    return np.where(np.abs(rays) < 1e-12, np.inf, t).min(axis=-1)


class RampedOracle:
    kind = "relative-disparity"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def predict(self, images: np.ndarray, rays: np.ndarray) -> np.ndarray:
        out = []
        for view_rays in rays.astype(np.float64):
            inverse = 1.0 / room_distance(view_rays)
            axis = view_rays.reshape(-1, 3).mean(axis=0)
            if np.linalg.norm(axis) > 0.5:
                inverse = inverse / (view_rays @ (axis / np.linalg.norm(axis)))
            h, w = inverse.shape
            y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
            angle = self.rng.uniform(0, 2 * np.pi)
            d = inverse * self.rng.uniform(0.5, 2.0) * (1 + 0.1 * (np.cos(angle) * x + np.sin(angle) * y))
            d *= 1 + 0.005 * self.rng.standard_normal(d.shape)
            out.append((d + self.rng.uniform(-0.3, 0.3) * np.ptp(d)).astype(np.float32))
        return np.stack(out)


def absrel(disparity: np.ndarray, truth: np.ndarray) -> float:
    a, b = np.polyfit(disparity.ravel().astype(np.float64), truth.ravel(), 1)
    return float(np.mean(np.abs(a * disparity + b - truth) / truth))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=3840)
    parser.add_argument("--presets", default="cube,ico,equirect")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    height, width = args.width // 2, args.width
    image = np.full((height, width, 3), 0.5, dtype=np.float32)
    truth = 1.0 / room_distance(ray_directions(height, width))
    print(f"360 engine on a {width}x{height} frame, oracle estimator, {args.repeats} warm repeats (first run = cold caches)")
    for preset in args.presets.split(","):
        runs = []
        for repeat in range(args.repeats + 1):
            start = time.perf_counter()
            result = estimate_equirect(image, RampedOracle(seed=repeat), preset)
            total = time.perf_counter() - start
            runs.append((total, result.timings, absrel(result.disparity, truth)))
        cold = runs[0][0]
        warm = runs[1:]
        stages = {k: statistics.median(r[1][k] for r in warm) for k in warm[0][1]}
        view = result.views[0]
        print(
            f"  {preset:9s} {len(result.views):2d} views of {view.width}x{view.height}: "
            f"cold {cold:.2f}s, warm {statistics.median(r[0] for r in warm):.2f}s "
            f"({', '.join(f'{k} {v:.2f}' for k, v in stages.items())}), "
            f"AbsRel {statistics.median(r[2] for r in warm):.3%}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak memory {peak:.0f} MiB")


if __name__ == "__main__":
    main()
