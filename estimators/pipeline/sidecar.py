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
- `timings_s`, `fps`, `warnings`, `notes`.
"""

from __future__ import annotations

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
