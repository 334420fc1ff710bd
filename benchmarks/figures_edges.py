"""Issue 15's boundary figures on every scene, for every depth source, with each --edges mode.

Not a test: prints figures (tests/engine/test_edges.py asserts a subset of them). For each
scene (random rooms 0-3 and outdoor layouts 1-2, ODS at 2048 per eye) and each source
(`--model stereo`, stereo-guided with the oracle network, the planar metric oracle through the
monocular fusion), with `--edges none`, `auto` (the default) and `snap`: the share of
wrong-side pixels within 3 px of a true depth edge (relative jump > 20%), the composite IoU
of three virtual spheres straddling real depth edges, and AbsRel outside the edge band.

    .venv/bin/python benchmarks/figures_edges.py [--scenes "room 0,outdoor 1"] [--modes none,auto,snap]
        [--sources stereo,stereo-guided] [--eye-width 3840] [--floor]

`--eye-width`: the renders resized (eyes bicubic, truth nearest), e.g. a 4K frame's 3840, which the
engine matches 2048 wide. `--floor`: also the figures of stereo's floor on each scene (edge_figures.
stereo_range_floor: the truth where its disparity at 2048 wide is at least 1 px, and 0.5 px, the far value
beyond), what no stereo edge step can go below.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.engine import edge_figures  # noqa: E402
from tests.engine.test_edges import (  # noqa: E402
    SCENES,
    SOURCES,
    describe_edge_figures,
    edge_figures_of,
    scene_edge_figures,
)
from tests.groundtruth import scene_pair  # noqa: E402


def floor_lines(scene: str, eye_width: int) -> list[str]:
    """The figures of stereo's floor on `scene` (the module docstring's --floor)."""
    pair = scene_pair(scene, eye_width)
    lines = []
    for limit in (1.0, 0.5):
        floor = edge_figures.stereo_range_floor(np.asarray(pair.left_distance), limit)
        figures = scene_edge_figures(floor, floor < edge_figures.FAR, pair)
        lines.append(f"  stereo floor at {limit} px: {describe_edge_figures(figures)}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", default=",".join(SCENES))
    parser.add_argument("--modes", default="none,auto,snap")
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--eye-width", type=int, default=2048)
    parser.add_argument("--floor", action="store_true", help="also stereo's floor (module docstring)")
    args = parser.parse_args()
    runs = [(source.strip(), mode) for source in args.sources.split(",") for mode in args.modes.split(",")]
    for scene in args.scenes.split(","):
        with tempfile.TemporaryDirectory(prefix="figures-edges-") as work:
            _, lines = edge_figures_of(Path(work), scene.strip(), runs, args.eye_width)
        if args.floor:
            lines += floor_lines(scene.strip(), args.eye_width)
        print(f"{scene}:\n" + "\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
