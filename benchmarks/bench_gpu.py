"""Issue 16: a 360 clip on a GPU, decode to distance EXR, with Depth Anything V2 Small, Base and Large.

For every frame size (`--sizes`, default 3840 and 7680 wide) and model (`--models`, default
small, base, large), with weights made by the reference fixtures' rule (speed does not
depend on their values; no download):

- end to end: a synthetic clip of `--frames` frames (H.264, or `--input png` a PNG
  sequence) through `pipeline.run` exactly as `depth360 estimate CLIP --save distance`
  runs it (decode, cube views, network, alignment, blending, sky, stabiliser, calibration,
  distance EXRs written by the worker processes), after a warm-up run of `--warmup` frames
  (caches, cuDNN's choices); fps = frames written / wall time;
- network only: one frame's six 518 px views through the network, as the trip batches
  them, median of `--repeats`; fps = 1 / that;
- milliseconds per frame of each stage (busy time; the stages overlap on their threads) and
  the share of the frame that is not the network;
- peak GPU memory (torch.cuda.max_memory_allocated) of the end-to-end run.

Targets (issue 16, one H100): Small at 4K >= 30 fps end to end, Large >= 10 fps, everything
but the network <= 15% of the frame. Results go to `--json` (default bench_gpu.json).

Without CUDA it says so and exits 2; `--device cpu` runs on the CPU instead (small sizes:
`--device cpu --frames 2 --sizes 256 --models small --repeats 1 --warmup 0`, which a test runs so that this
script cannot rot). `--compile` also times the network under torch.compile.

    .venv/bin/python benchmarks/bench_gpu.py [--sizes 3840,7680] [--models small,base,large] [--frames 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.reference_fixtures and benchmarks.bench_360

MODELS = {"small": ("depth-anything-v2-small", "depth_anything_v2_vits"),
          "base": ("depth-anything-v2-base", "depth_anything_v2_vitb"),
          "large": ("depth-anything-v2-large", "depth_anything_v2_vitl")}
TARGET_FPS = {("small", 3840): 30.0, ("large", 3840): 10.0}
TARGET_NOT_NETWORK = 0.15
STAGES = ("read", "estimate_project", "estimate_predict", "estimate_align", "estimate_merge", "estimate_sky",
          "post", "write")


def fixture_network(spec, fixture: str):
    """The spec's network with weights by the fixtures' rule: the official keys through the official
    conversion where the fixtures' manifests are at hand, else the rule on the network's own keys."""
    import torch

    from depth360.estimators.models import networks
    from depth360.estimators.models.weights import build_network
    from tests.reference_fixtures import fixture_state_dict, fixture_value

    network = build_network(spec)
    try:
        state = networks.convert_official_state_dict(spec.architecture, fixture_state_dict(fixture))
        network.load_state_dict(state, strict=False)
        source = "fixture manifests"
    except FileNotFoundError:
        state = {key: torch.from_numpy(fixture_value(key, tuple(value.shape))) for key, value in
                 network.state_dict().items() if value.dtype.is_floating_point}
        network.load_state_dict(state, strict=False)
        source = "fixture rule on the network's keys"
    return network.eval(), source


def write_clip(folder: Path, width: int, frames: int, kind: str) -> Path:
    """A synthetic equirect clip (a textured panorama turning slowly): an H.264 MP4 or PNG files."""
    import cv2

    from benchmarks.bench_360 import synthetic_panorama

    base = synthetic_panorama(width)  # BGR uint8
    pictures = (np.roll(base, 7 * n, axis=1) for n in range(frames))
    if kind == "png":
        clip = folder / f"clip{width}"
        clip.mkdir()
        for n, picture in enumerate(pictures, start=1):
            cv2.imwrite(str(clip / f"frame_{n:05d}.png"), picture, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        return clip
    import av

    path = folder / f"clip{width}.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, width // 2, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for picture in pictures:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture[..., ::-1]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def network_only(estimator, width: int, repeats: int, views: int = 6, batch: int = 6) -> float:
    """Median seconds of one frame's cube views (the trip's size for this width) through the network."""
    import torch

    from depth360.estimators.panorama.fusion import native_view_size

    side = native_view_size(estimator, "cube", width)
    images = torch.rand((views, side, side, 3), device=estimator.device)
    times = []
    for repeat in range(repeats + 1):
        _synchronize(estimator.device)
        start = time.perf_counter()
        # The warm-up pass: the batches' own shapes on a GPU (cuDNN chooses per shape), one view on a CPU.
        last = 1 if repeat == 0 and estimator.device.type == "cpu" else views
        for first in range(0, last, batch):
            estimator.predict_tensor(images[first:min(first + batch, last)])
        _synchronize(estimator.device)
        if repeat:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def end_to_end(estimator, clip: Path, frames: int, work: Path, model: str, warmup: int) -> dict:
    """One run of the clip through the pipeline (after a `warmup`-frame run): fps, ms per stage, peak memory."""
    import torch

    from depth360.estimators.pipeline import EstimateRequest, run

    def once(count: int, out: Path):
        request = EstimateRequest(inputs=(str(clip),), output_dir=str(out), model=model, views="cube",
                                  save=("distance",), frames=(1, count), progress="none")
        return run(request, estimator=estimator).sources[0]

    if warmup:
        once(min(warmup, frames), work / "warm-up")
    if estimator.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(estimator.device)
    result = once(frames, work / "measured")
    timings = result.timings
    count = max(len(result.written), 1)
    stages = {stage: 1000.0 * timings.get(stage, 0.0) / count for stage in STAGES}
    frame_ms = 1000.0 * timings["wall"] / count
    figures = {"frames": len(result.written), "wall_s": timings["wall"], "fps": len(result.written) / timings["wall"],
               "ms_per_stage": stages, "frame_ms": frame_ms,
               "not_network_share": 1.0 - stages["estimate_predict"] / frame_ms if frame_ms else None}
    if estimator.device.type == "cuda":
        figures["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(estimator.device) / 2**30
    return figures


def measure(name: str, width: int, args, work: Path, clip: Path) -> dict:
    import torch

    from depth360.estimators.models import registry
    from depth360.estimators.models.devices import choose_device, choose_precision
    from depth360.estimators.models.network_estimator import NetworkEstimator

    model, fixture = MODELS[name]
    spec = registry.get(model)
    device = choose_device(args.device)
    network, weights = fixture_network(spec, fixture)
    estimator = NetworkEstimator(spec, network, device, choose_precision(device, args.precision))
    row = {"model": model, "width": width, "height": width // 2, "weights": weights,
           "precision": estimator.precision, "device": str(device)}
    row["network_only_fps"] = 1.0 / network_only(estimator, width, args.repeats)
    row.update(end_to_end(estimator, clip, args.frames, work / f"{name}-{width}", model, args.warmup))
    if args.compile:
        estimator.network = torch.compile(estimator.network)
        network_only(estimator, width, 1)  # compiles
        row["network_only_fps_compiled"] = 1.0 / network_only(estimator, width, args.repeats)
    target = TARGET_FPS.get((name, width))
    row["target_fps"] = target
    row["meets_target"] = None if target is None else row["fps"] >= target and (
        row["not_network_share"] is not None and row["not_network_share"] <= TARGET_NOT_NETWORK)
    del estimator, network
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def machine(device_name: str) -> dict:
    import torch

    described = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                 "device": device_name, "load_average": os.getloadavg()[0]}
    if device_name.startswith("cuda"):
        properties = torch.cuda.get_device_properties(0)
        described.update(gpu=properties.name, gpu_memory_gib=properties.total_memory / 2**30,
                         cuda=torch.version.cuda)
    return described


def _print_row(row: dict) -> None:
    stages = ", ".join(f"{k.replace('estimate_', '')} {v:.1f}" for k, v in row["ms_per_stage"].items())
    memory = f", peak GPU {row['peak_gpu_memory_gib']:.2f} GiB" if "peak_gpu_memory_gib" in row else ""
    verdict = "" if row["target_fps"] is None else f"  target {row['target_fps']:.0f} fps: " + (
        "met" if row["meets_target"] else "MISSED")
    print(f"  {row['model']:26s} {row['width']}x{row['height']}: {row['fps']:.2f} fps end to end "
          f"({row['frame_ms']:.1f} ms/frame, not network {row['not_network_share']:.1%}), network only "
          f"{row['network_only_fps']:.2f} fps{memory}{verdict}\n    ms per frame: {stages}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--sizes", default="3840,7680", help="frame widths (height = width / 2)")
    parser.add_argument("--models", default="small,base,large")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5, help="network-only timings (after one warm-up)")
    parser.add_argument("--warmup", type=int, default=2, help="frames of the end-to-end warm-up run (0: none)")
    parser.add_argument("--input", choices=("video", "png"), default="video")
    parser.add_argument("--compile", action="store_true", help="also time the network under torch.compile")
    parser.add_argument("--json", default="bench_gpu.json")
    args = parser.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu: torch sees no CUDA device here; nothing measured (use --device cpu to run on the CPU)",
              file=sys.stderr)
        return 2
    models = args.models.split(",")
    if unknown := set(models) - set(MODELS):
        parser.error(f"unknown model(s) {', '.join(sorted(unknown))}; choose from {', '.join(MODELS)}")
    sizes = [int(size) for size in args.sizes.split(",")]
    report = {"machine": machine(args.device), "frames": args.frames, "input": args.input, "results": []}
    print(f"[bench_gpu] {report['machine']}")
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as folder:
        work = Path(folder)
        for width in sizes:
            clip = write_clip(work, width, args.frames, args.input)
            for name in models:
                row = measure(name, width, args, work, clip)
                report["results"].append(row)
                _print_row(row)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"  written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
