"""The arguments of `depth360` (DESIGN.md "Command line"), and an EstimateRequest to and from them.

`request_from_args` turns parsed `estimate` arguments into the request the pipeline runs;
`request_to_args` is its inverse, the argument list a worker process is started with
(inputs after `--`, so a file named like an option is still an input).
"""

from __future__ import annotations

import argparse

from ..cluster.options import add_cluster_arguments
from ..media.video_io import parse_frame_range
from ..pipeline.request import (
    DEFAULT_IPD,
    DEFAULT_MODEL,
    DEFAULT_POLE_MERGE,
    DEFAULT_SAVE,
    EDGE_MODES,
    LAYOUTS,
    PROGRESS_MODES,
    SAVE_KINDS,
    SKY_MODES,
    SMOOTHINGS,
    EstimateRequest,
)
from ..version import __version__
from .help_text import ESTIMATE_EPILOG


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


def _models_parser(commands) -> None:
    models = commands.add_parser(
        "models", help="list the models and whether their weights are present; download weights",
        description="List every model: name, family, licence, output kind, weights present.")
    models.add_argument("--models-dir", metavar="DIR",
                        help="models folder (default $DEPTH360_MODELS, else the per-user data folder)")
    download = models.add_subparsers(dest="models_command", metavar="download").add_parser(
        "download", help="download a model's official checkpoint",
        description="Download a model's official checkpoint into the models folder (resumable; checked "
        "before it is kept).")
    download.add_argument("name", metavar="NAME", help="model name, as `depth360 models` lists it")
    download.add_argument("--models-dir", metavar="DIR", default=argparse.SUPPRESS, help="models folder")
    download.add_argument("--url", help="fetch from this address (a mirror) instead of the official one")
    download.add_argument("--quiet", action="store_true", help="no progress bar")


def _estimate_parser(commands) -> None:
    from ..models.devices import DEVICE_NAMES, PRECISION_NAMES

    estimate = commands.add_parser(
        "estimate", help="estimate depth for images, videos and image sequences",
        description="Estimate depth for each INPUT and write it to OUTDIR.", epilog=ESTIMATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add = estimate.add_argument
    add("inputs", nargs="+", metavar="INPUT",
        help="images, videos, image folders or printf patterns (shot/frame_%%05d.png)")
    add("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    add("--model", default=DEFAULT_MODEL, metavar="NAME",
        help=f"model name (default {DEFAULT_MODEL}), stereo, or python:FILE.py:FACTORY for a plug-in; a "
        "network or plug-in with a stereo --layout is stereo-guided")
    add("--models-dir", metavar="DIR", help="models folder (default $DEPTH360_MODELS, else the per-user data folder)")
    add("--projection", choices=("equirect", "perspective"), default="equirect",
        help="equirect: 360 footage (default); perspective: an ordinary photo")
    add("--layout", choices=LAYOUTS, default="mono",
        help="stereo layout of the input (default mono): top-bottom and side-by-side 360 stereo, vr180 "
        "(two 180-degree eyes side by side)")
    add("--ipd", type=_positive_float, default=DEFAULT_IPD, metavar="METRES",
        help=f"stereo baseline in metres (default {DEFAULT_IPD})")
    add("--pole-merge", type=_pole_merge, default=DEFAULT_POLE_MERGE, metavar="FROM,TO",
        help="360 stereo: the elevations (degrees) over which the eyes' separation fades to zero toward "
        "the poles, as Blender's pole merge, or off (default 60,75)")
    add("--views", metavar="PRESET", help="360 view layout (e.g. cube, ico)")
    add("--near", type=_positive_float, metavar="M",
        help="near distance for relative models (stereo: the nearest distance searched)")
    add("--far", type=_positive_float, metavar="M",
        help="far distance for relative models (stereo: the farthest distance kept)")
    add("--frames", metavar="A-B", help="frame range of a video or sequence (1-based, inclusive; A- to the end)")
    add("--save", type=_save_kinds, metavar="KINDS",
        help=f"comma list of {','.join(SAVE_KINDS)} (default {','.join(DEFAULT_SAVE)})")
    add("--input-size", type=int, metavar="PIXELS",
        help="network input side instead of the model's own (518 for Depth Anything): smaller is faster "
        "and coarser (the official input_size)")
    add("--device", choices=DEVICE_NAMES, default="auto", help="default auto: cuda, then mps, then cpu")
    add("--precision", choices=PRECISION_NAMES, default="auto", help="auto: fp16 on a GPU, fp32 on the CPU")
    add("--progress", choices=PROGRESS_MODES, default="bar",
        help="bar: a progress bar on a terminal, plain lines in a log (default); json: one JSON line per "
        "frame on stdout; none")
    add("--overwrite", action="store_true",
        help="replace frames made with other options (otherwise such a rerun stops, exit 2)")
    sequences = estimate.add_argument_group("videos and image sequences")
    sequences.add_argument("--no-stabilise", dest="stabilise", action="store_false",
                           help="estimate each frame on its own (no temporal stabilisation)")
    sequences.add_argument("--no-camera-solve", dest="camera_solve", action="store_false",
                           help="360: do not solve the camera's motion (no poses in the sidecar; the stabiliser "
                           "then assumes a still camera)")
    sequences.add_argument("--smoothing", choices=SMOOTHINGS, default="none",
                           help="spatial smoothing of each frame's depth (default none)")
    sequences.add_argument("--sky", choices=SKY_MODES, default="keep",
                           help="mask: pixels at the far distance are taken off the mask (default keep)")
    sequences.add_argument("--refine", action="store_true",
                           help="edge-aware refinement of each frame's depth at full size")
    estimate.add_argument("--edges", choices=EDGE_MODES, default="auto",
                          help="auto (default): 360 and VR180 stereo's fattened occlusion edges matched again; snap: also "
                               "stereo's depth jumps settled by a segmentation of the picture (about a tenth "
                               "more per stereo frame) and a network's smeared edges snapped to the picture's (on "
                               "the CPU); none: as estimated")
    add_cluster_arguments(estimate)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `depth360` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="depth360", description="Seam-free, temporally stable depth for 360 footage (and ordinary photos).")
    parser.add_argument("--version", action="version", version=f"depth360 {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _models_parser(commands)
    _estimate_parser(commands)
    return parser


def request_from_args(args: argparse.Namespace) -> EstimateRequest:
    """The EstimateRequest of parsed `estimate` arguments (BadInputError for a malformed --frames)."""
    frames = None
    if args.frames is not None:
        parsed = parse_frame_range(args.frames)
        frames = (parsed.first, parsed.last)
    return EstimateRequest(
        inputs=tuple(args.inputs), output_dir=args.output, model=args.model, models_dir=args.models_dir,
        projection=args.projection, layout=args.layout, ipd=args.ipd, pole_merge=args.pole_merge,
        views=args.views, near=args.near, far=args.far, frames=frames, save=args.save, device=args.device,
        precision=args.precision, progress=args.progress, stabilise=args.stabilise,
        camera_solve=args.camera_solve, smoothing=args.smoothing,
        sky=args.sky, refine=args.refine, edges=args.edges, overwrite=args.overwrite, input_size=args.input_size)
