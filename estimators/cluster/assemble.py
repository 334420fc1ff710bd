"""The end of a cluster job, per input: one sidecar and one preview video, as a single run leaves them.

Each chunk ran as `--frames A-B` and left its own sidecar `clip_0000A-0000B.json` and
video `preview_0000A-0000B.mp4`. When every chunk is done, `assemble` (a task on a node
that sees the output folder) checks that every frame of the range is complete, writes
the run's sidecar (`clip.json`, or `clip_0000A-0000B.json` for a job given --frames)
from the chunks' sidecars with the job's figures and a `cluster` section, encodes
`preview.mp4` from the frames' previews in order, removes the chunks' sidecars and
videos, and removes the temporaries the job's dead attempts left (a killed node's).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import Depth360Error
from ..pipeline import resume
from ..pipeline.outputs import OutputLayout, frame_tag
from ..pipeline.sidecar import Sidecar
from .plan import Chunk, SourcePlan

_TEMPORARY = re.compile(r"^\..+\.(?P<owner>[^.@]+@\d+)\.[^.]+\.tmp$")


def final_layout(plan: SourcePlan) -> OutputLayout:
    """Where the job's own sidecar and preview video go (named as a single run names them)."""
    suffix = f"_{frame_tag(plan.first)}-{frame_tag(plan.last)}" if plan.ranged else ""
    return OutputLayout(Path(plan.folder), plan.name, False, suffix)


def chunk_layout(plan: SourcePlan, chunk: Chunk) -> OutputLayout:
    return OutputLayout(Path(plan.folder), plan.name, False, f"_{frame_tag(chunk.first)}-{frame_tag(chunk.last)}")


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _timings(outcomes: list[dict], wall: float) -> dict:
    """The job's wall time and, for each stage, the seconds its chunks spent in it (summed over nodes)."""
    timings = {"wall": wall}
    for outcome in outcomes:
        for stage, seconds in outcome["timings"].items():
            if stage != "wall":
                timings[stage] = timings.get(stage, 0.0) + seconds
    return {key: round(value, 4) for key, value in timings.items()}


def merged_sidecar(plan: SourcePlan, chunk_sidecars: list[dict], outcomes: list[dict], job: dict,
                   video: Path | None) -> dict:
    """The run's sidecar: the chunks' common record, the job's frames, timings and cluster section."""
    content = dict(chunk_sidecars[0])
    content.pop("error", None)
    written = sum(len(o["written"]) for o in outcomes)
    wall = float(job.get("wall", 0.0))
    context_rule = content.get("frames", {}).get("context_rule", f"frame t depends on frames t-{plan.context_frames}..t")
    content.update(
        status="complete",
        frames={"first": plan.first, "last": plan.last, "written": written,
                "skipped_complete": plan.total - written, "context_estimated": sum(o["context"] for o in outcomes),
                "context_rule": context_rule},
        preview_video=video.name if video is not None else None,
        timings_s=_timings(outcomes, wall),
        fps=round(written / wall, 4) if wall > 0 else None,
        warnings=list(dict.fromkeys(w for s in chunk_sidecars for w in s.get("warnings", []))),
        notes=list(dict.fromkeys([*job.get("notes", []), *(n for s in chunk_sidecars for n in s.get("notes", []))])),
        cluster={key: job[key] for key in ("address", "chunk_frames", "retries", "chunks", "nodes") if key in job},
    )
    content["run"] = {**content.get("run", {}), "overwrite": bool(job.get("overwrite", False))}
    if content.get("camera"):
        content["camera"] = _merged_camera([s["camera"] for s in chunk_sidecars if s.get("camera")])
    return content


def _merged_camera(sections: list[dict]) -> dict:
    """One camera section from the chunks' (each solved the shot from its first frame, in one world)."""
    merged = dict(sections[-1])  # the last chunk's solve saw the most of the shot
    frames = {number: pose for section in sections for number, pose in section.get("frames", {}).items()}
    merged["frames"] = {number: frames[number] for number in sorted(frames, key=int)}
    return merged


def _encode_preview(plan: SourcePlan, path: Path) -> Path | None:
    from ..media.preview_video import PreviewVideo
    from ..media.previews import read_rgb_png

    video = PreviewVideo(path, plan.fps)
    layout = final_layout(plan)
    success = False
    try:
        for number in range(plan.first, plan.last + 1):
            video.add(read_rgb_png(layout.folder / layout.file_name("preview", number, "png")))
        success = True
    finally:
        written = video.close(success)
    return written


def remove_temporaries(folder: Path, owners: set[str], layout: OutputLayout) -> int:
    """Remove this layout's temporaries owned by `owners` (attempts of the job, all ended) and
    those of dead processes on this host; how many."""
    removed = resume.remove_stale_temporaries(layout)
    if not folder.is_dir():
        return removed
    for entry in os.scandir(folder):
        match = _TEMPORARY.match(entry.name)
        if match and match.group("owner") in owners:
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed


def assemble(plan: SourcePlan, chunks: list[Chunk], outcomes: list[dict], owners: set[str], job: dict) -> dict:
    """Check the input's frames, write its sidecar and preview video, clear the chunks' (see module)."""
    layout = final_layout(plan)
    remove_temporaries(layout.folder, owners, layout)
    missing = [n for n in range(plan.first, plan.last + 1)
               if not resume.frame_is_complete(layout, plan.save, n, plan.plate)]
    if missing:
        raise Depth360Error(f"{plan.path}: {len(missing)} frame(s) are missing after every chunk finished, "
                            f"from frame {missing[0]}; rerun the same command to compute them")
    pieces = [chunk_layout(plan, chunk) for chunk in chunks]
    chunk_sidecars = [data for piece in pieces if (data := _read(piece.sidecar)) is not None]
    if not chunk_sidecars:
        return {"sidecar": None, "preview_video": None}
    video = None
    if "preview" in plan.save and layout.preview_video is not None:
        video = _encode_preview(plan, layout.preview_video)
    Sidecar(layout.sidecar).write(**merged_sidecar(plan, chunk_sidecars, outcomes, job, video))
    for piece in pieces:
        for path in (piece.sidecar, piece.preview_video):
            if path is not None and path not in (layout.sidecar, layout.preview_video):
                path.unlink(missing_ok=True)
    return {"sidecar": str(layout.sidecar), "preview_video": str(video) if video else None}
