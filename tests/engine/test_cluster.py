"""Issue 17: a shot across many machines, `depth360 estimate --cluster` on a Ray cluster.

A head and worker nodes run as separate processes on 127.0.0.1 (tests.cluster_harness,
in a network namespace of their own); the drivers are `depth360` processes. Acceptance:
files bit-identical to a single-process run (an oracle plug-in, and Depth Anything V2
Small fixture weights); a worker node killed mid-chunk and a driver killed and rerun
still give those files and no partial ones; an unreachable address fails within 30 s;
an output folder a node cannot write names the node; a rerun with other options is
refused as issue 10 says. The overhead figure is benchmarks/bench_cluster.py's.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from depth360.estimators import cli
from depth360.estimators.cluster import ClusterOptions, parse_cluster
from depth360.estimators.cluster.board import LineSink, frame_of
from depth360.estimators.cluster.plan import SourcePlan, chunks_to_run, split_range
from depth360.estimators.errors import BadInputError
from depth360.estimators.models import registry
from tests.cluster_harness import LocalCluster, can_make_namespaces
from tests.engine.test_one_pipeline import ORACLE
from tests.reference_fixtures import fixture_state_dict

DEPTH360 = str(Path(sys.executable).with_name("depth360"))
FRAMES = 60
SAVE = "distance,disparity,mask,preview"
SLOW_ORACLE = ORACLE.replace("def predict(self, images, rays):",
                             "def predict(self, images, rays):\n        __import__('time').sleep(0.2)")
WHY_NOT = can_make_namespaces()


# --- the parts that need no cluster ------------------------------------------------------------

def test_cluster_addresses_parse_and_bad_ones_say_the_forms():
    assert parse_cluster("ray") == "local"
    assert parse_cluster("ray:10.1.2.3:6379") == "10.1.2.3:6379"
    assert parse_cluster("ray:auto") == "auto"
    assert parse_cluster("ray://head:10001") == parse_cluster("ray:ray://head:10001") == "ray://head:10001"
    assert ClusterOptions("ray://head:10001").host_port() == ("head", 10001)
    for bad in ("dask", "ray:head", "ray:head:99999", "ray://"):
        with pytest.raises(BadInputError, match="ray:HOST:PORT"):
            parse_cluster(bad)
    with pytest.raises(BadInputError, match="--chunk-frames"):
        ClusterOptions(chunk_frames=0)


def test_chunks_cover_the_range_and_finished_ones_are_left_out():
    assert split_range(1, 60, 25) == [(1, 25), (26, 50), (51, 60)]
    assert split_range(7, 7, 100) == [(7, 7)]
    plan = SourcePlan(0, "shot", "shot", False, 1, 60, False, tuple(range(1, 31)) + (45,), "out/shot", 11)
    every, todo = chunks_to_run(plan, 30)
    assert [(c.first, c.last) for c in every] == [(1, 30), (31, 60)]
    assert [(c.first, c.last) for c in todo] == [(31, 60)]


def test_the_worker_command_line_carries_the_cluster():
    args = cli.build_parser().parse_args(["estimate", "shot.mp4", "-o", "out", "--cluster", "ray:127.0.0.1:6379",
                                          "--chunk-frames", "40", "--retries", "1"])
    request, cluster = cli.request_from_args(args), cli.cluster_from_args(args)
    again = cli.build_parser().parse_args(cli.request_to_args(request, cluster))
    assert cli.request_from_args(again) == request and cli.cluster_from_args(again) == cluster
    assert cluster == ClusterOptions("127.0.0.1:6379", 40, 1)
    no_cluster = cli.build_parser().parse_args(["estimate", "a.png", "-o", "out", "--retries", "1"])
    with pytest.raises(BadInputError, match="--retries applies to a --cluster job"):
        cli.cluster_from_args(no_cluster)


class _ClientServerThatFailsToStart:
    """Stands in for the `ray` module at the join only: its `init` fails as a Ray Client server does
    when it cannot start the session's process in time (`failures` times), then succeeds."""

    def __init__(self, failures: int):
        self.failures, self.calls = failures, 0

    def init(self, **arguments):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionAbortedError("Initialization failure from server:\nTraceback (most recent call last):\n"
                                         "  ...\nRuntimeError: Proxy failed to Connect to backend!")


@pytest.mark.parametrize("failures", [1, 100])
def test_a_ray_client_session_that_fails_to_start_is_joined_again_then_named(monkeypatch, capsys, failures):
    import socketserver
    import threading

    from depth360.estimators.cluster import driver
    from depth360.estimators.pipeline import EstimateRequest

    class Closes(socketserver.BaseRequestHandler):
        def handle(self):  # something listens and hangs up: the join is left to ray.init
            pass

    with socketserver.TCPServer(("127.0.0.1", 0), Closes) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        module = _ClientServerThatFailsToStart(failures)
        monkeypatch.setattr(driver, "ray_module", lambda: module)
        monkeypatch.setattr(driver, "CONNECT_TIMEOUT_S", 2.0)
        monkeypatch.setattr(driver, "CLIENT_RETRY_MARGIN_S", 1.0)
        monkeypatch.setattr(driver, "CLIENT_RETRY_PAUSE_S", 0.3)
        options = ClusterOptions(f"ray://127.0.0.1:{server.server_address[1]}")
        request = EstimateRequest(inputs=("shot.mp4",), output_dir="out")
        try:
            if failures == 1:
                assert driver.connect(options, request) is module and module.calls == 2
                assert "could not start a session (RuntimeError: Proxy failed to Connect to backend!); joining " \
                       "again" in capsys.readouterr().err
            else:
                with pytest.raises(driver.ClusterError, match="Proxy failed to Connect to backend"):
                    driver.connect(options, request)
                assert 2 <= module.calls <= 5  # tried again, a pause apart, until too little time was left
        finally:
            server.shutdown()


def test_progress_lines_of_a_chunk_reach_the_board():
    lines = []
    sink = LineSink(lines.append)
    sink.write('{"frame": 7, "done": 1, "total": 3}\n{"frame"')
    sink.write(': 8, "done": 2, "total": 3}\n')
    assert [frame_of(line) for line in lines] == [7, 8] and frame_of("warning: x") is None


def test_without_ray_everything_else_works_and_cluster_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    plugin = tmp_path / "walls.py"
    plugin.write_text(ORACLE)
    shot = _sequence(tmp_path / "shot", 3)
    options = ["--model", f"python:{plugin}:make", "--progress", "none"]
    assert cli.main(["estimate", str(shot), "-o", str(tmp_path / "out"), *options]) == 0
    status = cli.main(["estimate", str(shot), "-o", str(tmp_path / "cluster"), *options, "--cluster", "ray"])
    error = capsys.readouterr().err
    assert status == 1 and "--cluster needs Ray" in error and "pip install 'ray[client]==" in error
    assert not (tmp_path / "cluster").exists()


# --- a cluster of separate processes ------------------------------------------------------------

def _sequence(folder: Path, count: int, width: int = 128, height: int = 64) -> Path:
    """`count` numbered PNG frames: a textured room with a patch moving across it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    background = rng.uniform(0, 1, (height, width, 3))
    for number in range(1, count + 1):
        image = background.copy()
        column = (3 * number) % width
        image[height // 4 : height // 2, column : column + max(2, width // 10)] = (1.0, 0.2, 0.1)
        image[..., 1] = np.clip(image[..., 1] + 0.02 * np.sin(number), 0, 1)
        cv2.imwrite(str(folder / f"frame_{number:04d}.png"), np.round(image[..., ::-1] * 255).astype(np.uint8))
    return folder


def _listing(folder: Path) -> dict[str, str]:
    """Every file of a folder (hidden ones too) and its sha256, sidecars aside (they hold timings)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.suffix != ".json" else "sidecar"
            for p in sorted(folder.iterdir())}


def _assert_same_files(folder: Path, reference: Path) -> None:
    got, want = _listing(folder), _listing(reference)
    assert sorted(got) == sorted(want), f"files differ: {sorted(set(got) ^ set(want))}"
    assert [n for n in got if got[n] != want[n]] == [], "files not bit-identical to the single run"


@pytest.fixture(scope="module")
def shot(tmp_path_factory) -> dict:
    """60 frames, the oracle plug-ins (a slow one for the fault tests) and a single-process run."""
    root = tmp_path_factory.mktemp("shot")
    (root / "walls.py").write_text(ORACLE)
    (root / "slow_walls.py").write_text(SLOW_ORACLE)
    frames = _sequence(root / "shot", FRAMES)
    reference = root / "single"
    assert cli.main(["estimate", str(frames), "-o", str(reference), "--model", f"python:{root / 'walls.py'}:make",
                     "--save", SAVE, "--progress", "none"]) == 0
    return {"root": root, "frames": frames, "reference": reference / "shot",
            "oracle": f"python:{root / 'walls.py'}:make", "slow": f"python:{root / 'slow_walls.py'}:make"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # A failure, not a skip: the multi-node tests are issue 17's acceptance.
    assert WHY_NOT is None, f"a local Ray cluster {WHY_NOT}"
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as local:
        local.add_workers("worker-a", "worker-b")
        yield local


def _estimate(cluster: LocalCluster, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cluster.command([DEPTH360, "estimate", *args]), capture_output=True, text=True,
                          env=cluster.environment(), timeout=timeout)


def _json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _no_partial_files(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def test_an_unreachable_address_fails_within_30_s_with_a_clear_message(cluster, tmp_path, shot):
    args = [str(shot["frames"]), "-o", str(tmp_path / "out"), "--model", shot["oracle"]]
    started = time.monotonic()
    refused = _estimate(cluster, *args, "--cluster", "ray:127.0.0.1:1")
    assert refused.returncode == 1 and time.monotonic() - started < 30
    assert "cannot reach the Ray cluster at 127.0.0.1:1: Connection refused" in refused.stderr
    # An address that accepts the connection and never answers (not a Ray head).
    silent = subprocess.Popen(cluster.command([sys.executable, "-c", textwrap.dedent("""
        import socket, time
        server = socket.create_server(("127.0.0.1", 16379)); print("up", flush=True)
        held = [server.accept() for _ in range(8)]; time.sleep(60)""")]), stdout=subprocess.PIPE, text=True)
    try:
        assert silent.stdout.readline().strip() == "up"
        started = time.monotonic()
        mute = _estimate(cluster, *args, "--cluster", "ray:127.0.0.1:16379", timeout=60)
        took = time.monotonic() - started
    finally:
        silent.kill()
        silent.wait()
    print(f"\nrefused address: exit {refused.returncode}; silent address: exit {mute.returncode} in {took:.1f} s")
    assert mute.returncode == 1 and took < 30, (took, mute.stderr)
    assert "did not let this process join within" in mute.stderr
    assert not (tmp_path / "out").exists()


def test_a_cluster_run_gives_the_files_of_a_single_run(cluster, tmp_path, shot):
    out = tmp_path / "out"
    done = _estimate(cluster, str(shot["frames"]), "-o", str(out), "--model", shot["oracle"], "--save", SAVE,
                     "--progress", "json", "--cluster", cluster.address, "--chunk-frames", "15")
    assert done.returncode == 0, done.stderr
    _assert_same_files(out / "shot", shot["reference"])  # frames, previews and preview.mp4, bit for bit
    lines = _json_lines(done.stdout)
    assert sorted(line["frame"] for line in lines) == list(range(1, FRAMES + 1))  # each frame once
    assert [line["done"] for line in lines] == list(range(1, FRAMES + 1)) and {line["total"] for line in lines} == {60}
    sidecar = json.loads((out / "shot" / "shot.json").read_text())
    assert sidecar["status"] == "complete" and sidecar["frames"]["written"] == FRAMES
    assert sidecar["frames"]["context_estimated"] == 3 * 11  # every chunk but the first computes 11 context frames
    assert [c["frames"] for c in sorted(sidecar["cluster"]["chunks"], key=lambda c: int(c["frames"].split("-")[0]))] \
        == ["1-15", "16-30", "31-45", "46-60"]
    assert {node.split()[0] for node in sidecar["cluster"]["nodes"]} == {"worker-a", "worker-b"}  # both worked
    assert "4 chunk(s) on 2 nodes" in done.stdout


def test_a_rerun_with_other_options_is_refused_and_overwrite_recomputes(cluster, tmp_path, shot):
    out = tmp_path / "out"
    common = [str(shot["frames"]), "-o", str(out), "--model", shot["oracle"], "--save", SAVE, "--progress", "none",
              "--cluster", cluster.address, "--chunk-frames", "30"]
    assert _estimate(cluster, *common).returncode == 0
    before = _listing(out / "shot")
    sidecar_before = (out / "shot" / "shot.json").read_bytes()
    refused = _estimate(cluster, *common, "--near", "0.5", "--far", "20")
    assert refused.returncode == 2 and "--near" in refused.stderr and "--overwrite" in refused.stderr
    assert _listing(out / "shot") == before and (out / "shot" / "shot.json").read_bytes() == sidecar_before
    # Equal options, through the head's Ray Client server this time: everything is complete already.
    through_client = [arg if arg != cluster.address else "ray://127.0.0.1:10001" for arg in common]
    resumed = _estimate(cluster, *through_client)
    assert resumed.returncode == 0, resumed.stderr
    assert "0 frames written, 60 already complete" in resumed.stdout and "cluster ray://127.0.0.1:10001" in resumed.stdout
    assert _listing(out / "shot") == before
    overwritten = _estimate(cluster, *common, "--near", "0.5", "--far", "20", "--overwrite")
    assert overwritten.returncode == 0, overwritten.stderr
    fresh = tmp_path / "fresh"
    assert cli.main(["estimate", str(shot["frames"]), "-o", str(fresh), "--model",
                     shot["oracle"], "--save", SAVE, "--progress", "none", "--near", "0.5", "--far", "20"]) == 0
    _assert_same_files(out / "shot", fresh / "shot")


@pytest.mark.slow
def test_depth_anything_v2_small_on_the_cluster_gives_the_files_of_a_single_run(cluster, tmp_path):
    """The fixture weights under the official file name; ordinary 32x32 photos (the network sees
    140x140: the real network, at a size that keeps 120 passes quick)."""
    models = tmp_path / "models"
    models.mkdir()
    torch.save(fixture_state_dict("depth_anything_v2_vits"), models / registry.get("depth-anything-v2-small").checkpoint)
    frames = _sequence(tmp_path / "photos", FRAMES, width=32, height=32)
    options = ["--model", "depth-anything-v2-small", "--models-dir", str(models), "--projection", "perspective",
               "--input-size", "140", "--near", "0.5", "--far", "20", "--save", "distance,disparity,mask", "--progress", "none"]
    started = time.monotonic()
    assert cli.main(["estimate", str(frames), "-o", str(tmp_path / "single"), *options]) == 0
    single = time.monotonic() - started
    started = time.monotonic()
    done = _estimate(cluster, str(frames), "-o", str(tmp_path / "cluster"), *options, "--cluster", cluster.address,
                     "--chunk-frames", "30", timeout=600)
    print(f"\nDA V2 Small, 60 frames: single process {single:.1f} s, two worker nodes {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stderr
    _assert_same_files(tmp_path / "cluster" / "photos", tmp_path / "single" / "photos")


def test_chunks_ask_for_a_gpu_where_the_cluster_has_one_and_a_node_that_cannot_write_is_named(cluster, tmp_path,
                                                                                             shot):
    """A node declaring a GPU takes every chunk; then a node that sees the output folder read-only
    (its own mount namespace) stops the job before any file is written, named in the message."""
    common = ["--model", shot["oracle"], "--save", SAVE, "--progress", "none", "--cluster", cluster.address,
              "--frames", "1-20", "--chunk-frames", "10", "--device", "auto"]
    cluster.add_workers("worker-gpu", gpus=1)
    try:
        done = _estimate(cluster, str(shot["frames"]), "-o", str(tmp_path / "gpu"), *common)
    finally:
        cluster.kill("worker-gpu")
    assert done.returncode == 0, done.stderr
    sidecar = json.loads((tmp_path / "gpu" / "shot" / "shot_00001-00020.json").read_text())
    assert {chunk["node"].split()[0] for chunk in sidecar["cluster"]["chunks"]} == {"worker-gpu"}
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    cluster.add_workers("worker-ro", readonly=readonly)
    try:
        refused = _estimate(cluster, str(shot["frames"]), "-o", str(readonly), *common)
    finally:
        cluster.kill("worker-ro")
    print(f"\nread-only node: {refused.stderr.strip().splitlines()[-1]}")
    assert refused.returncode == 1 and "node worker-ro (127.0.0.1, id " in refused.stderr
    assert "Read-only file system" in refused.stderr and list(readonly.iterdir()) == []


def _start_driver(cluster: LocalCluster, *args: str) -> subprocess.Popen:
    return subprocess.Popen(cluster.command([DEPTH360, "estimate", *args]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cluster.environment(), start_new_session=True)


def _read_until_done(driver: subprocess.Popen, count: int, timeout: float = 120) -> list[dict]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline and (not lines or lines[-1]["done"] < count):
        line = driver.stdout.readline()
        if not line:
            break
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_a_killed_driver_is_resumed_by_running_it_again(cluster, tmp_path, shot):
    out = tmp_path / "out"
    args = [str(shot["frames"]), "-o", str(out), "--model", shot["slow"], "--save", SAVE, "--cluster",
            cluster.address, "--chunk-frames", "30"]
    driver = _start_driver(cluster, *args, "--progress", "json")
    lines = _read_until_done(driver, 16)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert lines and lines[-1]["done"] >= 16, driver.stderr.read()
    rerun = _estimate(cluster, *args, "--progress", "none")
    assert rerun.returncode == 0, rerun.stderr
    skipped = int(rerun.stdout.split(" already complete")[0].rsplit(" ", 1)[-1])
    print(f"\ndriver killed after {lines[-1]['done']} frames; the rerun found {skipped} complete")
    assert skipped >= 16
    _no_partial_files(out / "shot")
    _assert_same_files(out / "shot", shot["reference"])


def _running_chunk(node) -> bool:
    """True while a process of `node` runs a chunk task (Ray names the process after the task)."""
    for pid in node.pids():
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::run_chunk"):
                return True
        except OSError:
            continue
    return False


def test_a_worker_node_killed_mid_chunk_still_gives_the_files_of_a_single_run(cluster, tmp_path, shot):
    """The last test of the module: it leaves the cluster with one worker node."""
    out = tmp_path / "out"
    driver = _start_driver(cluster, str(shot["frames"]), "-o", str(out), "--model", shot["slow"], "--save", SAVE,
                           "--progress", "json", "--cluster", cluster.address, "--chunk-frames", "30")
    lines: list[dict] = []
    reader = threading.Thread(target=lambda: lines.extend(json.loads(line) for line in driver.stdout
                                                         if line.startswith("{")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while not (_running_chunk(cluster.nodes["worker-b"]) and len(lines) >= 6) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running_chunk(cluster.nodes["worker-b"]) and len(lines) >= 6, "worker-b ran no chunk"
    killed_at = len(lines)
    cluster.kill("worker-b")
    driver.wait(timeout=300)
    reader.join(timeout=10)
    stderr = driver.stderr.read()
    print(f"\nworker-b killed after {killed_at} frames: {[e for e in stderr.splitlines() if 'failed' in e]}")
    assert driver.returncode == 0, stderr
    assert "failed on worker-b" in stderr and "trying it again" in stderr
    assert lines[-1]["done"] == FRAMES and len({line["frame"] for line in lines}) == len(lines)
    _no_partial_files(out / "shot")
    _assert_same_files(out / "shot", shot["reference"])
    sidecar = json.loads((out / "shot" / "shot.json").read_text())
    assert max(chunk["tries"] for chunk in sidecar["cluster"]["chunks"]) == 2
