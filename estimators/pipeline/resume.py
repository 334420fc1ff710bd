"""Resume that never mixes settings: which frames are done, and whether they were made as asked now.

A frame is complete when every file the request saves exists (each is written
atomically, so an existing file is a whole one). The sidecar of every run records its
options before the run writes its first file. A rerun compares its own options with
every sidecar of the same source in the output folder:

- equal: complete frames are skipped, the rest computed (chunks of one shot with equal
  options share a folder this way, even while they run side by side);
- different, without `overwrite`: `OptionsChangedError` (exit 2) names each option that
  differs and the sidecar that recorded it; nothing is touched;
- different, with `overwrite`: the frames, sidecars and preview videos recorded with
  other options are removed, then the range is computed afresh.

Frame files that no sidecar accounts for (an older version's, or copied in by hand)
count as recorded with unknown options.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadInputError
from ..media import image_io
from .outputs import OutputLayout

_FRAME_FILE = re.compile(r"^(?:distance|disparity|mask|preview|rgbd|left)_(\d+)\.(?:exr|png)$")
_TEMPORARY = re.compile(r"^\.(.+)\.(?P<host>[^.@]+)@(?P<pid>\d+)\.[^.]+\.tmp$")


class OptionsChangedError(BadInputError):
    """Finished frames in the output folder were made with other options."""


@dataclass
class RecordedRun:
    """A sidecar of the same source found in the output folder."""

    path: Path
    options: dict | None
    first: int
    last: int | None
    differences: list[str] = field(default_factory=list)

    def covers(self, number: int) -> bool:
        return number >= self.first and (self.last is None or number <= self.last)


def frame_is_complete(layout: OutputLayout, save, number: int, plate: bool = False) -> bool:
    """True when every per-frame file of `save` exists for frame `number`."""
    return all((layout.folder / name).is_file() for name in layout.frame_files(save, number, plate))


def _flatten(options: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in options.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# Recorded keys as the user knows them (the command line's options); others show as recorded.
OPTION_NAMES = {
    "model.name": "--model", "model.views": "--views", "model.projection": "--projection",
    "model.layout": "--layout", "model.ipd": "--ipd", "model.pole_merge": "--pole-merge",
    "model.min_distance": "--near", "model.max_distance": "--far", "depth.near": "--near",
    "depth.far": "--far", "depth.smoothing": "--smoothing", "depth.sky": "--sky", "depth.refine": "--refine",
    "depth.calibrated": "--near/--far", "depth.kind": "--model", "depth.edges": "--edges", "model.edges": "--edges",
    "input.bytes": "the input file (its size)", "input.modified_ns": "the input file (modified since)",
}


def _stabilisation(value) -> str:
    return "off" if value is None else "on"


def _option_name(key: str) -> str:
    return OPTION_NAMES.get(key, key)


def differences(recorded: dict | None, current: dict) -> list[str]:
    """'option: recorded -> now' for each recorded option that differs (JSON-normalised)."""
    if recorded is None:
        return ["options not recorded (made by another version, or by hand)"]
    recorded, current = json.loads(json.dumps(recorded)), json.loads(json.dumps(current))
    changed: dict[str, str] = {}
    was, now = (options.get("depth", {}).pop("stabilise", None) for options in (recorded, current))
    if (was is None) != (now is None):
        changed["--no-stabilise"] = f"--no-stabilise: stabilisation {_stabilisation(was)} -> {_stabilisation(now)}"
    elif was != now:
        changed["stabiliser"] = f"stabiliser settings {was} -> {now}"
    was, now = (options.get("depth", {}).pop("camera_solve", None) for options in (recorded, current))
    if (was is None) != (now is None):
        changed["--no-camera-solve"] = f"--no-camera-solve: camera solve {_stabilisation(was)} -> {_stabilisation(now)}"
    elif was is not None and {**was, "gauge_distance": None} != {**now, "gauge_distance": None}:
        changed["camera solve"] = f"camera solve settings {was} -> {now}"
    old, new = _flatten(recorded), _flatten(current)
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            name = _option_name(key)
            if name.startswith("the input file"):
                changed.setdefault(name, name)
            else:
                changed.setdefault(name, f"{name} {old.get(key, '(none)')!r} -> {new.get(key, '(none)')!r}")
    return list(changed.values())


def _sidecars(layout: OutputLayout) -> list[Path]:
    folder = layout.folder
    if not folder.is_dir():
        return []
    if layout.still:
        path = layout.folder / f"{layout.name}.json"
        return [path] if path.is_file() else []
    ranged = re.compile(re.escape(layout.name) + r"(?:_\d+-\d+)?\.json$")
    return sorted(folder / entry.name for entry in os.scandir(folder) if ranged.fullmatch(entry.name))


def recorded_runs(layout: OutputLayout, current: dict) -> list[RecordedRun]:
    """Every sidecar of this source in its folder, with how its options differ from `current`."""
    runs = []
    for path in _sidecars(layout):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        recorded = data.get("recorded_options") if isinstance(data, dict) else None
        frames = data.get("frames", {}) if isinstance(data, dict) else {}
        first = int(frames.get("first") or 1)
        last = frames.get("last")
        run = RecordedRun(path, recorded, first, None if last is None else int(last))
        run.differences = differences(recorded, current)
        runs.append(run)
    return runs


def _frame_numbers(layout: OutputLayout) -> dict[int, list[Path]]:
    """Existing per-frame files of this source, by frame number."""
    if not layout.folder.is_dir():
        return {}
    if layout.still:
        names = layout.frame_files(("distance", "disparity", "mask", "preview", "png16"), 1, plate=True)
        present = [layout.folder / n for n in names if (layout.folder / n).is_file()]
        return {1: present} if present else {}
    numbers: dict[int, list[Path]] = {}
    for entry in os.scandir(layout.folder):
        match = _FRAME_FILE.match(entry.name)
        if match:
            numbers.setdefault(int(match.group(1)), []).append(Path(entry.path))
    return numbers


def check_recorded_options(layout: OutputLayout, current: dict, overwrite: bool) -> list[str]:
    """Refuse (OptionsChangedError) or, with `overwrite`, clear what other options made; returns notes."""
    runs = recorded_runs(layout, current)
    equal = [run for run in runs if not run.differences]
    other = [run for run in runs if run.differences]
    files = _frame_numbers(layout)
    unaccounted = sorted(n for n in files if not any(run.covers(n) for run in runs))
    if not other and not unaccounted:
        return []
    if not overwrite:
        raise OptionsChangedError(_refusal(layout, other, unaccounted))
    removed = 0
    for number, paths in files.items():
        if not any(run.covers(number) for run in equal):
            for path in paths:
                path.unlink(missing_ok=True)
                removed += 1
    for run in other:
        run.path.unlink(missing_ok=True)
        video = layout.folder / run.path.name.replace(layout.name, "preview", 1).replace(".json", ".mp4")
        if not layout.still:
            video.unlink(missing_ok=True)
    return [f"--overwrite: removed {removed} files made with other options in {layout.folder}"]


def _refusal(layout: OutputLayout, other: list[RecordedRun], unaccounted: list[int]) -> str:
    """One line: where, which sidecar recorded which different options, and what to do."""
    where = layout.folder / f"{layout.name}.*" if layout.still else layout.folder
    parts = []
    for run in other:
        span = "the still" if layout.still else f"frames {run.first}-{'' if run.last is None else run.last}"
        parts.append(f"{run.path.name}, {span}: " + ", ".join(run.differences))
    if unaccounted:
        parts.append(f"{len(unaccounted)} frame(s) with no sidecar, from frame {unaccounted[0]}: options unknown")
    return (f"{where} holds depth made with other options ({'; '.join(parts)}); nothing was changed: "
            "rerun with --overwrite to replace it, or choose another output folder")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(layout: OutputLayout) -> int:
    """Delete temporary files this layout's runs left behind, only those of dead processes on this host.

    Temporaries of live processes (another chunk writing into the same folder) and of
    other hosts (a farm's other nodes) are left alone.
    """
    if not layout.folder.is_dir():
        return 0
    host = image_io.temporary_owner().rpartition("@")[0]
    removed = 0
    for entry in os.scandir(layout.folder):
        match = _TEMPORARY.match(entry.name)
        if not match or not layout.is_own_file(match.group(1)):
            continue
        if match.group("host") == host and not _alive(int(match.group("pid"))):
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed
