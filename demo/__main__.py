"""`make demo`: the main job on the built-in example, offline, on the CPU.

1. The example: a textured 360 room rendered by Blender (Cycles, CPU) as an
   omni-directional stereo pair, saved as a top-bottom PNG (left eye on top), and a short
   stereo clip of the same room with a moving ball.
2. Metric depth from the stereo pair with `depth360 estimate --model stereo` (no network,
   no GPU), compared with the renderer's true distance.
3. The Blender scene: the room as a 360 depth mesh (also catching shadows), the
   Z-combine compositor, a virtual sphere partly behind a real box; the rendered
   composite PNG and the saved .blend.
4. The clip through the video pipeline: a distance EXR sequence and a preview MP4.
5. With Depth Anything V2 Small's weights in the models folder, the monocular 360 path too.
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
CLIP_FRAMES = 8


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _write_png(path: Path, rgb: np.ndarray) -> Path:
    import cv2

    from depth360.estimators.media.image_io import write_bytes_atomic

    rgb8 = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, png.tobytes())
    return path


def _run(*args: object) -> None:
    command = [str(a) for a in args]
    print("$", " ".join(command).replace(str(REPO) + "/", ""), flush=True)
    subprocess.run(command, check=True)


def render_example(example: Path, width: int):
    """The stereo still (top-bottom PNG), its left eye, and the true distance; the render."""
    from tests.groundtruth import render_stereo

    start = time.monotonic()
    pair = render_stereo("room", width=width, samples=16)
    _write_png(example / "room_tb.png", np.concatenate([pair.left_rgb, pair.right_rgb], axis=0))
    _write_png(example / "room_left.png", pair.left_rgb)
    print(f"{example / 'room_tb.png'}: {width}x{width // 2} per eye, top-bottom, "
          f"interocular 0.064 m ({time.monotonic() - start:.0f} s; cached in .cache/groundtruth)")
    return pair


def render_clip(example: Path, width: int) -> Path:
    """A short top-bottom stereo clip of the room with a moving ball, as numbered PNGs."""
    from tests.groundtruth import render_stereo

    start = time.monotonic()
    folder = example / "room_clip"
    for frame in range(1, CLIP_FRAMES + 1):
        pair = render_stereo("room_moving", width=width, samples=8, frame=frame)
        _write_png(folder / f"room_clip_{frame:05d}.png",
                   np.concatenate([pair.left_rgb, pair.right_rgb], axis=0))
    print(f"{folder}/: {CLIP_FRAMES} frames ({time.monotonic() - start:.0f} s)")
    return folder


def compare_with_truth(distance_exr: Path, truth: np.ndarray) -> None:
    """Print AbsRel and delta1 of the estimate within +-60 degrees latitude."""
    from depth360.estimators.media.image_io import read_exr

    estimate = read_exr(distance_exr)
    height = truth.shape[0]
    latitude = 90.0 - 180.0 * (np.arange(height) + 0.5) / height
    band = (np.abs(latitude) <= 60.0)[:, None] & np.isfinite(truth)
    mask_file = distance_exr.with_name(distance_exr.name.replace(".distance.", ".mask."))
    valid = band & (read_exr(mask_file) > 0.5) if mask_file.exists() else band
    ratio = estimate[valid] / truth[valid]
    absrel = float(np.mean(np.abs(ratio - 1.0)))
    delta1 = float(np.mean(np.maximum(ratio, 1.0 / ratio) < 1.25))
    print(f"stereo distance vs Blender's true distance (latitude within 60 deg, {valid.sum() / band.sum():.1%} "
          f"of it valid): AbsRel {absrel:.2%}, delta1 {delta1:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "demo-output")
    parser.add_argument("--width", type=int, default=1024, help="equirect width per eye of the still")
    parser.add_argument("--clip-width", type=int, default=512, help="equirect width per eye of the clip")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    example, depth = out / "example", out / "depth"

    _step("1. The built-in example: a stereo 360 room rendered by Blender")
    pair = render_example(example, args.width)
    clip = render_clip(example, args.clip_width)

    _step("2. Metric depth from the stereo pair (no network, no GPU)")
    _run(DEPTH360, "estimate", example / "room_tb.png", "-o", depth, "--model", "stereo",
         "--layout", "top-bottom", "--save", "distance,mask,preview")
    compare_with_truth(depth / "room_tb.distance.exr", pair.left_distance)

    _step("3. The Blender scene: depth mesh, shadow catcher, compositor, a virtual sphere")
    _run(sys.executable, REPO / "demo" / "blender_composite.py", "--plate", example / "room_left.png",
         "--depth", depth / "room_tb.distance.exr", "--out", out / "composite.png",
         "--blend", out / "composite.blend")

    _step("4. The clip through the video pipeline")
    _run(DEPTH360, "estimate", clip, "-o", depth, "--model", "stereo", "--layout", "top-bottom",
         "--save", "distance,mask,preview")

    _step("5. Models (depth360 models)")
    _run(DEPTH360, "models")
    from depth360.estimators.models import weights
    from depth360.estimators.models.registry import get

    if weights.weights_present(get("depth-anything-v2-small")):
        _run(DEPTH360, "estimate", example / "room_left.png", "-o", depth / "mono",
             "--model", "depth-anything-v2-small", "--views", "cube", "--near", "0.5", "--far", "10")
    else:
        print("Depth Anything V2 Small's weights are not in the models folder: the monocular "
              "step is left out (`depth360 models download depth-anything-v2-small` fetches them).")

    print(f"\nDemo results: {out}/composite.png (the composite), {depth}/ (depth files, "
          f"previews, {clip.name}/preview.mp4)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
