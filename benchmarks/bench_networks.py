"""Forward time and peak memory of every registry network, at its native input size.

Not a test: prints a table. Each network runs in a fresh subprocess (so that its peak
memory is its own) with the reference fixtures' deterministic weights (the README rule,
converted and loaded strictly, exactly as a downloaded checkpoint would be), no
downloads. Per network: one warm-up forward, then the median of `--repeats` forwards on
the CPU, float32, under `torch.inference_mode`. Memory: the process's resident set after
the weights are loaded, and its peak (getrusage maxrss) during the forwards, the high-water
mark being reset after loading on Linux so that the figure is the forward's own. On a
CUDA machine it also gives GPU time (fp32 and fp16 autocast) and peak GPU memory.

    .venv/bin/python benchmarks/bench_networks.py [--repeats 5] [--only ARCH ...] [--no-gpu]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from peak_memory import peak_rss_mib, reset_peak_rss

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/statm") as file:
        pages = int(file.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _representative_spec(architecture: str):
    from depth360.estimators.models import registry

    return next(s for s in registry.all_specs() if s.architecture == architecture and s.max_depth is None)


def _timed(run, repeats: int, synchronize=lambda: None) -> list[float]:
    run()  # warm-up
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        synchronize()
        times.append(time.perf_counter() - start)
    return times


def measure(architecture: str, repeats: int, gpu: bool) -> dict:
    """Figures of one network, in this process."""
    import gc

    import numpy as np
    import torch

    from depth360.estimators.models import networks, weights
    from tests.reference_fixtures import fixture_state_dict

    spec = _representative_spec(architecture)
    baseline = _rss_mb()
    network = weights.build_network(spec)
    converted = networks.convert_official_state_dict(architecture, fixture_state_dict(architecture.replace("-", "_")))
    network.load_state_dict(converted, strict=True)
    del converted
    gc.collect()
    loaded = _rss_mb()
    size = spec.input_size
    image = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32))
    reset = reset_peak_rss()
    with torch.inference_mode():
        times = _timed(lambda: network(image), repeats)
    result = {
        "architecture": architecture,
        "params_m": sum(p.numel() for p in network.parameters()) / 1e6,
        "input": f"{size}x{size}",
        "threads": torch.get_num_threads(),
        "cpu_median_s": statistics.median(times),
        "cpu_min_s": min(times),
        "rss_weights_mb": loaded - baseline,
        "peak_rss_mb": peak_rss_mib(),
        "peak_is_forward_only": reset,
        "load_average": os.getloadavg()[0],  # other processes on this machine slow the CPU figures
    }
    if gpu and torch.cuda.is_available():
        network = network.cuda()
        image = image.cuda()
        for label, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
            torch.cuda.reset_peak_memory_stats()
            with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                times = _timed(lambda: network(image), repeats, torch.cuda.synchronize)
            result[f"gpu_{label}_median_s"] = statistics.median(times)
            result[f"gpu_{label}_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["gpu"] = torch.cuda.get_device_name()
    return result


def available_architectures() -> list[str]:
    """Registry network architectures whose network module exists in this checkout."""
    from depth360.estimators.models import networks, registry

    used = {spec.architecture for spec in registry.all_specs() if spec.architecture}
    return [
        arch for arch, (module, _variant) in networks.ARCHITECTURES.items()
        if arch in used and importlib.util.find_spec(f"depth360.estimators.models.networks.{module}") is not None
    ]


def _models_of(architecture: str) -> str:
    from depth360.estimators.models import registry

    return ", ".join(s.name for s in registry.all_specs() if s.architecture == architecture)


def _row(result: dict, gpu: bool) -> list[str]:
    if "error" in result:
        return [result["architecture"], "failed: " + result["error"]]
    row = [
        result["architecture"], f"{result['params_m']:.1f}", result["input"],
        f"{result['cpu_median_s']:.2f}", f"{result['rss_weights_mb']:.0f}", f"{result['peak_rss_mb']:.0f}",
        f"{result['load_average']:.1f}",
    ]
    if gpu:
        row += [f"{result.get('gpu_fp32_median_s', float('nan')) * 1000:.1f}",
                f"{result.get('gpu_fp16_median_s', float('nan')) * 1000:.1f}",
                f"{result.get('gpu_fp16_peak_mb', float('nan')):.0f}"]
    return row


def main(argv: list[str] | None = None) -> int:
    """Run every available network in its own subprocess and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="+", metavar="ARCH", help="architectures to run (default: all available)")
    parser.add_argument("--no-gpu", action="store_true", help="CPU figures only")
    parser.add_argument("--one", metavar="ARCH", help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.repeats, not args.no_gpu)))
        return 0

    import torch

    gpu = not args.no_gpu and torch.cuda.is_available()
    architectures = args.only or available_architectures()
    print(f"CPU: {os.cpu_count()} cores, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}; "
          f"median of {args.repeats} forwards after a warm-up, batch 1, float32", flush=True)
    results = []
    for architecture in architectures:
        command = [sys.executable, __file__, "--one", architecture, "--repeats", str(args.repeats)]
        if not gpu:
            command.append("--no-gpu")
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode == 0:
            result = json.loads(done.stdout.strip().splitlines()[-1])
        else:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            result = {"architecture": architecture, "error": last}
        results.append(result)
        print(f"  {architecture}: done", file=sys.stderr, flush=True)

    header = ["network", "params M", "input", "CPU s", "weights MB", "peak RSS MB", "load avg"]
    if gpu:
        header += ["GPU fp32 ms", "GPU fp16 ms", "GPU fp16 peak MB"]
    rows = [header] + [_row(r, gpu) for r in results]
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    print("\nmodels per network:")
    for r in results:
        print(f"  {r['architecture']}: {_models_of(r['architecture'])}")
    if not all(r.get("peak_is_forward_only", True) for r in results):
        print("(peak RSS includes loading: the high-water mark could not be reset here)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
