"""The `depth360` command line (DESIGN.md "Command line" is its contract).

Exit status: 0 done, 2 bad usage or bad input, 3 weights missing, 1 anything else.
Expected failures print one line on stderr naming the file and the problem; only a
bug prints a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import registry
from .errors import BadInputError, Depth360Error
from .version import __version__

SAVE_KINDS = ("distance", "disparity", "mask", "preview", "png16")
DEFAULT_SAVE = ("distance", "mask", "preview")
DEPTH_KINDS = ("distance", "disparity")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
# A photo's field of view is unknown; plug-ins get pinhole rays of this one (recorded in the sidecar).
PHOTO_FOV_DEG = 60.0

ESTIMATE_EPILOG = """\
outputs: a still photo.jpg gives OUTDIR/photo.<kind>.exr for each kind saved (float32,
one channel "Y"), OUTDIR/photo.preview.png (inferno colours, near is bright),
OUTDIR/photo.<kind>.png for png16 (the value range is in the sidecar), and
OUTDIR/photo.json (model, options, version, timings).

--projection perspective (an ordinary photo): the whole photo goes through the model
exactly as the official code does; `disparity` is the model's own output (relative
models: disparity up to scale and shift; metric models: 1 / their metric depth).
`distance` from a relative model needs --near and --far: inverse distance is taken
affine in disparity, the 2nd percentile at 1/far and the 98th at 1/near, clamped to
[near, far]. Without them the default --save writes disparity instead of distance.
For a photo, whose field of view is unknown, distance is depth along the camera axis
(metric models give it directly). The mask is 1 where the value is valid, 0 where
the model puts the pixel at infinity (zero disparity; it then holds the far value).

--projection equirect (the default): 360 footage (width = 2 x height), seen through
the --views layout (default cube), aligned and blended seam-free; `distance` is along
each pixel's ray, calibrated by --near/--far (default 1 m / 100 m for relative models).

exit status: 0 done, 2 bad usage or bad input, 3 weights missing, 1 anything else.
"""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
    return value


def _save_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    unknown = [k for k in kinds if k not in SAVE_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown kind(s) {', '.join(unknown) or '(none)'}; choose from {','.join(SAVE_KINDS)}"
        )
    return kinds


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `depth360` and its subcommands."""
    from .devices import DEVICE_NAMES, PRECISION_NAMES

    parser = argparse.ArgumentParser(
        prog="depth360",
        description="Seam-free, temporally stable depth for 360 footage (and ordinary photos).",
    )
    parser.add_argument("--version", action="version", version=f"depth360 {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    models = commands.add_parser(
        "models",
        help="list the models and whether their weights are present; download weights",
        description="List every model: name, family, licence, output kind, weights present.",
    )
    models.add_argument("--models-dir", metavar="DIR", help="models folder (default $DEPTH360_MODELS, else the per-user data folder)")
    models_commands = models.add_subparsers(dest="models_command", metavar="download")
    download = models_commands.add_parser(
        "download",
        help="download a model's official checkpoint",
        description="Download a model's official checkpoint into the models folder "
        "(resumable; checked before it is kept).",
    )
    download.add_argument("name", metavar="NAME", help="model name, as `depth360 models` lists it")
    download.add_argument("--models-dir", metavar="DIR", default=argparse.SUPPRESS, help="models folder")
    download.add_argument("--url", help="fetch from this address (a mirror) instead of the official one")
    download.add_argument("--quiet", action="store_true", help="no progress bar")

    estimate = commands.add_parser(
        "estimate",
        help="estimate depth for images",
        description="Estimate depth for each INPUT and write it to OUTDIR.",
        epilog=ESTIMATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    estimate.add_argument("inputs", nargs="+", metavar="INPUT", help="image files")
    estimate.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    estimate.add_argument("--model", default=registry.DEFAULT_MODEL, metavar="NAME",
                          help=f"model name (default {registry.DEFAULT_MODEL}), or python:FILE.py:FACTORY for a plug-in")
    estimate.add_argument("--models-dir", metavar="DIR", help="models folder (default $DEPTH360_MODELS, else the per-user data folder)")
    estimate.add_argument("--projection", choices=("equirect", "perspective"), default="equirect",
                          help="equirect: 360 footage (default); perspective: an ordinary photo")
    estimate.add_argument("--layout", choices=("mono", "top-bottom", "side-by-side"), default="mono",
                          help="stereo layout of the input (default mono)")
    estimate.add_argument("--ipd", type=_positive_float, default=0.064, metavar="METRES",
                          help="stereo baseline in metres (default 0.064)")
    estimate.add_argument("--views", metavar="PRESET", help="360 view layout (e.g. cube, ico)")
    estimate.add_argument("--near", type=_positive_float, metavar="M", help="near distance for relative models")
    estimate.add_argument("--far", type=_positive_float, metavar="M", help="far distance for relative models")
    estimate.add_argument("--frames", metavar="A-B", help="frame range of a video or sequence (1-based, inclusive)")
    estimate.add_argument("--save", type=_save_kinds, metavar="KINDS",
                          help=f"comma list of {','.join(SAVE_KINDS)} (default {','.join(DEFAULT_SAVE)})")
    estimate.add_argument("--device", choices=DEVICE_NAMES, default="auto", help="default auto: cuda, then mps, then cpu")
    estimate.add_argument("--precision", choices=PRECISION_NAMES, default="auto",
                          help="auto: fp16 on a GPU, fp32 on the CPU")
    return parser


def _licence(spec: registry.ModelSpec) -> str:
    return spec.license if spec.commercial_use else f"{spec.license} (non-commercial)"


def run_models(args: argparse.Namespace) -> int:
    """`depth360 models`: the table of every registry model."""
    from .weights import resolve_models_dir, weights_present

    folder = resolve_models_dir(args.models_dir)
    rows = [("NAME", "FAMILY", "LICENCE", "KIND", "WEIGHTS")]
    for spec in registry.all_specs():
        if not spec.checkpoint:
            present = "not needed"
        elif weights_present(spec, folder):
            present = "yes"
        else:
            partial = (folder / f"{spec.checkpoint}.part").is_file()
            present = "no (partly downloaded)" if partial else "no"
        rows.append((spec.name, spec.family, _licence(spec), spec.kind, present))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"models folder: {folder}")
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def run_download(args: argparse.Namespace) -> int:
    """`depth360 models download NAME`."""
    from .weights import checkpoint_path, download, sha256_of

    spec = _spec(args.name)
    existing = checkpoint_path(spec, args.models_dir)
    if existing.is_file():
        print(f"{spec.name}: already present at {existing}")
        return 0
    if not spec.commercial_use:
        print(f"note: {spec.title} is licensed {spec.license}: non-commercial use only", file=sys.stderr)
    path = download(spec, args.models_dir, url=args.url, progress=not args.quiet)
    print(f"{spec.name}: saved {path} ({path.stat().st_size} bytes, sha256 {sha256_of(path)})")
    return 0


def _spec(name: str) -> registry.ModelSpec:
    try:
        return registry.get(name)
    except ValueError as error:
        raise BadInputError(str(error)) from None


@dataclass
class _Plan:
    """What `estimate` writes, decided before any work is done."""

    save: tuple[str, ...]
    notes: list[str] = field(default_factory=list)


def _plan_outputs(args: argparse.Namespace, kind: str) -> _Plan:
    """The kinds to save for estimator `kind`; a photo's relative distance needs near/far."""
    if (args.near is None) != (args.far is None):
        raise BadInputError("--near and --far go together: give both or neither")
    if args.near is not None and not args.near < args.far:
        raise BadInputError(f"--near ({args.near}) must be less than --far ({args.far})")
    save = args.save or DEFAULT_SAVE
    plan = _Plan(save=save)
    perspective = args.projection == "perspective"
    if perspective and kind == "relative-disparity" and "distance" in save and args.near is None:
        if args.save:
            raise BadInputError(
                f"distance from the relative model {args.model!r} needs --near and --far "
                f"(the documented rule in `depth360 estimate --help`), or save disparity instead"
            )
        plan.save = tuple(dict.fromkeys("disparity" if k == "distance" else k for k in save))
        plan.notes.append("relative model without --near/--far: writing disparity instead of distance")
    if "png16" in plan.save and not set(plan.save) & set(DEPTH_KINDS):
        raise BadInputError("--save png16 writes distance or disparity as 16-bit PNG: save one of them too")
    return plan


def _check_inputs(inputs: list[str]) -> list[Path]:
    paths = [Path(p) for p in inputs]
    for path in paths:
        if "%" in path.name or path.is_dir() or path.suffix.lower() in VIDEO_SUFFIXES:
            raise BadInputError(f"{path}: videos and image sequences are not available in this version yet")
        if not path.is_file():
            raise BadInputError(f"input {path} does not exist")
    stems: dict[str, Path] = {}
    for path in paths:
        if path.stem in stems:
            raise BadInputError(f"inputs {stems[path.stem]} and {path} would write the same output names")
        stems[path.stem] = path
    return paths


def _equirect_estimator():
    """`fusion.estimate_equirect`, the 360 path, or BadInputError while it does not exist.

    Called as `estimate_equirect(image [H, W, 3], estimator, views, near=, far=)`; it
    returns an object with float32 [H, W] `distance`, `disparity`, bool `mask`, the
    `near`/`far` it used and its `timings`.
    """
    if importlib.util.find_spec(".fusion", __package__) is None:
        raise BadInputError(
            "equirect estimation is not available yet; use --projection perspective for an ordinary photo"
        )
    from .fusion import estimate_equirect

    return estimate_equirect


def _photo_rays(height: int, width: int):
    """Pinhole rays of a photo looking along +X (+Z up), of the assumed field of view."""
    from .projection import View, look_at

    return View(look_at((1.0, 0.0, 0.0)), PHOTO_FOV_DEG, height, width).rays()


def _perspective_depth(prediction, kind: str, args: argparse.Namespace, spec_max_depth: float | None):
    """(distance or None, disparity, mask) of one photo's prediction [h, w]."""
    import numpy as np

    finite = np.isfinite(prediction)
    if kind == "relative-disparity":
        disparity = np.where(finite, prediction, 0.0).astype(np.float32)
        mask = finite & (disparity > 0)
        distance = None
        if args.near is not None:
            from .calibration import relative_to_distance

            distance, mask = relative_to_distance(disparity, args.near, args.far, valid=mask)
        return distance, disparity, mask
    mask = finite & (prediction > 0)
    safe = np.where(mask, prediction, 1.0)
    far = args.far or spec_max_depth or float(np.max(prediction[mask], initial=1.0))
    distance = np.where(mask, prediction, far).astype(np.float32)
    if args.near is not None:
        distance = np.clip(distance, args.near, args.far)
    disparity = np.where(mask, 1.0 / safe, 0.0).astype(np.float32)
    return distance, disparity, mask


def _describe(estimator) -> dict:
    spec = getattr(estimator, "spec", None)
    if spec is None:
        return {"name": getattr(estimator, "name", type(estimator).__name__), "kind": estimator.kind, "plugin": True}
    return {
        "name": spec.name, "title": spec.title, "kind": spec.kind,
        "license": spec.license, "commercial_use": spec.commercial_use,
        "device": str(estimator.device), "precision": estimator.precision,
    }


def _write_outputs(out_dir: Path, stem: str, plan: _Plan, depth: dict) -> dict:
    """Write the planned files of one input; return the sidecar's `outputs` entry."""
    import numpy as np

    from . import image_io

    outputs: dict[str, dict] = {}
    for kind in DEPTH_KINDS:
        if kind in plan.save:
            name = f"{stem}.{kind}.exr"
            image_io.write_exr(out_dir / name, depth[kind])
            outputs[kind] = {"file": name}
            if "png16" in plan.save:
                png = f"{stem}.{kind}.png"
                low, high = image_io.write_png16(out_dir / png, depth[kind])
                outputs[f"{kind}_png16"] = {"file": png, "value_at_0": low, "value_at_65535": high}
    if "mask" in plan.save:
        name = f"{stem}.mask.exr"
        image_io.write_exr(out_dir / name, depth["mask"].astype(np.float32))
        outputs["mask"] = {"file": name, "meaning": "1 valid, 0 invalid (holds the far value)"}
    if "preview" in plan.save:
        name = f"{stem}.preview.png"
        image_io.write_preview(out_dir / name, depth["disparity"], depth["mask"])
        outputs["preview"] = {"file": name, "meaning": "inferno colour map of disparity, near is bright"}
    return outputs


def run_estimate(args: argparse.Namespace) -> int:
    """`depth360 estimate INPUT... -o OUTDIR`."""
    from . import plugins

    inputs = _check_inputs(args.inputs)
    perspective = args.projection == "perspective"
    if perspective and (args.layout != "mono" or args.model == "stereo"):
        raise BadInputError("stereo input is 360 footage: use --projection equirect")
    if args.layout != "mono" or args.model == "stereo":
        raise BadInputError("stereo 360 input is not available in this version yet")
    if args.views is not None:
        from .projection import PRESETS

        if perspective or args.views not in PRESETS:
            raise BadInputError(f"--views is one of {', '.join(PRESETS)}, for --projection equirect")
    if args.frames is not None:
        raise BadInputError("--frames applies to videos and image sequences, which are not available yet")
    if not plugins.is_plugin_reference(args.model) and args.model != "stereo":
        _plan_outputs(args, _spec(args.model).kind)  # usage errors before the model loads
    equirect = None if perspective else _equirect_estimator()

    from . import image_io
    from .network_estimator import load_estimator

    started = time.perf_counter()
    estimator = load_estimator(args.model, args.models_dir, args.device, args.precision)
    load_s = time.perf_counter() - started
    plan = _plan_outputs(args, estimator.kind)
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)

    out_dir = Path(args.output)
    for path in inputs:
        timings = {"load_model": load_s}
        tick = time.perf_counter()
        image = image_io.read_image(path)
        timings["read"] = time.perf_counter() - tick
        tick = time.perf_counter()
        height, width = image.shape[:2]
        if perspective:
            rays = _photo_rays(height, width)[None] if getattr(estimator, "uses_rays", True) else None
            prediction = plugins.check_prediction(estimator.predict(image[None], rays), image[None], args.model)[0]
            distance, disparity, mask = _perspective_depth(
                prediction, estimator.kind, args, getattr(getattr(estimator, "spec", None), "max_depth", None)
            )
            depth = {"distance": distance, "disparity": disparity, "mask": mask}
        else:
            try:
                fused = equirect(image, estimator, args.views or "cube", near=args.near, far=args.far)
            except ValueError as error:  # the engine's input checks: this input cannot be used
                raise BadInputError(f"{path}: {error}") from None
            depth = {"distance": fused.distance, "disparity": fused.disparity, "mask": fused.mask}
            calibration = {"near": fused.near, "far": fused.far, "views": args.views or "cube",
                           "stages_s": {k: round(v, 4) for k, v in fused.timings.items()}}
        timings["estimate"] = time.perf_counter() - tick
        tick = time.perf_counter()
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise Depth360Error(f"cannot create output folder {out_dir}: {error.strerror}") from None
        outputs = _write_outputs(out_dir, path.stem, plan, depth)
        timings["write"] = time.perf_counter() - tick
        sidecar = {
            "input": str(path),
            "version": __version__,
            "model": _describe(estimator),
            "projection": args.projection,
            "size": {"width": width, "height": height},
            "options": {
                "save": list(plan.save), "near": args.near, "far": args.far, "layout": args.layout,
                "ipd": args.ipd, "views": args.views, "device": args.device, "precision": args.precision,
            },
            "outputs": outputs,
            "timings_s": {key: round(value, 4) for key, value in timings.items()},
        }
        if perspective:
            sidecar["rays"] = f"pinhole, {PHOTO_FOV_DEG:g} degrees horizontal field of view, looking along +X"
        else:
            sidecar["equirect"] = calibration
        image_io.write_json(out_dir / f"{path.stem}.json", sidecar)
        written = ", ".join(entry["file"] for entry in outputs.values())
        print(f"{path}: {written} in {out_dir} ({timings['estimate']:.2f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `depth360` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "models":
            return run_download(args) if args.models_command == "download" else run_models(args)
        if args.command == "estimate":
            return run_estimate(args)
        parser.print_help()
        return 2
    except Depth360Error as error:
        print(f"depth360: error: {error}", file=sys.stderr)
        return error.exit_status
    except OSError as error:
        print(f"depth360: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("depth360: interrupted", file=sys.stderr)
        return 130
    # Anything else is a bug: Python prints its traceback and exits with status 1.


if __name__ == "__main__":
    sys.exit(main())
