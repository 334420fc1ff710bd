"""Moving-camera fixtures shared by the engine and Blender tests (issue 13): the per-frame oracle and solved shots.

`AffineOracle` is a plug-in estimator (DESIGN.md protocol) that returns each frame's true
inverse depth (planar for a perspective view) under the frame's own random affine map:
scale in [0.7, 1.4], shift up to +-20% of the frame's range, 0.5% multiplicative noise,
as a relative network does from frame to frame. It recognises the frame by its colour
(a whole frame, or a view: each frame's colour is sampled along the view's rays).

`solved_shot(scene, ...)` renders a ground-truth sequence (tests.groundtruth), writes it as
a 16-bit PNG sequence, runs the engine's pipeline on it with the oracle and returns the
folder: `frames/shot_0001.png ...` (the plate) and `out/shot/` (distance, disparity and
mask EXRs, and the sidecar with the camera solve). Results are cached on disk under
`.cache/solved/` by a key over the parameters and the sources of the engine and of this
module; the Blender tests, whose Python has no engine dependencies, get the folder by
running ``python -m tests.moving_camera SCENE WIDTH FRAMES SAMPLES SEED`` with the
repository's .venv.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "solved"


def sample_equirect(values: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """Bilinear lookup of an equirect map [H, W] (or [H, W, C]) along rays (columns wrap, rows clamp)."""
    from depth360.estimators.panorama.equirect import direction_to_pixel

    height, width = values.shape[:2]
    rows, cols = direction_to_pixel(rays, height, width)
    rows = np.clip(rows, 0.0, height - 1.0)
    r0 = np.minimum(np.floor(rows).astype(int), height - 2)
    c0 = np.floor(cols).astype(int)
    fr, fc = rows - r0, cols - c0
    if values.ndim == 3:
        fr, fc = fr[..., None], fc[..., None]
    c1, c0 = np.mod(c0 + 1, width), np.mod(c0, width)
    top = values[r0, c0] * (1 - fc) + values[r0, c1] * fc
    bottom = values[r0 + 1, c0] * (1 - fc) + values[r0 + 1, c1] * fc
    return top * (1 - fr) + bottom * fr


class AffineOracle:
    """Relative-disparity plug-in: each frame's truth under its own affine map (module docstring)."""

    kind = "relative-disparity"

    def __init__(self, truths, seed: int = 0):
        self.truths = truths
        self.seed = seed
        self.rgbs = np.stack([t.rgb for t in truths])
        self.disparities = [np.where(np.isfinite(t.distance), 1.0 / t.distance, 0.0) for t in truths]

    def frame_map(self, index: int) -> tuple[float, float]:
        """(scale, shift as a fraction of the frame's range) of frame index `index` (0-based)."""
        rng = np.random.default_rng(1000 * self.seed + index)
        return rng.uniform(0.7, 1.4), rng.uniform(-0.2, 0.2)

    def _index(self, image: np.ndarray, rays: np.ndarray) -> int:
        if image.shape == self.rgbs.shape[1:]:
            return int(np.argmin(np.abs(self.rgbs - image[None]).mean(axis=(1, 2, 3))))
        step = max(1, image.shape[0] // 24)
        seen = [sample_equirect(rgb, rays[::step, ::step].astype(np.float64)) for rgb in self.rgbs]
        return int(np.argmin([np.abs(s - image[::step, ::step]).mean() for s in seen]))

    def predict(self, images: np.ndarray, rays: np.ndarray) -> np.ndarray:
        out = []
        for number, (image, view_rays) in enumerate(zip(images, rays, strict=True)):
            index = self._index(image, view_rays)
            truth = self.disparities[index]
            view = 0
            if image.shape == self.rgbs.shape[1:]:
                values = truth
            else:  # a pinhole view: inverse planar depth = 1 / (distance * cos)
                view = number + 1
                r = view_rays.astype(np.float64)
                axis = r.reshape(-1, 3).mean(axis=0)
                values = sample_equirect(truth, r) / (r @ (axis / np.linalg.norm(axis)))
            scale, shift = self.frame_map(index)
            finite = np.isfinite(self.truths[index].distance)
            noise = np.random.default_rng(5000 + 1000 * self.seed + 100 * index + view)
            values = scale * values * (1 + 0.005 * noise.standard_normal(values.shape))
            out.append((values + shift * scale * np.ptp(truth[finite])).astype(np.float32))
        return np.stack(out)


def render(scene: str, width: int, frames: int, samples: int, seed: int | None):
    from tests.groundtruth import render_sequence

    params = {} if seed is None else {"seed": seed}
    return render_sequence(scene, frames, width, samples, **params)


def write_frames(truths, folder: Path) -> Path:
    """The renders as a 16-bit PNG sequence `folder/shot_0001.png ...`; the folder."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for number, truth in enumerate(truths, start=1):
        cv2.imwrite(str(folder / f"shot_{number:04d}.png"), np.round(truth.rgb[..., ::-1] * 65535).astype(np.uint16))
    return folder


def _key(*params) -> str:
    sources = sorted((REPO / "estimators").rglob("*.py")) + [Path(__file__)]
    digest = hashlib.sha256(json.dumps(params).encode())
    for path in sources:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def solved_shot(scene: str, width: int, frames: int, samples: int = 4, seed: int | None = None) -> Path:
    """The folder of a shot run through the pipeline with the oracle (module docstring); cached on disk."""
    import fcntl

    from depth360.estimators import pipeline
    from depth360.estimators.pipeline.frame_estimators import PlainFrameEstimator

    folder = CACHE / f"{scene}-{width}-{frames}-{seed}-{_key(scene, width, frames, samples, seed)}"
    if folder.is_dir():
        return folder
    truths = render(scene, width, frames, samples, seed)
    CACHE.mkdir(parents=True, exist_ok=True)
    # Processes wanting the same shot at once (the Blender runs side by side) wait for one solve.
    with open(CACHE / f".{folder.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if folder.is_dir():
            return folder
        work = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=CACHE))
        try:
            write_frames(truths, work / "frames" / "shot")
            request = pipeline.EstimateRequest(inputs=(str(work / "frames" / "shot"),), output_dir=str(work / "out"),
                                               save=("distance", "disparity", "mask"))
            pipeline.run(request, frame_estimator=PlainFrameEstimator(AffineOracle(truths, seed or 0)))
            os.rename(work, folder)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    return folder


def solved_shot_in_subprocess(scene: str, width: int, frames: int, samples: int = 4,
                              seed: int | None = None) -> Path:
    """`solved_shot` run by the repository's .venv Python (for tests whose Python lacks the engine)."""
    python = REPO / ".venv" / "bin" / "python"
    result = subprocess.run(
        [str(python if python.exists() else sys.executable), "-m", "tests.moving_camera", scene, str(width),
         str(frames), str(samples), "none" if seed is None else str(seed)],
        cwd=REPO, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"solving {scene} failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    scene_name, width_text, frames_text, samples_text, seed_text = sys.argv[1:6]
    print(solved_shot(scene_name, int(width_text), int(frames_text), int(samples_text),
                      None if seed_text == "none" else int(seed_text)))
