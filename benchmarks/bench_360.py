"""Figures of the 360 path: per-stage time of a 4K frame with a real network, peak memory
of an 8K frame through the CLI, and the engine's own overhead and accuracy per view preset.

Not a test: prints figures. Three sections (`--sections`, default all):

`network`: a 3840x1920 frame through the whole still path, in this process, exactly as
`depth360 estimate` runs it: `pipeline.run` (read the PNG, views, Depth Anything V2
Small, alignment, blending, post-processing with calibration, write distance/mask EXRs,
the preview and the sidecar). The
weights follow the reference fixtures' rule (the network's speed does not depend on
their values). Frames alternate between warm caches (as in a video, where sampling
grids and footprints are built once per clip) and cleared caches (as a still in a fresh
CLI process), `--repeats` of each after one warm-up, so both medians are measured side
by side under the same load. Target: everything but the network <= 25% of the frame.

`memory`: `depth360 estimate` on a 7680x3840 PNG in a subprocess; its peak resident
memory is `getrusage(RUSAGE_CHILDREN).ru_maxrss` of a wrapper process that runs only it.
Target: <= 6 GB.

`oracle`: the engine's overhead (projection, alignment, blending, calibration) for each
view preset with an oracle plug-in that returns each view's true inverse planar depth of
an analytic room under a random per-view scale, shift, +-10% linear ramp and 0.5% noise
(`predict` costs almost nothing), with AbsRel after a global affine fit.

    .venv/bin/python benchmarks/bench_360.py [--sections network,memory,oracle] [--repeats 5]

The machine is shared: the load average is printed with every section.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.reference_fixtures

from depth360.estimators.panorama.equirect import ray_directions  # noqa: E402
from depth360.estimators.panorama.fusion import estimate_equirect  # noqa: E402

MODEL = "depth-anything-v2-small"
FIXTURE = "depth_anything_v2_vits"
STAGES = ("read", "projection", "network", "alignment", "blending", "post", "writing")
# The pipeline's busy seconds per stage (the 360 fusion's own stages inside "estimate").
PIPELINE_STAGES = {"read": "read", "estimate_project": "projection", "estimate_predict": "network",
                   "estimate_align": "alignment", "estimate_merge": "blending", "post": "post",
                   "write": "writing"}
ROOM_CENTRE = np.array([0.3, -0.2, 0.1])  # camera position inside the room, metres
ROOM_HALF_SIZE = np.array([3.0, 2.0, 1.4])


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (5 min {five:.2f}) on {os.cpu_count()} cores"


def synthetic_panorama(width: int, seed: int = 0) -> np.ndarray:
    """uint8 BGR [W/2, W, 3] texture with detail at several scales (a stand-in for footage)."""
    import cv2

    rng = np.random.default_rng(seed)
    height = width // 2
    frame = np.zeros((height, width, 3), np.float32)
    for cells in (16, 64, 256):
        coarse = rng.random((cells // 2, cells, 3), dtype=np.float32)
        frame += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) / 3
    return np.clip(frame * 255, 0, 255).astype(np.uint8)


def write_fixture_weights(models_dir: Path) -> None:
    """Depth Anything V2 Small weights by the fixtures' rule, under the official file name."""
    import torch

    from depth360.estimators.models import registry
    from tests.reference_fixtures import fixture_state_dict

    torch.save(fixture_state_dict(FIXTURE), models_dir / registry.get(MODEL).checkpoint)


def _clear_engine_caches() -> None:
    """Forget sampling grids, footprints and weights, as a fresh process has none."""
    from depth360.estimators.panorama import blending, equirect, projection

    for cached in (projection.footprint, projection._view_source_maps, projection._view_rays,
                   projection._view_cos, blending._footprint_weights, blending._weight_sum,
                   equirect._ray_directions_cached):
        cached.cache_clear()


def still_frame(path: Path, estimator, out_dir: Path) -> dict[str, float]:
    """One still through the pipeline, as `depth360 estimate` runs it; seconds per stage."""
    from depth360.estimators.pipeline import EstimateRequest, run

    with tempfile.TemporaryDirectory(dir=out_dir) as fresh:  # a new folder: nothing to resume
        request = EstimateRequest(inputs=(str(path),), output_dir=fresh, model=MODEL, views="cube")
        result = run(request, estimator=estimator).sources[0]
        sidecar = json.loads(result.sidecar.read_text())
    times = {name: result.timings.get(key, 0.0) for key, name in PIPELINE_STAGES.items()}
    times["_view_size"] = estimator.native_size
    times["_wall"] = result.timings["wall"]
    times["_views"] = sidecar["model"]["views"]
    return times


def _share(times: dict[str, float]) -> float:
    total = sum(times[s] for s in STAGES)
    return (total - times["network"]) / total


def section_network(width: int, repeats: int, work: Path) -> None:
    import cv2
    import torch

    from depth360.estimators.models.network_estimator import load_estimator

    models = work / "models"
    models.mkdir()
    write_fixture_weights(models)
    path = work / f"pano{width}.png"
    cv2.imwrite(str(path), synthetic_panorama(width))
    estimator = load_estimator(MODEL, models, "cpu")
    out = work / "out"
    out.mkdir()
    print(f"\n[network] {width}x{width // 2} frame, {MODEL} (fixture-rule weights), CPU float32, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads; {_load()}")
    first = still_frame(path, estimator, out)
    print(f"  first frame of the process (imports, torch warm-up): {sum(first[s] for s in STAGES):.2f} s, "
          f"network {first['network']:.2f} s; cube views of {first['_view_size']} px")
    runs: dict[str, list[dict[str, float]]] = {"warm caches": [], "cleared caches": []}
    for _ in range(repeats):
        runs["warm caches"].append(still_frame(path, estimator, out))
        _clear_engine_caches()
        runs["cleared caches"].append(still_frame(path, estimator, out))
    print(f"  medians of {repeats} frames each, interleaved; {_load()}")
    print("  " + "".join(f"{s:>12s}" for s in ("caches", *STAGES, "frame", "not network")))
    for label, frames in runs.items():
        medians = [statistics.median(f[s] for f in frames) for s in STAGES]
        frame = statistics.median(sum(f[s] for s in STAGES) for f in frames)
        share = statistics.median(_share(f) for f in frames)
        verdict = "ok" if share <= 0.25 else "MISSES 25%"
        print("  " + f"{label.split()[0]:>12s}" + "".join(f"{m:12.3f}" for m in medians)
              + f"{frame:12.2f}{share:11.1%}  {verdict}")


def section_memory(width: int, work: Path) -> None:
    import cv2

    models = work / "models"
    if not models.is_dir():
        models.mkdir()
        write_fixture_weights(models)
    path = work / f"pano{width}.png"
    cv2.imwrite(str(path), synthetic_panorama(width, seed=1))
    out = work / f"out{width}"
    command = [str(Path(sys.executable).with_name("depth360")), "estimate", str(path), "-o", str(out),
               "--model", MODEL, "--models-dir", str(models), "--views", "cube"]
    # A wrapper whose only child is the CLI, so RUSAGE_CHILDREN is that child's peak alone.
    wrapper = (
        "import resource, subprocess, sys, json\n"
        f"done = subprocess.run({command!r}, capture_output=True, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'rc': done.returncode, 'peak_kib': peak, 'err': done.stderr[-2000:]}))\n"
    )
    print(f"\n[memory] depth360 estimate on a {width}x{width // 2} PNG in a subprocess; {_load()}")
    start = time.perf_counter()
    result = json.loads(subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True,
                                       check=True).stdout.strip().splitlines()[-1])
    seconds = time.perf_counter() - start
    if result["rc"] != 0:
        print(f"  FAILED (exit {result['rc']}): {result['err']}")
        return
    sidecar = json.loads((out / f"{path.stem}.json").read_text())
    peak_gb = result["peak_kib"] * 1024 / 1e9
    print(f"  peak resident memory {peak_gb:.2f} GB ({result['peak_kib'] / 2**20:.2f} GiB): "
          f"{'ok' if peak_gb <= 6.0 else 'MISSES'} the 6 GB target; wall {seconds:.1f} s")
    print(f"  sidecar timings (s): {sidecar['timings_s']}")


# --- oracle section -------------------------------------------------------------------


def room_distance(rays: np.ndarray) -> np.ndarray:
    """Distance along unit rays [..., 3] to the walls of an axis-aligned room."""
    rays = np.asarray(rays, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(rays > 0, (ROOM_HALF_SIZE + ROOM_CENTRE) / rays, (-ROOM_HALF_SIZE + ROOM_CENTRE) / rays)
    return np.where(np.abs(rays) < 1e-12, np.inf, t).min(axis=-1)


class RampedOracle:
    """Each view's true inverse planar depth of the room, distorted per view (see the module doc)."""

    kind = "relative-disparity"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def predict(self, images: np.ndarray, rays: np.ndarray) -> np.ndarray:
        out = []
        for view_rays in rays.astype(np.float64):
            inverse = 1.0 / room_distance(view_rays)
            axis = view_rays.reshape(-1, 3).mean(axis=0)
            if np.linalg.norm(axis) > 0.5:
                inverse = inverse / (view_rays @ (axis / np.linalg.norm(axis)))
            h, w = inverse.shape
            y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
            angle = self.rng.uniform(0, 2 * np.pi)
            d = inverse * self.rng.uniform(0.5, 2.0) * (1 + 0.1 * (np.cos(angle) * x + np.sin(angle) * y))
            d *= 1 + 0.005 * self.rng.standard_normal(d.shape)
            out.append((d + self.rng.uniform(-0.3, 0.3) * np.ptp(d)).astype(np.float32))
        return np.stack(out)


def absrel(disparity: np.ndarray, truth: np.ndarray) -> float:
    a, b = np.polyfit(disparity.ravel().astype(np.float64), truth.ravel(), 1)
    return float(np.mean(np.abs(a * disparity + b - truth) / truth))


def section_oracle(width: int, presets: list[str], repeats: int) -> None:
    height = width // 2
    image = np.full((height, width, 3), 0.5, dtype=np.float32)
    truth = 1.0 / room_distance(ray_directions(height, width))
    print(f"\n[oracle] 360 engine on a {width}x{height} frame, oracle estimator (views at the panorama's "
          f"density), {repeats} warm repeats (first run = cold caches); {_load()}")
    for preset in presets:
        runs = []
        for repeat in range(repeats + 1):
            start = time.perf_counter()
            result = estimate_equirect(image, RampedOracle(seed=repeat), preset)
            total = time.perf_counter() - start
            runs.append((total, result.timings, absrel(result.disparity, truth)))
        warm = runs[1:]
        stages = {k: statistics.median(r[1][k] for r in warm) for k in warm[0][1]}
        view = result.views[0]
        print(
            f"  {preset:9s} {len(result.views):2d} views of {view.width}x{view.height}: "
            f"cold {runs[0][0]:.2f}s, warm {statistics.median(r[0] for r in warm):.2f}s "
            f"({', '.join(f'{k} {v:.2f}' for k, v in stages.items())}), "
            f"AbsRel {statistics.median(r[2] for r in warm):.3%}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak memory of this process so far {peak:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="network,memory,oracle")
    parser.add_argument("--width", type=int, default=3840, help="frame width of the network and oracle sections")
    parser.add_argument("--memory-width", type=int, default=7680)
    parser.add_argument("--presets", default="cube,ico,equirect", help="oracle section presets")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sections = args.sections.split(",")
    unknown = set(sections) - {"network", "memory", "oracle"}
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="bench360-") as folder:
        work = Path(folder)
        if "network" in sections:
            section_network(args.width, args.repeats, work)
        if "memory" in sections:
            section_memory(args.memory_width, work)
    if "oracle" in sections:
        section_oracle(args.width, args.presets.split(","), args.repeats)


if __name__ == "__main__":
    main()
