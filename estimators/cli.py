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
from typing import TYPE_CHECKING

from . import registry
from .errors import BadInputError, Depth360Error
from .version import __version__

if TYPE_CHECKING:
    from . import video_io

SAVE_KINDS = ("distance", "disparity", "mask", "preview", "png16", "rgbd")
DEFAULT_SAVE = ("distance", "mask", "preview")
DEPTH_KINDS = ("distance", "disparity")
STEREO_MODEL = "stereo"
# Search and validity range of 360 stereo without --near/--far (stereo.estimate_stereo_equirect's own).
STEREO_NEAR, STEREO_FAR = 0.5, 100.0
DEFAULT_POLE_MERGE = (60.0, 75.0)
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

stereo (--model stereo with --layout top-bottom, left eye on top, or side-by-side, left
eye on the left): depth of the left eye, at the eye's size. 360 footage is taken as
omni-directional stereo (ODS, Blender's spherical stereo) with the eyes --ipd apart and
--pole-merge angles; `distance` is metric, along each ray from the camera centre;
`disparity` is 1 / distance (1/m, 0 off the mask), like every metric model's; --near
and --far bound the search (default 0.5 m to 100 m): nearer objects are not found,
farther ones and rows near the poles (where ODS has no disparity) are off the mask and
hold the far value. With --projection perspective the pair is a rectified photo pair:
`disparity` is in pixels of the left eye (column left - column right; pixels off the
mask hold the disparity of their background neighbours). That is inverse depth times
focal length and baseline, which are unknown, so `distance` follows the relative rule
above (needs --near and --far). The eyes must differ (a mono picture is refused);
eyes that look swapped give a warning. Videos of stereo pairs work the same way.

videos (.mp4, .mov, .mkv, ...) and image sequences (a folder of numbered images or a
printf pattern such as shot/frame_%05d.png): clip.mp4 gives OUTDIR/clip/distance_00001.exr,
mask_00001.exr, preview_00001.png, ... (frame numbers 1-based; rgbd_00001.png for
--save rgbd: colour over depth), a preview.mp4 and the sidecar OUTDIR/clip/clip.json.
Frames already complete from an earlier run are skipped. Depth is stabilised over time
(--no-stabilise to turn it off); `disparity` is then the stabilised 1 / distance.
--progress json prints one JSON line per frame written on stdout (a still counts as a
frame): {"frame", "done", "total", "fps", "eta_s"}.

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


def _pole_merge(text: str) -> tuple[float, float] | None:
    if text.strip().lower() == "off":
        return None
    try:
        start, end = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not FROM,TO (degrees) or off") from None
    if not 0.0 <= start < end <= 90.0:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= FROM < TO <= 90 degrees")
    return start, end


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `depth360` and its subcommands."""
    from .devices import DEVICE_NAMES, PRECISION_NAMES
    from .progress import PROGRESS_MODES

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
    estimate.add_argument("inputs", nargs="+", metavar="INPUT",
                          help="images, videos, image folders or printf patterns (shot/frame_%%05d.png)")
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
    estimate.add_argument("--pole-merge", type=_pole_merge, default=DEFAULT_POLE_MERGE, metavar="FROM,TO",
                          help="360 stereo: the elevations (degrees) over which the eyes' separation fades "
                          "to zero toward the poles, as Blender's pole merge, or off (default 60,75)")
    estimate.add_argument("--views", metavar="PRESET", help="360 view layout (e.g. cube, ico)")
    estimate.add_argument("--near", type=_positive_float, metavar="M",
                          help="near distance for relative models (stereo: the nearest distance searched)")
    estimate.add_argument("--far", type=_positive_float, metavar="M",
                          help="far distance for relative models (stereo: the farthest distance kept)")
    estimate.add_argument("--frames", metavar="A-B", help="frame range of a video or sequence (1-based, inclusive)")
    estimate.add_argument("--save", type=_save_kinds, metavar="KINDS",
                          help=f"comma list of {','.join(SAVE_KINDS)} (default {','.join(DEFAULT_SAVE)})")
    estimate.add_argument("--device", choices=DEVICE_NAMES, default="auto", help="default auto: cuda, then mps, then cpu")
    estimate.add_argument("--precision", choices=PRECISION_NAMES, default="auto",
                          help="auto: fp16 on a GPU, fp32 on the CPU")
    estimate.add_argument("--progress", choices=PROGRESS_MODES, default="bar",
                          help="bar: a progress bar on stderr (videos and sequences; default); json: one JSON "
                          "line per frame on stdout; none")
    sequences = estimate.add_argument_group("videos and image sequences")
    sequences.add_argument("--no-stabilise", dest="stabilise", action="store_false",
                           help="estimate each frame on its own (no temporal stabilisation)")
    sequences.add_argument("--smoothing", choices=("none", "median", "bilateral"), default="none",
                           help="spatial smoothing of each frame's depth (default none)")
    sequences.add_argument("--sky", choices=("keep", "mask"), default="keep",
                           help="mask: pixels at the far distance are taken off the mask (default keep)")
    sequences.add_argument("--refine", action="store_true",
                           help="edge-aware refinement of each frame's depth at full size")
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
    """What `estimate` writes for a still image, decided before any work is done."""

    save: tuple[str, ...]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Source:
    """One INPUT: a still image (`info` None) or a video or image sequence (`info`: its probe)."""

    path: Path
    info: video_io.SourceInfo | None = None


def _stereo_kind(args: argparse.Namespace) -> str:
    """360 stereo is metric; a rectified photo pair gives pixel disparity, inverse depth up to f * baseline."""
    return "relative-disparity" if args.projection == "perspective" else "metric-distance"


def _plan_outputs(args: argparse.Namespace, kind: str) -> _Plan:
    """The kinds to save for a still of estimator `kind`; a photo's relative distance needs near/far."""
    save = args.save or DEFAULT_SAVE
    plan = _Plan(save=save)
    perspective = args.projection == "perspective"
    if perspective and kind == "relative-disparity" and "distance" in save and args.near is None:
        what = ("a rectified stereo pair (disparity in pixels)" if args.model == STEREO_MODEL
                else f"the relative model {args.model!r}")
        if args.save:
            raise BadInputError(
                f"distance from {what} needs --near and --far "
                f"(the documented rule in `depth360 estimate --help`), or save disparity instead"
            )
        plan.save = tuple(dict.fromkeys("disparity" if k == "distance" else k for k in save))
        plan.notes.append(f"{'stereo pair' if args.model == STEREO_MODEL else 'relative model'} without "
                          "--near/--far: writing disparity instead of distance")
    return plan


def _check_usage(args: argparse.Namespace, sources: list[_Source]) -> None:
    """Usage errors that need no model: stereo layout and model, views, near/far, frames, save."""
    stereo = args.model == STEREO_MODEL
    if stereo and args.layout == "mono":
        raise BadInputError("--model stereo needs a stereo input: give --layout top-bottom (left eye on top) "
                            "or --layout side-by-side (left eye on the left)")
    if not stereo and args.layout != "mono":
        raise BadInputError(f"--layout {args.layout} is a stereo pair: estimate it with --model stereo")
    if args.views is not None:
        from .projection import PRESETS

        if stereo or args.projection == "perspective" or args.views not in PRESETS:
            raise BadInputError(f"--views is one of {', '.join(PRESETS)}, for a monocular model "
                                "with --projection equirect")
    if (args.near is None) != (args.far is None):
        raise BadInputError("--near and --far go together: give both or neither")
    if args.near is not None and not args.near < args.far:
        raise BadInputError(f"--near ({args.near}) must be less than --far ({args.far})")
    stills = [source.path for source in sources if source.info is None]
    if args.frames is not None:
        from . import video_io

        if stills:
            raise BadInputError(f"{stills[0]}: --frames applies to videos and image sequences, "
                                "not to a still image")
        video_io.parse_frame_range(args.frames)
    save = args.save or DEFAULT_SAVE
    if stills and "rgbd" in save:
        raise BadInputError(f"{stills[0]}: --save rgbd is written for videos and image sequences only")
    if "png16" in save and not set(save) & set(DEPTH_KINDS):
        raise BadInputError("--save png16 writes distance or disparity as 16-bit PNG: save one of them too")
    for source in sources:
        if source.info is not None:
            _check_frame_size(source, args)


def _check_frame_size(source: _Source, args: argparse.Namespace) -> None:
    """BadInputError naming a video or sequence whose frames the chosen path cannot use."""
    import numpy as np

    width, height = source.info.width, source.info.height
    if args.model == STEREO_MODEL:
        from .stereo import split_stereo

        try:
            eye = split_stereo(np.broadcast_to(np.uint8(0), (height, width)), args.layout)[0]
        except ValueError as error:
            raise BadInputError(f"{source.path}: {error}") from None
        height, width = eye.shape
    if args.projection == "equirect" and width != 2 * height:
        what = "each eye" if args.model == STEREO_MODEL else "the frame"
        raise BadInputError(f"{source.path}: 360 footage must be twice as wide as high, {what} is {width}x{height} "
                            "(use --projection perspective for ordinary footage)")


def _check_inputs(inputs: list[str]) -> list[_Source]:
    """Each INPUT as a still image or a probed video / image sequence; BadInputError if missing."""
    from . import video_io

    sources = []
    for text in inputs:
        path = Path(text)
        if video_io.is_video_path(path) or video_io.is_sequence_path(path):
            sources.append(_Source(path, video_io.probe(path)))
        elif not path.is_file():
            raise BadInputError(f"input {path} does not exist")
        else:
            sources.append(_Source(path))
    outputs: dict[str, Path] = {}
    for source in sources:
        name = f"{source.info.name}/" if source.info is not None else source.path.stem
        if name in outputs:
            raise BadInputError(f"inputs {outputs[name]} and {source.path} would write the same output names")
        outputs[name] = source.path
    return sources


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


def _stereo_still(image, path: Path, args: argparse.Namespace) -> tuple[dict, dict]:
    """(depth arrays, the sidecar's `stereo` entry) of the left eye of a stereo still."""
    import warnings

    import numpy as np

    from .stereo import estimate_stereo_equirect, estimate_stereo_perspective, split_stereo

    near, far = (args.near, args.far) if args.near is not None else (STEREO_NEAR, STEREO_FAR)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            left, right = split_stereo(image, args.layout)
            if args.projection == "perspective":
                disparity, matched = estimate_stereo_perspective(left, right)
            else:
                ods = estimate_stereo_equirect(left, right, ipd=args.ipd, pole_merge=args.pole_merge,
                                               min_distance=near, max_distance=far)
        except ValueError as error:  # the pair's checks: this input cannot be used as stereo
            raise BadInputError(f"{path}: {error}") from None
    messages = [str(warning.message) for warning in caught]
    for message in messages:
        print(f"warning: {path}: {message}", file=sys.stderr)
    entry = {"layout": args.layout, "eye": "left", "eye_size": {"width": left.shape[1], "height": left.shape[0]},
             "warnings": messages}
    if args.projection == "perspective":
        mask = matched & (disparity > 0)
        distance = None
        if args.near is not None:  # pixel disparity is inverse depth up to f * baseline: the relative rule
            from .calibration import relative_to_distance

            distance, mask = relative_to_distance(disparity, args.near, args.far, valid=mask)
        entry["disparity"] = ("pixels of the left eye (column left - column right); off the mask, the "
                              "disparity of the background neighbours")
        return {"distance": distance, "disparity": disparity, "mask": mask, "plate": left}, entry
    mask = ods.mask
    inverse = np.where(mask, 1.0 / np.where(mask, ods.distance, 1.0), 0.0).astype(np.float32)
    entry.update(
        geometry="omni-directional stereo (ODS), parallel eyes", ipd=args.ipd,
        pole_merge=list(args.pole_merge) if args.pole_merge else None, min_distance=near, max_distance=far,
        distance="metres from the camera centre along each ray; off the mask, max_distance",
        disparity="1 / distance (1/m); 0 off the mask",
    )
    return {"distance": ods.distance, "disparity": inverse, "mask": mask, "plate": left}, entry


def _describe(estimator, args: argparse.Namespace) -> dict:
    if estimator is None:
        spec = registry.get(STEREO_MODEL)
        return {"name": spec.name, "title": spec.title, "kind": _stereo_kind(args), "license": spec.license,
                "commercial_use": spec.commercial_use}
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
    if depth.get("plate") is not None:  # stereo: the left eye, the plate this depth belongs to
        name = f"{stem}.left.png"
        image_io.write_rgb_png16(out_dir / name, depth["plate"])
        outputs["plate"] = {"file": name, "meaning": "the left eye (16-bit RGB), the plate of this depth"}
    if "preview" in plan.save:
        name = f"{stem}.preview.png"
        image_io.write_preview(out_dir / name, depth["disparity"], depth["mask"])
        outputs["preview"] = {"file": name, "meaning": "inferno colour map of disparity, near is bright"}
    return outputs


def _estimate_still(path: Path, args: argparse.Namespace, estimator, plan: _Plan, load_s: float) -> None:
    """Estimate one still image and write its files and sidecar."""
    from . import image_io, plugins

    perspective = args.projection == "perspective"
    timings = {"load_model": load_s}
    tick = time.perf_counter()
    image = image_io.read_image(path)
    timings["read"] = time.perf_counter() - tick
    tick = time.perf_counter()
    height, width = image.shape[:2]
    extra: dict[str, object] = {}
    if estimator is None:
        depth, extra["stereo"] = _stereo_still(image, path, args)
    elif perspective:
        rays = _photo_rays(height, width)[None] if getattr(estimator, "uses_rays", True) else None
        prediction = plugins.check_prediction(estimator.predict(image[None], rays), image[None], args.model)[0]
        distance, disparity, mask = _perspective_depth(
            prediction, estimator.kind, args, getattr(getattr(estimator, "spec", None), "max_depth", None)
        )
        depth = {"distance": distance, "disparity": disparity, "mask": mask}
        extra["rays"] = f"pinhole, {PHOTO_FOV_DEG:g} degrees horizontal field of view, looking along +X"
    else:
        try:
            fused = _equirect_estimator()(image, estimator, args.views or "cube", near=args.near, far=args.far)
        except ValueError as error:  # the engine's input checks: this input cannot be used
            raise BadInputError(f"{path}: {error}") from None
        depth = {"distance": fused.distance, "disparity": fused.disparity, "mask": fused.mask}
        extra["equirect"] = {"near": fused.near, "far": fused.far, "views": args.views or "cube",
                             "stages_s": {k: round(v, 4) for k, v in fused.timings.items()}}
    timings["estimate"] = time.perf_counter() - tick
    tick = time.perf_counter()
    out_dir = Path(args.output)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise Depth360Error(f"cannot create output folder {out_dir}: {error.strerror}") from None
    outputs = _write_outputs(out_dir, path.stem, plan, depth)
    timings["write"] = time.perf_counter() - tick
    sidecar = {
        "input": str(path),
        "version": __version__,
        "model": _describe(estimator, args),
        "projection": args.projection,
        "size": {"width": width, "height": height},
        "options": {
            "save": list(plan.save), "near": args.near, "far": args.far, "layout": args.layout,
            "ipd": args.ipd, "views": args.views, "device": args.device, "precision": args.precision,
        },
        "outputs": outputs,
        "timings_s": {key: round(value, 4) for key, value in timings.items()},
        **extra,
    }
    image_io.write_json(out_dir / f"{path.stem}.json", sidecar)
    written = ", ".join(entry["file"] for entry in outputs.values())
    print(f"{path}: {written} in {out_dir} ({timings['estimate']:.2f} s)", flush=True)


def _estimate_sequence(source: _Source, args: argparse.Namespace, estimator) -> None:
    """Estimate a video or image sequence through the sequence pipeline; print its summary line."""
    from . import sequence_pipeline

    perspective = args.projection == "perspective"
    near, far = args.near, args.far
    if estimator is None:
        if not perspective and near is None:
            near, far = STEREO_NEAR, STEREO_FAR

        def warn(message: str) -> None:
            start = "\n" if args.progress == "bar" else ""  # off the progress bar's line
            print(f"{start}warning: {source.path}: {message}", file=sys.stderr, flush=True)

        frame_estimator = sequence_pipeline.StereoFrameEstimator(
            args.layout, projection=args.projection, ipd=args.ipd, pole_merge=args.pole_merge,
            min_distance=near or STEREO_NEAR, max_distance=far or STEREO_FAR, warn=warn)
    elif perspective:
        frame_estimator = sequence_pipeline.PlainFrameEstimator(estimator, projection="perspective")
    else:
        frame_estimator = sequence_pipeline.FusionFrameEstimator(estimator, args.views or "cube")
    extra = {"cli": {"projection": args.projection, "layout": args.layout, "ipd": args.ipd,
                     "pole_merge": list(args.pole_merge) if args.pole_merge else None, "views": args.views,
                     "device": args.device, "precision": args.precision}}
    try:
        result = sequence_pipeline.run_sequence(
            source.info, args.output, frame_estimator, frames=args.frames,
            save=args.save or sequence_pipeline.DEFAULT_SAVE, near=near, far=far, stabilise=args.stabilise,
            refine=args.refine, smoothing=args.smoothing, sky=args.sky, wrap=not perspective,
            progress=args.progress, sidecar_extra=extra)
    except Depth360Error as error:
        if str(source.path) in str(error):
            raise
        raise type(error)(f"{source.path}: {error}") from None
    print(f"{source.path}: {len(result.written)} frames written, {len(result.skipped)} already complete, "
          f"in {result.folder}", flush=True)


def run_estimate(args: argparse.Namespace) -> int:
    """`depth360 estimate INPUT... -o OUTDIR`: still images, stereo pairs, videos and sequences."""
    from . import plugins

    sources = _check_inputs(args.inputs)
    _check_usage(args, sources)
    stereo = args.model == STEREO_MODEL
    stills = [source for source in sources if source.info is None]
    if stereo:
        kind = _stereo_kind(args)
    elif not plugins.is_plugin_reference(args.model):
        kind = _spec(args.model).kind
    else:
        kind = None
    if stills and kind is not None:
        _plan_outputs(args, kind)  # usage errors before the model loads
    if stills and not stereo and args.projection == "equirect":
        _equirect_estimator()

    estimator = None
    load_s = 0.0
    if not stereo:
        from .network_estimator import load_estimator

        started = time.perf_counter()
        estimator = load_estimator(args.model, args.models_dir, args.device, args.precision)
        load_s = time.perf_counter() - started
        kind = estimator.kind
    plan = _plan_outputs(args, kind) if stills else None
    for note in plan.notes if plan else ():
        print(f"note: {note}", file=sys.stderr)

    from .progress import Progress

    still_progress = Progress(len(stills), "json", label="stills") if args.progress == "json" and stills else None
    if still_progress is not None:
        still_progress.start()
    stills_done = 0
    for source in sources:
        if source.info is None:
            _estimate_still(source.path, args, estimator, plan, load_s)
            stills_done += 1
            if still_progress is not None:
                still_progress.frame_done(stills_done)
        else:
            _estimate_sequence(source, args, estimator)
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
