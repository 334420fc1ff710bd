"""Cost of stereo-guided depth against the network alone, per 4K frame (issue 14, point 4).

Not a test: prints figures. Both runs go through the whole still path in this process, as
`depth360 estimate` runs it (`pipeline.run`: read the PNG, estimate, post-process, write the
distance and mask EXRs, the preview and the sidecar), with Depth Anything V2 Small (weights
by the reference fixtures' rule: speed does not depend on their values), cube views:

- network alone: the left eye, 3840 x 1920, as a mono 360 still;
- stereo-guided: the top-bottom frame (each eye 3840 x 1920) with `--layout top-bottom`: the
  same network on the same left eye, plus the stereo (matched at most 1024 wide) and the fit;
- stereo-guided with the far field matched again (what an open scene costs: its first fit puts
  more than guided.FAR_SHARES[0] of the frame beyond the stereo's reach; this room-like frame does not,
  so the run forces it).

The frame is bench_stereo's synthetic pair (a multi-scale texture seen by two eyes with
room-like disparities). Runs alternate, `--repeats` of each after one warm-up of each, so
the medians are taken side by side under the same load; the order turns by one each repeat (the
run right after the network-alone one measured up to 0.15x slower in a fixed order). Target: guided <= 1.25 x alone.

    .venv/bin/python benchmarks/bench_guided.py [--repeats 5] [--eye-width 3840]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "benchmarks"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from bench_360 import MODEL, write_fixture_weights  # noqa: E402
from bench_stereo import synthetic_top_bottom_frame  # noqa: E402


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (5 min {five:.2f}) on {os.cpu_count()} cores"


def one_still(path: Path, estimator, out_dir: Path, layout: str, far: bool = False) -> tuple[float, float, dict]:
    """Wall and CPU seconds (all threads) of one still through the pipeline, and its busy seconds per stage;
    `far`: stereo-guided with its far field always matched again."""
    from depth360.estimators.pipeline import EstimateRequest, run
    from depth360.estimators.stereo import guided

    forced = functools.partial(guided.estimate_guided, far_shares=(0.0, 0.0)) if far else guided.estimate_guided
    with tempfile.TemporaryDirectory(dir=out_dir) as fresh, mock.patch.object(guided, "estimate_guided", forced):
        request = EstimateRequest(inputs=(str(path),), output_dir=fresh, model=MODEL, views="cube", layout=layout)
        start, start_cpu = time.perf_counter(), time.process_time()
        result = run(request, estimator=estimator).sources[0]
        return time.perf_counter() - start, time.process_time() - start_cpu, result.timings


def main() -> None:
    import cv2
    import torch

    from depth360.estimators.models.network_estimator import load_estimator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--eye-width", type=int, default=3840)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        (work / "models").mkdir()
        write_fixture_weights(work / "models")
        frame = synthetic_top_bottom_frame(args.eye_width)
        stills = {"mono": work / "left.png", "top-bottom": work / "tb.png", "far": work / "tb.png"}
        cv2.imwrite(str(stills["mono"]), frame[: frame.shape[0] // 2])
        cv2.imwrite(str(stills["top-bottom"]), frame)
        estimator = load_estimator(MODEL, work / "models", "cpu")
        print(f"{MODEL} (fixture-rule weights), CPU float32, torch {torch.__version__} with "
              f"{torch.get_num_threads()} threads; each eye {args.eye_width}x{args.eye_width // 2}; {_load()}")
        def still(run: str):
            return one_still(stills[run], estimator, work, "mono" if run == "mono" else "top-bottom", far=run == "far")

        for run in stills:  # warm-up: imports, torch, caches
            still(run)
        runs: dict[str, list[tuple[float, float, dict]]] = {run: [] for run in stills}
        order = list(stills)
        for repeat in range(args.repeats):  # the order turns each repeat: a run right after another one is slower
            shift = repeat % len(order)
            for run in order[shift:] + order[:shift]:
                runs[run].append(still(run))
        keys = ("read", "estimate", "estimate_stereo", "estimate_far_stereo", "estimate_network", "estimate_guide",
                "post", "write")
        medians = {}
        for layout, label in (("mono", "network alone (left eye, mono 360 still)"),
                              ("top-bottom", "stereo-guided (top-bottom still)"),
                              ("far", "stereo-guided, far field matched again (an open scene)")):
            walls, cpus = [r[0] for r in runs[layout]], [r[1] for r in runs[layout]]
            medians[layout] = (statistics.median(walls), statistics.median(cpus))
            stage = {k: statistics.median(r[2].get(k, 0.0) for r in runs[layout]) for k in keys}
            print(f"{label}: median {medians[layout][0]:.2f} s wall, {medians[layout][1]:.2f} CPU s "
                  f"(runs: {', '.join(f'{w:.2f}' for w in walls)})")
            print("  busy seconds per stage (medians): " + ", ".join(f"{k} {v:.2f}" for k, v in stage.items() if v))
        wall = medians["top-bottom"][0] / medians["mono"][0]
        cpu = medians["top-bottom"][1] / medians["mono"][1]
        print(f"guided / alone = {wall:.2f} wall ({'ok' if wall <= 1.25 else 'MISSES'} the 1.25 target), "
              f"{cpu:.2f} in CPU seconds; {_load()}")
        print(f"guided with the far field / alone = {medians['far'][0] / medians['mono'][0]:.2f} wall, "
              f"{medians['far'][1] / medians['mono'][1]:.2f} in CPU seconds")


if __name__ == "__main__":
    main()
