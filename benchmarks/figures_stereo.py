"""Accuracy figures of issue 14: stereo by distance bins, stereo-guided depth, VR180, on the project's renders.

Not a test: prints figures (the tests in tests/engine/test_stereo_rooms.py, test_stereo_guided.py,
test_vr180.py and test_outdoor.py assert them). Renders come from tests/groundtruth (Cycles,
disk-cached; a cold cache renders them first: minutes each on 2 cores):

    .venv/bin/python benchmarks/figures_stereo.py [--rooms 0,1,2,3,4,5] [--skip-guided] [--skip-vr180]

Stereo is scored within +-60 degrees of latitude and 8 m (AbsRel, delta1, coverage, median signed
error per 2 m bin, AbsRel per 15-degree latitude band), for the matcher of this version and, beside
it, the matcher as it was before issue 14 (the same code with the whole-pixel level refit and no
full-resolution pass: `--before` options below). The eyes are the renders' float images.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from depth360.estimators.stereo.guided import _embed_half, estimate_guided  # noqa: E402
from depth360.estimators.stereo.matching import estimate_stereo_equirect  # noqa: E402
from depth360.estimators.stereo.vr180 import estimate_stereo_vr180  # noqa: E402
from tests.engine.test_fusion_oracle import OracleEstimator  # noqa: E402
from tests.engine.test_outdoor import SkyOracle  # noqa: E402
from tests.engine.test_stereo_guided import guided_figures  # noqa: E402
from tests.engine.test_stereo_rooms import describe, figures, room_size  # noqa: E402
from tests.groundtruth import render_stereo, render_vr180  # noqa: E402

BEFORE = dict(subpixel_radius=5, refine_radius=None)  # the ODS settings before issue 14


def latitude_bands(distance, mask, truth) -> str:
    height = truth.shape[0]
    latitude = np.abs(90.0 - 180.0 * (np.arange(height) + 0.5) / height)[:, None]
    parts = []
    for low in range(0, 60, 15):
        region = mask & np.isfinite(truth) & (truth <= 8.0) & (latitude >= low) & (latitude < low + 15)
        if region.any():
            parts.append(f"{low}-{low + 15} deg {np.mean(np.abs(distance[region] - truth[region]) / truth[region]):.2%}")
    return ", ".join(parts)


def stereo_rows(name: str, pair) -> None:
    truth = np.asarray(pair.left_distance)
    for label, options in (("before issue 14", BEFORE), ("this version", {})):
        start = time.perf_counter()
        result = estimate_stereo_equirect(pair.left_rgb, pair.right_rgb, **options)
        seconds = time.perf_counter() - start
        print("  " + describe(f"{label} ({seconds:.1f} s)", figures(result.distance, result.mask, truth)))
        print(f"    AbsRel by latitude: {latitude_bands(result.distance, result.mask, truth)}")


def guided_rows(name: str, pair, outdoor: bool = False) -> None:
    truth = np.asarray(pair.left_distance)
    stereo = estimate_stereo_equirect(pair.left_rgb, pair.right_rgb)
    alone = guided_figures(stereo.distance, stereo.mask, truth)
    oracle = SkyOracle if outdoor else OracleEstimator  # outdoors the sky is the view's shift, as a network's
    for ramp in (0.0, 0.1):
        result = estimate_guided(pair.left_rgb, pair.right_rgb, oracle(truth, seed=11, ramp=ramp))
        guided = guided_figures(result.distance, result.mask, truth)
        print(f"  guided, oracle {'+-10% ramp' if ramp else 'affine   '}: AbsRel {guided['band']:.2%} (+-60 deg, "
              f"<= 20 m), {guided['finite']:.2%} (every finite pixel), coverage {guided['coverage']:.1%}; stereo "
              f"alone {alone['band']:.2%}, {alone['finite']:.2%}, coverage {alone['coverage']:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", default="0,1,2,3", help="room_random seeds (comma list)")
    parser.add_argument("--skip-guided", action="store_true")
    parser.add_argument("--skip-vr180", action="store_true")
    args = parser.parse_args()
    scenes = [(f"room_random seed {seed} ({room_size(seed)})", "room_random", {"seed": seed})
              for seed in map(int, args.rooms.split(","))]
    scenes += [("room (the project's first room, 9 x 7.5 x 2.8 m)", "room", {})]
    scenes += [(f"outdoor seed {seed}", "outdoor", {"seed": seed}) for seed in (1, 2)]
    print("ODS, 2048 x 1024 per eye, 8 samples, 64 mm eyes, pole merge 60 -> 75 degrees; "
          "stereo within +-60 degrees and 8 m")
    for name, scene, params in scenes:
        pair = render_stereo(scene, 2048, 8, ipd=0.064, pole_merge=(60.0, 75.0), **params)
        print(name)
        stereo_rows(name, pair)
        if not args.skip_guided:
            guided_rows(name, pair, outdoor=scene == "outdoor")
    if not args.skip_vr180:
        pair = render_vr180("room_random", 1024, 8, seed=0)
        truth = np.asarray(pair.left_distance)
        result = estimate_stereo_vr180(pair.left_rgb, pair.right_rgb)
        print("VR180 room_random seed 0, 1024 x 1024 per eye, 8 samples, within 8 m")
        print("  " + describe("stereo", figures(result.distance, result.mask, truth, band_deg=90.0)))
        if not args.skip_guided:
            oracle = OracleEstimator(_embed_half(truth[..., None])[..., 0], seed=5, ramp=0.1)
            guided = estimate_guided(pair.left_rgb, pair.right_rgb, oracle, vr180=True, stereo=result)
            scored = figures(guided.distance, guided.mask, truth, band_deg=90.0, max_distance=20.0)
            print(f"  guided, oracle +-10% ramp, within 20 m: AbsRel {scored['absrel']:.2%}, coverage "
                  f"{scored['coverage']:.1%}")


if __name__ == "__main__":
    main()
