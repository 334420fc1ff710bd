"""The sidecar JSON of a run: what was made, from what, with which options, and how it went.

Written before the run's first file (status "running", with `recorded_options`, which a
later run compares before it resumes: pipeline.resume), and again at the end: status
"complete", or "failed" with the error. Fields:

- `input`: the source (path, kind, size, frames, fps...); `version`: the engine's;
- `model`: the estimator and how it saw the frames (adapter, views, layout...);
- `recorded_options`: everything that changes the depth (model, views, near/far,
  stabilisation, layout, the input's identity...), compared on resume;
- `run`: what does not (device, precision, kinds saved, progress);
- `frames`: first, last, written, skipped as already complete, estimated as context;
- `outputs`: each kind's file (a still) or file pattern (`distance_#####.exr`) and meaning;
- `stereo` (stereo input): layout, eye, geometry and the matcher's warnings;
- `camera` (360 videos and sequences, unless `--no-camera-solve`): the camera solve
  (`camera_content`): per frame written, its rotation and location in the world of its
  chain, in the depth's units; the chains (a new one at each cut), the cuts and the
  featureless frames. `read_camera_path` gathers it from every sidecar of a source;
- `timings_s`, `fps`, `warnings`, `notes`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..media import image_io
from ..version import __version__

VOLATILE_MODEL_KEYS = ("device", "precision", "batch_size", "title", "license", "commercial_use")


def recorded_model(description: dict) -> dict:
    """The parts of a frame estimator's description that change its depth."""
    return {k: v for k, v in description.items() if k not in VOLATILE_MODEL_KEYS}


@dataclass
class Sidecar:
    """One run's sidecar, updated as the run goes (see the module docstring)."""

    path: Path
    content: dict = field(default_factory=dict)
    written: bool = False

    def write(self, **updates) -> None:
        """Merge `updates` into the content and write it atomically."""
        self.content.update(updates)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        image_io.write_json(self.path, self.content)
        self.written = True


def start_content(source, model: dict, recorded_options: dict, run: dict, first: int, last: int | None,
                  context_frames: int, outputs: dict) -> dict:
    """The sidecar of a run that is about to write its first file."""
    content = {
        "status": "running",
        "input": source.describe(),
        "version": __version__,
        "model": model,
        "recorded_options": recorded_options,
        "run": run,
        "frames": {"first": first, "last": last, "context_rule": f"frame t depends on frames t-{context_frames}..t"},
        "outputs": outputs,
    }
    if model.get("adapter") in ("stereo matching", "stereo-guided network"):
        content["stereo"] = {key: model[key] for key in model if key not in ("name", "title", "kind", "license",
                                                                          "commercial_use", "adapter")}
    return content


def end_content(status: str, frames: dict, timings: dict, written: int, warnings: list[str],
                notes: list[str], preview_video: Path | None, error: BaseException | None = None) -> dict:
    """The updates that close the sidecar of a finished or failed run."""
    wall = timings.get("wall", 0.0)
    updates = {
        "status": status,
        "frames": frames,
        "preview_video": preview_video.name if preview_video else None,
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "fps": round(written / wall, 4) if wall > 0 else None,
        "warnings": list(warnings),
        "notes": list(notes),
    }
    if error is not None:
        updates["error"] = f"{type(error).__name__}: {error}"
    return updates


CAMERA_CONVENTION = (
    "rotation (3x3, rows): a direction d of the frame's equirect image (DESIGN.md) points along rotation @ d in "
    "the world; location: the camera centre in the world. The world of a chain is the camera of the chain's "
    "first frame (x along its image centre, z up its zenith); a chain starts at the shot's first frame and at "
    "each cut.")
RELATIVE_UNITS = (
    "shot units: the units of the stabilised depth (distance = 1 / disparity), fixed once per chain when the "
    "solve first triangulates the scene, with the nearest of those points (99th percentile of inverse "
    "distance) at twice --near; scale to metres by one known distance")
METRIC_UNITS = "metres: the solve's units converted frame by frame with the metric depth at its points"


def camera_content(solver, frames: dict[int, dict], settings) -> dict:
    """The sidecar's `camera` section of a run whose frames went through the camera solve."""
    starts = [1, *solver.cuts]
    return {
        "convention": CAMERA_CONVENTION,
        "units": METRIC_UNITS if settings.metric else RELATIVE_UNITS,
        "status": "start: a chain's first frame; solved: rotation and location from the structure; "
                  "rotation-only: no structure yet (location kept); featureless: the pose before kept",
        "chains": [{"chain": chain, "first_frame": first} for chain, first in enumerate(starts)],
        "cuts": list(solver.cuts),
        "featureless": list(solver.featureless),
        "settings": settings.camera.recorded(),
        "frames": {str(number): frames[number] for number in sorted(frames)},
    }


def read_camera_path(folder: Path | str, name: str | None = None) -> dict[int, dict]:
    """Frame number -> pose record (`camera.frames` entries) from every sidecar of source `name` in `folder`.

    Chunks of a shot each record their own frames in the world of the shot's chain, so
    their records join as they are. `name` defaults to the folder's name (a sequence's
    outputs sit in OUTDIR/name/). ValueError when no sidecar there holds a camera solve.
    """
    folder = Path(folder)
    name = name or folder.name
    pattern = re.compile(re.escape(name) + r"(?:_\d+-\d+)?\.json$")
    frames: dict[int, dict] = {}
    found = False
    for path in sorted(folder.glob("*.json")):
        if not pattern.fullmatch(path.name):
            continue
        try:
            camera = json.loads(path.read_text()).get("camera")
        except (OSError, ValueError):
            continue
        if isinstance(camera, dict) and isinstance(camera.get("frames"), dict):
            found = True
            frames.update({int(number): record for number, record in camera["frames"].items()})
    if not found:
        raise ValueError(f"no sidecar in {folder} holds a camera solve (sidecars {name}.json or {name}_A-B.json)")
    return dict(sorted(frames.items()))
