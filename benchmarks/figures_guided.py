"""Issue 14's stereo-guided figures on any random rooms: the oracle network guided by the stereo.

Not a test: prints figures (tests/engine/test_stereo_guided.py asserts them on rooms 0-3). For
each seed of `room_random` (ODS at 2048 per eye, 8 samples) and each oracle (affine; a +-10%
ramp across each view): AbsRel within +-60 degrees and 20 m, over every finite pixel, and the
coverage, through `pipeline.run` exactly as the test does.

    .venv/bin/python benchmarks/figures_guided.py [--seeds 4,5,6,7]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from depth360.estimators import pipeline  # noqa: E402
from depth360.estimators.media.image_io import read_exr  # noqa: E402
from tests.engine.test_fusion_oracle import OracleEstimator  # noqa: E402
from tests.engine.test_stereo_guided import guided_figures  # noqa: E402
from tests.engine.test_stereo_rooms import room, room_size, write_top_bottom  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="4,5,6,7")
    args = parser.parse_args()
    for seed in (int(s) for s in args.seeds.split(",")):
        pair = room(seed)
        truth = np.asarray(pair.left_distance)
        with tempfile.TemporaryDirectory() as folder:
            path = write_top_bottom(Path(folder) / "tb.png", pair)
            for ramp in (0.0, 0.1):
                out = Path(folder) / f"guided-{ramp}"
                request = pipeline.EstimateRequest(inputs=(str(path),), output_dir=str(out), layout="top-bottom",
                                                   model="python:oracle.py:make", save=("distance", "mask"))
                pipeline.run(request, estimator=OracleEstimator(truth, seed=seed + 11, ramp=ramp))
                result = guided_figures(read_exr(out / "tb.distance.exr"), read_exr(out / "tb.mask.exr") > 0.5, truth)
                print(f"room {seed} ({room_size(seed)}), oracle {'+-10% ramp' if ramp else 'affine'}: AbsRel "
                      f"{result['band']:.2%} (+-60 deg, <= 20 m), {result['finite']:.2%} (every finite pixel), "
                      f"coverage {result['coverage']:.1%}", flush=True)


if __name__ == "__main__":
    main()
