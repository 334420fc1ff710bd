"""Issue 16, acceptance 2: the device trip on this CPU against the numpy trip, a 4K frame, side by side.

Not a test: prints figures. Two sections (`--sections`, default both):

`trip`: one 3840x1920 frame of an outdoor scene (the project's Cycles render, upsampled;
half of it sky) through the whole per-frame trip after the network, both ways, as the
pipeline runs them: cube views, the estimator, alignment, blending, sky, then the post
stage (stabiliser with a full history, calibration). The estimator hands back predictions
made once (an oracle's), so both trips see the same numbers and neither pays for a network.
The frames alternate numpy / device; the first of each is a warm-up (caches, as in a
video); medians of `--repeats`. Each pair's outputs are compared (largest difference of
distance and disparity relative to their largest value, masks).

`still`: a 4K PNG through `pipeline.run` with Depth Anything V2 Small (the reference
fixtures' weights) on the CPU, as `depth360 estimate` runs it, once with the numpy trip
(`FusionFrameEstimator`) and once with the device trip (`DeviceFusionFrameEstimator`, the
default for a network), alternating; medians of `--repeats` of the wall time and of each
stage's busy time.

    .venv/bin/python benchmarks/bench_device_cpu.py [--sections trip,still] [--repeats 5]

The machine is shared: the load average is printed with every section.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.groundtruth and tests.reference_fixtures

WIDTH = 3840


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (5 min {five:.2f}) on {os.cpu_count()} cores"


class Replay:
    """An estimator that gives back what an oracle said the first time, call by call (no cost)."""

    kind = "relative-disparity"
    native_size = 518
    batch_size = 6  # the six cube views in one call, on both trips

    def __init__(self, oracle):
        self.oracle = oracle
        self.answers: list[np.ndarray] = []
        self.calls = 0
        import torch

        self.device = torch.device("cpu")

    def predict(self, images, rays):
        if self.calls >= len(self.answers):
            self.answers.append(np.asarray(self.oracle.predict(images, rays), np.float32))
        answer = self.answers[self.calls % len(self.answers)]
        self.calls += 1
        return answer

    def restart(self) -> None:
        self.calls = 0


def outdoor_4k():
    """A 4K frame with sky (the outdoor render upsampled) and its oracle."""
    import cv2

    from tests.engine.test_outdoor import SkyOracle
    from tests.groundtruth import render_mono

    truth = render_mono("outdoor", 512, samples=4, seed=2)
    rgb = cv2.resize(np.asarray(truth.rgb, np.float32), (WIDTH, WIDTH // 2), interpolation=cv2.INTER_CUBIC)
    return np.clip(rgb, 0, 1), SkyOracle(truth.distance, seed=9, sky_lift=0.02)


def _compare(a, b) -> str:
    worst = max(float(np.abs(a.distance - b.distance).max() / np.abs(a.distance).max()),
                float(np.abs(a.disparity - b.disparity).max() / np.abs(a.disparity).max()))
    return f"largest difference {worst:.1e} of the largest value, masks {'identical' if np.array_equal(a.mask, b.mask) else 'DIFFER'}"


def section_trip(repeats: int) -> None:
    import torch

    from depth360.estimators.device.fusion import CPU_TRIP_THREADS
    from depth360.estimators.pipeline import EstimateRequest
    from depth360.estimators.pipeline.device_frames import DeviceFusionFrameEstimator
    from depth360.estimators.pipeline.frame_depth import make_stabiliser, postprocess_frame
    from depth360.estimators.pipeline.frame_estimators import FusionFrameEstimator
    from depth360.estimators.pipeline.settings import resolve_settings

    rgb, oracle = outdoor_4k()
    settings = resolve_settings(EstimateRequest(inputs=("frame.png",), output_dir=".", views="cube"),
                                "relative-disparity")
    replay = Replay(oracle)
    trips = {"numpy": FusionFrameEstimator(replay, "cube"), "device": DeviceFusionFrameEstimator(replay, "cube")}
    stabilisers = {"numpy": make_stabiliser(settings), "device": trips["device"].make_stabiliser(settings)}
    posts = {"numpy": postprocess_frame, "device": trips["device"].postprocess_frame}
    print(f"\n[trip] {WIDTH}x{WIDTH // 2} outdoor frame (half sky), cube views of 518 px, stabiliser and "
          f"calibration; torch {torch.__version__}, {torch.get_num_threads()} threads (the device trip's own work: "
          f"{CPU_TRIP_THREADS}); {_load()}")
    runs: dict[str, list[dict[str, float]]] = {"numpy": [], "device": []}
    for number in range(1, repeats + 2):
        outputs = {}
        for name, trip in trips.items():
            replay.restart()
            start = time.perf_counter()
            prediction = trip.estimate(rgb[None])[0]
            fused = time.perf_counter()
            outputs[name] = posts[name](number, prediction, rgb, settings, stabilisers[name], True)
            end = time.perf_counter()
            if number > 1:
                runs[name].append({**trip.last_timings, "post": end - fused, "frame": end - start})
        if number > 1:
            print(f"  frame {number}: numpy {runs['numpy'][-1]['frame']:.2f} s, device {runs['device'][-1]['frame']:.2f} s; "
                  + _compare(outputs["numpy"], outputs["device"]))
    _report(runs, repeats)


def _report(runs: dict[str, list[dict[str, float]]], repeats: int) -> None:
    stages = [k for k in runs["numpy"][0] if k != "frame"] + ["frame"]
    print(f"  medians of {repeats} frames each, interleaved; {_load()}")
    print("  " + f"{'trip':>8s}" + "".join(f"{s:>12s}" for s in stages))
    for name, frames in runs.items():
        print("  " + f"{name:>8s}" + "".join(f"{statistics.median(f.get(s, 0.0) for f in frames):12.3f}" for s in stages))
    numpy_frame = statistics.median(f["frame"] for f in runs["numpy"])
    device_frame = statistics.median(f["frame"] for f in runs["device"])
    verdict = "not slower" if device_frame <= numpy_frame else "SLOWER"
    print(f"  device / numpy = {device_frame / numpy_frame:.2f}: the device trip is {verdict} on this CPU")


def section_still(repeats: int, work: Path) -> None:
    import cv2
    import torch

    from benchmarks.bench_360 import MODEL, synthetic_panorama, write_fixture_weights
    from depth360.estimators.models.network_estimator import load_estimator
    from depth360.estimators.pipeline import EstimateRequest, run
    from depth360.estimators.pipeline.device_frames import DeviceFusionFrameEstimator
    from depth360.estimators.pipeline.frame_estimators import FusionFrameEstimator

    models = work / "models"
    models.mkdir()
    write_fixture_weights(models)
    path = work / "pano.png"
    cv2.imwrite(str(path), synthetic_panorama(WIDTH))
    estimator = load_estimator(MODEL, models, "cpu")
    print(f"\n[still] {WIDTH}x{WIDTH // 2} PNG through pipeline.run, {MODEL} (fixture-rule weights), CPU float32, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads; {_load()}")
    runs: dict[str, list[dict[str, float]]] = {"numpy": [], "device": []}
    for repeat in range(repeats + 1):
        for name, adapter in (("numpy", FusionFrameEstimator), ("device", DeviceFusionFrameEstimator)):
            with tempfile.TemporaryDirectory(dir=work) as out:
                request = EstimateRequest(inputs=(str(path),), output_dir=out, model=MODEL, views="cube")
                result = run(request, frame_estimator=adapter(estimator, "cube")).sources[0]
            if repeat:
                timings = result.timings
                runs[name].append({"network": timings.get("estimate_predict", 0.0),
                                   "not network": timings["wall"] - timings.get("estimate_predict", 0.0),
                                   "frame": timings["wall"]})
    _report(runs, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="trip,still")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sections = args.sections.split(",")
    unknown = set(sections) - {"trip", "still"}
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}")
    if "trip" in sections:
        section_trip(args.repeats)
    if "still" in sections:
        with tempfile.TemporaryDirectory(prefix="bench-device-") as folder:
            section_still(args.repeats, Path(folder))


if __name__ == "__main__":
    main()
