"""`make demo`: the main job on the built-in example, offline, on the CPU.

1. The example: a textured 360 room rendered by Blender (Cycles, CPU) as an
   omni-directional stereo pair, saved as a top-bottom PNG (left eye on top), with its
   true distance for comparison.
2. The model registry (`depth360 models`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEPTH360 = Path(sys.executable).with_name("depth360")


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def render_example(out: Path, width: int) -> Path:
    """Render the example stereo room; write it as a top-bottom 8-bit PNG; return its path."""
    import cv2
    from depth360.estimators.image_io import write_bytes_atomic, write_exr

    from tests.groundtruth import render_stereo

    start = time.monotonic()
    pair = render_stereo("room", width=width, samples=16)
    top_bottom = np.concatenate([pair.left_rgb, pair.right_rgb], axis=0)
    rgb8 = np.clip(np.round(top_bottom * 255.0), 0, 255).astype(np.uint8)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR))
    assert ok
    plate = out / "example" / "room_stereo_tb.png"
    plate.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(plate, png.tobytes())
    far = np.where(np.isfinite(pair.left_distance), pair.left_distance, 0.0)
    write_exr(out / "example" / "room_left.true_distance.exr", far.astype(np.float32))
    print(f"{plate} ({width}x{width // 2} per eye, top-bottom; "
          f"{time.monotonic() - start:.1f} s, cached in .cache/groundtruth)")
    return plate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "demo-output")
    parser.add_argument("--width", type=int, default=1024, help="equirect width per eye")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    _step("Built-in example: a stereo 360 room rendered by Blender")
    render_example(args.out, args.width)

    _step("Models (depth360 models)")
    subprocess.run([str(DEPTH360), "models"], check=True)
    print(f"\nDemo results are in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
