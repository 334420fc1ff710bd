"""Issue 16, point 3: benchmarks/bench_gpu.py keeps running (on the CPU here; its figures are for a GPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"


def test_without_cuda_it_says_so_and_exits_2(tmp_path):
    hidden = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no CUDA device, on a GPU machine too
    done = subprocess.run([sys.executable, str(SCRIPT), "--json", str(tmp_path / "out.json")],
                          capture_output=True, text=True, timeout=120, env=hidden)
    assert done.returncode == 2 and "no CUDA device" in done.stderr
    assert not (tmp_path / "out.json").exists()


@pytest.mark.slow
def test_on_the_cpu_it_runs_end_to_end_and_writes_its_json(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--frames", "2", "--sizes", "256",
                           "--models", "small", "--repeats", "1", "--warmup", "0", "--json", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    (row,) = report["results"]
    assert report["machine"]["device"] == "cpu" and row["model"] == "depth-anything-v2-small"
    assert row["frames"] == 2 and row["fps"] > 0 and row["network_only_fps"] > 0
    assert set(row["ms_per_stage"]) >= {"read", "estimate_predict", "estimate_align", "post", "write"}
    assert 0 < row["not_network_share"] < 1 and "end to end" in done.stdout
