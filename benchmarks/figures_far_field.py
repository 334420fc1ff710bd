"""Stereo-guided depth of open scenes by distance: where the far field's error comes from.

Not a test: prints figures. For each outdoor render (`tests.groundtruth.scene_pair`, ODS at
2048 per eye, 8-bit eyes as a PNG holds them) with test_outdoor's sky oracle, the median
relative distance error per distance bin of:

- `first`: the field fitted to the first stereo alone (matched 1024 wide; `far_shares=None`);
- `default`: what `estimate_guided` gives (the far field matched again where the share asks);
- `true`: the same field fitted to the true distance on the default stereo's pixels nearer than
  10 m: the fit's own limit, with no stereo error.

and the default's wrong-side share (issue 15), of every edge and of occlusion edges only. Where
`true` is close and `default` is not, the far field's error is the stereo's near-range error
extrapolated to where the field meets infinity.

    .venv/bin/python benchmarks/figures_far_field.py [--scenes "outdoor 1,outdoor 6"]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from depth360.estimators.stereo.guided import estimate_guided  # noqa: E402
from depth360.estimators.stereo.matching import StereoDepth  # noqa: E402
from tests.engine import edge_figures as ef  # noqa: E402
from tests.engine.test_outdoor import SkyOracle  # noqa: E402
from tests.groundtruth import scene_pair  # noqa: E402

BINS = ((2, 5), (5, 10), (10, 20), (20, 40), (40, 80), (80, 150))
TRUE_WITHIN_M = 10.0


def _eight_bit(eye: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(np.asarray(eye, np.float32), 0, 1) * 255) / 255).astype(np.float32)


def _bins(distance: np.ndarray, mask: np.ndarray, truth: np.ndarray) -> str:
    scored = mask & np.isfinite(truth)
    cells = []
    for low, high in BINS:
        inside = scored & (truth >= low) & (truth < high)
        cells.append(f"{np.median(distance[inside] / truth[inside]) - 1:+6.1%}" if inside.sum() > 50 else "     -")
    return " ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", default=",".join(f"outdoor {n}" for n in range(1, 13)))
    args = parser.parse_args()
    print("median error per bin: " + " ".join(f"{low}-{high} m" for low, high in BINS))
    for scene in (s.strip() for s in args.scenes.split(",")):
        pair = scene_pair(scene)
        truth = np.asarray(pair.left_distance)
        left, right = _eight_bit(pair.left_rgb), _eight_bit(pair.right_rgb)
        seed = int(scene.split()[-1]) + 11  # a fresh oracle per run: the same network's answer each time
        first = estimate_guided(left, right, SkyOracle(truth, seed), check_eye_order=False, far_shares=None)
        default = estimate_guided(left, right, SkyOracle(truth, seed), check_eye_order=False)
        stereo = default.stereo
        near = stereo.mask & np.isfinite(truth) & (truth < TRUE_WITHIN_M)
        exact = StereoDepth(np.where(near, truth, 100.0).astype(np.float32), stereo.disparity, near, stereo.confidence)
        limit = estimate_guided(left, right, SkyOracle(truth, seed), check_eye_order=False, stereo=exact,
                                far_shares=None)
        objects = np.asarray(pair.left_object_index)
        print(f"{scene}: far weight {default.far_weight:.2f}; wrong side {ef.wrong_side_share(default.distance, truth):.1%}"
              f" (occlusion edges {ef.wrong_side_share(default.distance, truth, objects=objects):.1%})")
        for name, result in (("first", first), ("default", default), ("true", limit)):
            print(f"  {name:8s} {_bins(result.distance, result.mask, truth)}", flush=True)


if __name__ == "__main__":
    main()
