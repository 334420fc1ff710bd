"""Overhead of `--cluster`: a cluster job with one worker node against the same job in one process.

    .venv/bin/python benchmarks/bench_cluster.py [--frames 10] [--size 256x128] [--repeats 3]

A 360 image sequence (a textured room with a moving patch, `--size` per frame) through
Depth Anything V2 Small (weights made by the reference fixtures' rule: speed does not
depend on the values), cube views, default options. A head (no CPU) and one worker
node (one Ray CPU, which a chunk turns into all of this machine's cores) run as separate
processes on 127.0.0.1 (tests.cluster_harness); the cluster is started once, before the
timings, as a farm's would be. Then, side by side `--repeats` times (in turn first and
second, so that a drifting load favours neither): `depth360 estimate` alone, and
`depth360 estimate --cluster ray:127.0.0.1:6379` (default chunk size), each a fresh
process into a fresh folder, timed from start to exit. Prints every run, the
medians, their ratio (target <= 1.15), and whether the two runs' files are identical.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from depth360.estimators.models import registry  # noqa: E402
from tests.cluster_harness import LocalCluster, can_make_namespaces  # noqa: E402
from tests.engine.test_cluster import _sequence  # noqa: E402
from tests.reference_fixtures import fixture_state_dict  # noqa: E402

DEPTH360 = str(Path(sys.executable).with_name("depth360"))


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.suffix != ".json"}


def _timed(cluster: LocalCluster, args: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(cluster.command([DEPTH360, "estimate", *args]), capture_output=True, text=True,
                            env=cluster.environment())
    took = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"depth360 failed ({result.returncode}): {result.stderr[-2000:]}")
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--size", default="256x128", help="WIDTHxHEIGHT of the 360 frames")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-frames", type=int, default=None, help="default: the engine's")
    args = parser.parse_args(argv)
    why_not = can_make_namespaces()
    if why_not is not None:
        raise SystemExit(f"bench_cluster {why_not}")
    width, height = (int(v) for v in args.size.split("x"))
    root = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    frames = _sequence(root / "shot", args.frames, width=width, height=height)
    models = root / "models"
    models.mkdir()
    small = registry.get("depth-anything-v2-small")
    torch.save(fixture_state_dict("depth_anything_v2_vits"), models / small.checkpoint)
    options = [str(frames), "--model", small.name, "--models-dir", str(models), "--progress", "none"]
    chunking = ["--chunk-frames", str(args.chunk_frames)] if args.chunk_frames else []
    load = os.getloadavg()[0]
    with LocalCluster(root / "cluster") as cluster:
        cluster.add_workers("worker")
        single, spread = [], []
        for repeat in range(args.repeats):
            runs = [(single, [*options, "-o", str(root / f"single{repeat}")]),
                    (spread, [*options, "-o", str(root / f"cluster{repeat}"), "--cluster", cluster.address, *chunking])]
            for times, run_args in runs if repeat % 2 == 0 else runs[::-1]:  # ABBA: a drifting load favours neither
                times.append(_timed(cluster, run_args))
            print(f"run {repeat + 1}: single process {single[-1]:.1f} s, cluster (1 worker) {spread[-1]:.1f} s, "
                  f"ratio {spread[-1] / single[-1]:.3f}", flush=True)
    same = _digests(root / "single0" / "shot") == _digests(root / "cluster0" / "shot")
    median_single, median_cluster = statistics.median(single), statistics.median(spread)
    print(f"{args.frames} frames {width}x{height}, Depth Anything V2 Small, cube views, {os.cpu_count()} CPU cores, "
          f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(f"median single process {median_single:.1f} s ({args.frames / median_single:.3f} fps), "
          f"median cluster {median_cluster:.1f} s: ratio {median_cluster / median_single:.3f} (target <= 1.15)")
    print(f"files of the two runs bit-identical: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
