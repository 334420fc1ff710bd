"""Issue 15's boundary figures on every scene, for every depth source, with each --edges mode.

Not a test: prints figures (tests/engine/test_edges.py asserts a subset of them). For each
scene (random rooms 0-3 and outdoor layouts 1-2, ODS at 2048 per eye) and each source
(`--model stereo`, stereo-guided with the oracle network, the planar metric oracle through the
monocular fusion), with `--edges none`, `auto` (the default) and `snap`: the share of
wrong-side pixels within 3 px of a true depth edge (relative jump > 20%), the composite IoU
of three virtual spheres straddling real depth edges, and AbsRel outside the edge band.

    .venv/bin/python benchmarks/figures_edges.py [--scenes "room 0,outdoor 1"] [--modes none,auto,snap]
        [--sources stereo,stereo-guided] [--eye-width 3840]

`--eye-width`: the renders resized (eyes bicubic, truth nearest), e.g. a 4K frame's 3840, which the
engine matches 2048 wide.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.engine.test_edges import SCENES, SOURCES, edge_figures_of  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", default=",".join(SCENES))
    parser.add_argument("--modes", default="none,auto,snap")
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--eye-width", type=int, default=2048)
    args = parser.parse_args()
    runs = [(source.strip(), mode) for source in args.sources.split(",") for mode in args.modes.split(",")]
    for scene in args.scenes.split(","):
        with tempfile.TemporaryDirectory(prefix="figures-edges-") as work:
            _, lines = edge_figures_of(Path(work), scene.strip(), runs, args.eye_width)
        print(f"{scene}:\n" + "\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
