"""Video Depth Anything Small against Depth Anything V2 Small on a 4K 360 clip, side by side.

Not a test: prints figures. Sections (`--sections`, default all):

`speed`: one synthetic 3840x1920 H.264 clip (a textured panorama turning and drifting,
`--frames` frames, default 22) through `pipeline.run` exactly as `depth360 estimate
clip.mp4` runs it (decode, cube views, network, alignment, blending, post-processing with
stabilisation, EXR and preview writing), once with each model, in this process, one after
the other under the same load: frames per second of the whole run, seconds per frame, and
the ratio VDA / DA V2. Video Depth Anything sees a frame once per window it is in: 32
frames every 22, so on a long clip 32/22 = 1.45 times as many frames as DA V2; 22 frames
are one window (32 frames per view), exactly that steady-state cost. The weights follow
the reference fixtures' rule (speed does not depend on their values; no download). Where
CUDA is available the same pair also runs on the GPU (fp16 autocast, the engine's default
there); on a machine without one the section says so.

`memory`: resident memory after frame 100 and after the last frame of a long 360 clip
(`--long`, default 1,000 frames of 256x128) through Video Depth Anything Small, the real
network at `--long-input-size` (default 56) so that it takes minutes, not hours.

    .venv/bin/python benchmarks/bench_vda.py [--frames 22] [--width 3840] [--sections speed,memory]

The machine is shared: the load average is printed with every section.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.reference_fixtures

from depth360.estimators.pipeline import EstimateRequest, run  # noqa: E402
from tests.engine.test_video_pipeline import RssProbe  # noqa: E402

MODELS = {"video-depth-anything-small": "video_depth_anything_vits", "depth-anything-v2-small": "depth_anything_v2_vits"}


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (5 min {five:.2f}) on {os.cpu_count()} cores"


def estimator(model: str, device: str = "cpu", input_size: int | None = None):
    """The engine's estimator for `model` with the reference fixture's weights, as `load_estimator` builds it."""
    import dataclasses

    import torch

    from depth360.estimators.models import registry
    from depth360.estimators.models.devices import choose_precision
    from depth360.estimators.models.network_estimator import NetworkEstimator, VideoNetworkEstimator
    from tests.reference_fixtures import fixture_network

    spec = registry.get(model)
    if input_size is not None:
        spec = dataclasses.replace(spec, input_size=input_size)
    network = fixture_network(MODELS[model], spec.architecture)
    torch_device = torch.device(device)
    kind = VideoNetworkEstimator if spec.clip_window else NetworkEstimator
    return kind(spec, network, torch_device, choose_precision(torch_device, "auto"))


def make_clip(path: Path, frames: int, width: int) -> Path:
    """A 360 clip: a multi-scale texture that turns (yaw) and drifts down a little, H.264."""
    import cv2

    height = width // 2
    rng = np.random.default_rng(0)
    texture = np.zeros((height, width, 3), np.float32)
    for cells in (16, 64, 256):
        coarse = rng.random((cells // 2, cells, 3), dtype=np.float32)
        texture += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) / 3
    texture = np.clip(texture * 255, 0, 255).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18"}
        for index in range(frames):
            image = np.roll(texture, (index // 4, 3 * index), axis=(0, 1))
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def timed_run(clip: Path, out: Path, model: str, device: str) -> dict:
    chosen = estimator(model, device)
    request = EstimateRequest(inputs=(str(clip),), output_dir=str(out), model=model, device=device)
    result = run(request, estimator=chosen).sources[0]
    frames = len(result.written)
    return {"model": model, "device": device, "frames": frames, "wall_s": round(result.timings["wall"], 1),
            "fps": frames / result.timings["wall"],
            "network_s_per_frame": result.timings.get("estimate_predict", result.timings["estimate"]) / frames,
            "estimate_s_per_frame": result.timings["estimate"] / frames}


def speed(folder: Path, frames: int, width: int) -> None:
    import torch

    print(f"speed: {frames} frames of {width}x{width // 2} H.264, cube views, full pipeline; {_load()}")
    clip = make_clip(folder / "clip.mp4", frames, width)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        rows = [timed_run(clip, folder / f"out-{device}-{model}", model, device) for model in MODELS]
        label = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({os.cpu_count()} cores, fp32)"
        print(f"\n  {label}")
        print(f"  {'model':<30} {'fps':>7} {'s/frame':>8} {'estimate s/frame':>17} {'wall s':>7}")
        for row in rows:
            print(f"  {row['model']:<30} {row['fps']:>7.4f} {1 / row['fps']:>8.2f} "
                  f"{row['estimate_s_per_frame']:>17.2f} {row['wall_s']:>7.1f}")
        vda, dav2 = rows
        print(f"  ratio VDA Small / DA V2 Small: {vda['fps'] / dav2['fps']:.3f} of the frame rate "
              f"({dav2['fps'] / vda['fps']:.2f}x the time); {_load()}")
    if not torch.cuda.is_available():
        print("\n  GPU: torch sees no CUDA device on this machine, so no GPU figures were measured here.")


def memory(folder: Path, frames: int, width: int, input_size: int) -> None:
    print(f"\nmemory: {frames} frames of {width}x{width // 2} through Video Depth Anything Small "
          f"(input size {input_size}), cube views; {_load()}")
    clip = make_clip(folder / "long.mp4", frames, width)
    probe = RssProbe(tuple(range(100, frames + 1, 100)) + (frames,))
    request = EstimateRequest(inputs=(str(clip),), output_dir=str(folder / "long-out"), save=("distance", "mask"),
                              progress="json")
    started = time.perf_counter()
    run(request, estimator=estimator("video-depth-anything-small", input_size=input_size), stdout=probe)
    early, late = probe.samples[100], probe.samples[frames]
    print(f"  resident memory {early / 2**20:.1f} MB after frame 100, {late / 2**20:.1f} MB after frame {frames} "
          f"({100 * (late / early - 1):+.2f}%; target within 2%), {time.perf_counter() - started:.0f} s")
    series = ", ".join(f"{n}: {probe.samples[n] / 2**20:.0f}" for n in sorted(probe.samples))
    print(f"  every 100 frames (MB): {series}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=22)
    parser.add_argument("--width", type=int, default=3840)
    parser.add_argument("--long", type=int, default=1000)
    parser.add_argument("--long-width", type=int, default=256)
    parser.add_argument("--long-input-size", type=int, default=56)
    parser.add_argument("--sections", default="speed,memory")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    with tempfile.TemporaryDirectory() as folder:
        if "speed" in sections:
            speed(Path(folder), args.frames, args.width)
        if "memory" in sections:
            memory(Path(folder), args.long, args.long_width, args.long_input_size)


if __name__ == "__main__":
    main()
