"""Resume never mixes settings; progress fits where it goes (a terminal, a pipe, a log file)."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from depth360.estimators import cli
from depth360.estimators.media.image_io import read_exr

DEPTH360 = Path(sys.executable).with_name("depth360")
WIDTH, HEIGHT, FRAMES = 64, 32, 6

PLUGINS = {
    "relative": textwrap.dedent("""
        import os, time
        import numpy as np

        class Shade:
            kind = "relative-disparity"

            def predict(self, images, rays):
                time.sleep(float(os.environ.get("SHADE_DELAY", "0")) * len(images))
                return (0.3 + images.mean(axis=-1) + 0.2 * np.abs(rays[..., 2])).astype(np.float32)

        def make():
            return Shade()
    """),
    "other": textwrap.dedent("""
        import numpy as np

        class Other:
            kind = "relative-disparity"

            def predict(self, images, rays):
                return (0.5 + images[..., 1] + 0.1 * rays[..., 0]).astype(np.float32)

        def make():
            return Other()
    """),
}


@pytest.fixture
def shot(tmp_path) -> Path:
    folder = tmp_path / "shot"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for number in range(1, FRAMES + 1):
        frame = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        assert cv2.imwrite(str(folder / f"shot_{number:04d}.png"), frame)
    return folder


@pytest.fixture
def models(tmp_path) -> dict[str, str]:
    references = {}
    for name, body in PLUGINS.items():
        path = tmp_path / f"{name}.py"
        path.write_text(body)
        references[name] = f"python:{path}:make"
    return references


def _checksums(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() + str(p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir())}


def _estimate(shot: Path, out: Path, model: str, *extra: str) -> int:
    return cli.main(["estimate", str(shot), "-o", str(out), "--model", model, "--progress", "none",
                     "--save", "distance,disparity,mask,preview", *extra])


def test_a_rerun_with_other_options_stops_and_touches_nothing(shot, models, tmp_path, capsys):
    out = tmp_path / "out"
    assert _estimate(shot, out, models["relative"], "--frames", "1-4") == 0
    before = _checksums(out / "shot")
    capsys.readouterr()
    for extra, model, named in ((("--near", "2", "--far", "50"), models["relative"], ("--near", "--far")),
                                ((), models["other"], ("--model",)),
                                (("--views", "ico"), models["relative"], ("--views",)),
                                (("--no-stabilise",), models["relative"], ("--no-stabilise",))):
        assert _estimate(shot, out, model, *extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert "other options" in err and "shot_00001-00004.json" in err and "--overwrite" in err
        for option in named:
            assert option in err, (option, err)
        assert _checksums(out / "shot") == before  # nothing written, renamed or removed
    # Equal options resume: the rest of the shot is added beside the finished frames.
    assert _estimate(shot, out, models["relative"]) == 0
    assert {f"distance_{n:05d}.exr" for n in range(1, FRAMES + 1)} <= set(os.listdir(out / "shot"))
    for name, digest in before.items():
        if name.startswith(("distance", "disparity", "mask", "preview_")):
            assert _checksums(out / "shot")[name] == digest  # finished frames kept as they were


def test_overwrite_gives_the_files_of_a_fresh_run(shot, models, tmp_path):
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    assert _estimate(shot, out, models["relative"]) == 0
    assert _estimate(shot, out, models["relative"], "--frames", "2-3", "--near", "3", "--far", "30") == 2
    assert _estimate(shot, out, models["other"], "--near", "0.5", "--far", "40", "--overwrite") == 0
    assert _estimate(shot, fresh, models["other"], "--near", "0.5", "--far", "40") == 0
    names = sorted(os.listdir(fresh / "shot"))
    assert sorted(os.listdir(out / "shot")) == names  # the old run's sidecar and frames are gone
    for name in names:
        if name.endswith(".exr"):
            assert (out / "shot" / name).read_bytes() == (fresh / "shot" / name).read_bytes(), name
    sidecar = json.loads((out / "shot" / "shot.json").read_text())
    assert sidecar["status"] == "complete" and sidecar["recorded_options"]["depth"]["near"] == 0.5
    for number in range(1, FRAMES + 1):  # a video's files obey the depth kinds too
        distance = read_exr(out / "shot" / f"distance_{number:05d}.exr").astype(np.float64)
        disparity = read_exr(out / "shot" / f"disparity_{number:05d}.exr").astype(np.float64)
        mask = read_exr(out / "shot" / f"mask_{number:05d}.exr") > 0.5
        assert mask.any() and np.max(np.abs(distance[mask] * disparity[mask] - 1.0)) <= 1e-6
        assert np.all(disparity[~mask] == 0.0) and np.all(distance[~mask] == 40.0)


def test_a_still_rerun_with_other_options_is_refused_too(tmp_path, models, capsys):
    photo = tmp_path / "photo.png"
    assert cv2.imwrite(str(photo), np.random.default_rng(2).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    out = tmp_path / "out"
    assert _estimate(photo, out, models["relative"]) == 0
    before = _checksums(out)
    assert _estimate(photo, out, models["relative"]) == 0  # the same options: already complete
    assert _checksums(out) == before
    capsys.readouterr()
    assert _estimate(photo, out, models["relative"], "--near", "0.2", "--far", "9") == 2
    assert "--near" in capsys.readouterr().err and _checksums(out) == before
    assert _estimate(photo, out, models["relative"], "--near", "0.2", "--far", "9", "--overwrite") == 0
    assert read_far(out / "photo.distance.exr") == pytest.approx(9.0)


def read_far(path: Path) -> float:
    return float(read_exr(path).max())


def _progress_run(shot: Path, out: Path, model: str, stderr) -> subprocess.Popen:
    env = {**os.environ, "SHADE_DELAY": "0.15"}
    return subprocess.Popen([str(DEPTH360), "estimate", str(shot), "-o", str(out), "--model", model,
                             "--views", "equirect"], stdout=subprocess.DEVNULL, stderr=stderr, env=env)


def test_progress_on_a_pipe_is_plain_lines(shot, models, tmp_path):
    process = _progress_run(shot, tmp_path / "out", models["relative"], subprocess.PIPE)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert b"\r" not in err
    lines = err.decode().splitlines()
    assert lines and lines[-1].startswith(f"shot: {FRAMES}/{FRAMES} frames (100%)")


def test_progress_on_a_terminal_redraws_a_bar(shot, models, tmp_path):
    leader, follower = pty.openpty()
    process = _progress_run(shot, tmp_path / "out", models["relative"], follower)
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        seen += chunk
    process.wait(timeout=30)
    os.close(leader)
    assert process.returncode == 0, seen
    assert seen.count(b"\r") >= 2 and b"[" in seen and f"{FRAMES}/{FRAMES}".encode() in seen
