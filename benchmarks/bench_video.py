"""Video pipeline figures: whole-pipeline vs bare-estimator throughput, and memory over a long video.

    .venv/bin/python benchmarks/bench_video.py [--frames 60] [--width 512] [--long 1000]

1. Throughput: a synthetic 360 video (H.264) through `pipeline.run` (decode, estimate,
   post-process, stabilise, write distance+mask EXRs and previews) against the same
   estimator's `predict` on the same frames already in memory (no I/O, no post). The
   estimator is Depth Anything V2 Small, the real network on the CPU, with weights made
   by the reference fixtures' rule (its speed does not depend on the values; no download);
   `--estimator cnn` uses a small fixed-weight CNN instead. Target: pipeline >= 85% of bare.
2. Memory: resident set size after frame 100 and after frame 1000 of a 1,000-frame
   video with a cheap estimator (target: within 5%).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from depth360.estimators.media import video_io
from depth360.estimators.pipeline import EstimateRequest, run
from depth360.estimators.pipeline.frame_estimators import PlainFrameEstimator


class ConvEstimator:
    """A fixed random 6-layer CNN: a compute-bound stand-in for a depth network."""

    kind = "relative-disparity"

    def __init__(self, channels: int = 48, layers: int = 6):
        import torch

        torch.manual_seed(0)
        blocks = [torch.nn.Conv2d(3, channels, 3, padding=1), torch.nn.ReLU()]
        for _ in range(layers - 2):
            blocks += [torch.nn.Conv2d(channels, channels, 3, padding=1), torch.nn.ReLU()]
        blocks += [torch.nn.Conv2d(channels, 1, 3, padding=1), torch.nn.Softplus()]
        self.network = torch.nn.Sequential(*blocks).eval()

    def predict(self, images, rays):
        import torch

        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
            return self.network(tensor)[:, 0].numpy().astype(np.float32) + 0.1


def depth_anything_small():
    """Depth Anything V2 Small on the CPU with fixture-rule weights, as the engine loads it."""
    import sys

    import torch

    from depth360.estimators.models import registry
    from depth360.estimators.models.network_estimator import NetworkEstimator

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.reference_fixtures
    from tests.reference_fixtures import fixture_network

    spec = registry.get("depth-anything-v2-small")
    network = fixture_network("depth_anything_v2_vits", spec.architecture)
    return NetworkEstimator(spec, network, torch.device("cpu"))


class CheapEstimator:
    kind = "relative-disparity"

    def predict(self, images, rays):
        return (0.2 + images.mean(axis=-1)).astype(np.float32)


def make_video(path: Path, frames: int, width: int) -> Path:
    height = width // 2
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            image = np.roll(base, index, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


class RssProbe:
    """A stdout stand-in for progress="json": records RSS at chosen frames."""

    def __init__(self, at: tuple[int, ...]):
        self.at = set(at)
        self.samples: dict[int, int] = {}

    def write(self, text: str) -> None:
        for line in text.splitlines():
            if line.strip():
                frame = json.loads(line)["frame"]
                if frame in self.at:
                    self.samples[frame] = rss_bytes()

    def flush(self) -> None:
        pass


def throughput(folder: Path, frames: int, width: int, batch: int, which: str) -> dict:
    video = make_video(folder / "clip.mp4", frames, width)
    estimator = depth_anything_small() if which == "depth-anything-v2-small" else ConvEstimator()
    decoded = np.stack([rgb for _, rgb in video_io.read_frames(video)])
    rays = np.zeros_like(decoded[:batch])
    estimator.predict(decoded[:batch], rays)  # warm-up
    start = time.perf_counter()
    for i in range(0, frames, batch):
        chunk = decoded[i : i + batch]
        estimator.predict(chunk, rays[: len(chunk)])
    bare = frames / (time.perf_counter() - start)
    del decoded
    request = EstimateRequest(inputs=(str(video),), output_dir=str(folder / "out"))
    result = run(request, frame_estimator=PlainFrameEstimator(estimator, batch_size=batch)).sources[0]
    pipeline = len(result.written) / result.timings["wall"]
    return {"estimator": which, "frames": frames, "size": f"{width}x{width // 2}", "bare_fps": round(bare, 3),
            "pipeline_fps": round(pipeline, 3), "ratio": round(pipeline / bare, 3),
            "estimator_busy_fraction": round(result.timings["estimate"] / result.timings["wall"], 3),
            "stage_busy_s": {k: round(v, 2) for k, v in result.timings.items()}}


def memory(folder: Path, frames: int, width: int) -> dict:
    video = make_video(folder / "long.mp4", frames, width)
    probe = RssProbe((100, frames))
    request = EstimateRequest(inputs=(str(video),), output_dir=str(folder / "long_out"), save=("distance", "mask"),
                              progress="json")
    run(request, frame_estimator=PlainFrameEstimator(CheapEstimator()), stdout=probe)
    early, late = probe.samples[100], probe.samples[frames]
    return {"frames": frames, "size": f"{width}x{width // 2}", "rss_mb_after_100": round(early / 2**20, 1),
            f"rss_mb_after_{frames}": round(late / 2**20, 1), "growth": round(late / early - 1, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--long", type=int, default=1000)
    parser.add_argument("--long-width", type=int, default=256)
    parser.add_argument("--estimator", choices=("depth-anything-v2-small", "cnn"), default="depth-anything-v2-small")
    parser.add_argument("--skip-memory", action="store_true", help="throughput only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        speed = throughput(folder, args.frames, args.width, args.batch, args.estimator)
        print(f"throughput: pipeline {speed['pipeline_fps']} fps vs bare estimator {speed['bare_fps']} fps "
              f"= {100 * speed['ratio']:.1f}% (target >= 85%); estimator busy {100 * speed['estimator_busy_fraction']:.1f}% "
              f"of the pipeline's wall time; {speed}")
        if not args.skip_memory:
            rss = memory(folder, args.long, args.long_width)
            print(f"memory: {rss} (target growth within 5%)")


if __name__ == "__main__":
    main()
