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

ESTIMATE_EPILOG = """\
outputs: a still photo.jpg gives OUTDIR/photo.<kind>.exr for each kind saved (float32,
one channel "Y"), OUTDIR/photo.preview.png (inferno colours, near is bright),
OUTDIR/photo.<kind>.png for png16 (the value range is in the sidecar), and
OUTDIR/photo.json (model, options, version, timings). A video or image sequence
(a folder of numbered images, or a printf pattern such as shot/frame_%05d.png) clip
gives OUTDIR/clip/distance_00001.exr, mask_00001.exr, preview_00001.png, ... (frame
numbers 1-based; rgbd_00001.png for --save rgbd: colour over depth), preview.mp4 and
the sidecar OUTDIR/clip/clip.json. A still is a one-frame sequence: the same stages,
the same numbers.

depth kinds: `distance` is metres along each pixel's ray (a photo: along the camera
axis). `mask` is 1 where the depth is valid, 0 for sky, unseen pixels and anything at
or beyond infinity. Where the mask is 1, `disparity` = 1 / distance exactly; where it is
0, disparity is 0 and distance holds the far value. No file holds NaN or Inf.

calibration: relative models (Depth Anything V2, MiDaS) give disparity up to scale and
shift; inverse distance is taken affine in it, the 2nd percentile at 1/far and the 98th
at 1/near, clamped to [near, far] (360 footage: default 1 m / 100 m), the percentiles
taken over finite pixels (not the sky). Metric models and 360 stereo are only clamped to
[near, far]; metric Depth Anything V2 gives depth to the image plane, which for a photo
is the distance file as is, and in 360 is turned into distance along each ray.

sky: pixels at infinity (found from the depth's floor and a smooth picture connected to
the zenith; for metric models also anything beyond their range) are written as far,
disparity 0, mask 0. With --projection perspective (an ordinary
photo, whose field of view is unknown) a relative model without --near/--far is not
calibrated: `disparity` is then the model's own output, exactly the official one, and
the default --save writes disparity instead of distance.

--projection equirect (default): 360 footage (width = 2 x height), seen through the
--views layout (default cube), aligned and blended seam-free.

stereo (--model stereo with --layout top-bottom, left eye on top, side-by-side, left eye
on the left, or vr180, two 180 x 180 degree half-equirect eyes side by side, left eye on
the left): depth of the left eye (written as photo.left.png for a still), at the eye's
size. 360 footage is omni-directional stereo (ODS, Blender's spherical stereo) with the
eyes --ipd apart and --pole-merge angles; VR180 is two parallel eyes --ipd apart, its
distance measured from the left eye. --near and --far bound the search (default 0.5 m to
100 m). Matching runs at most 2048 wide, refined to sub-pixel at the input's width;
disparities under 1 px of the matched eye cannot be measured, and pixels whose
disparity is not known to a few percent (too little texture for how far they are) are
off the mask with them; sky is off the mask too. A pair is refused only when its eyes
are one picture (equal within one 8-bit level on 99.9% of the pixels). With
--projection perspective the pair is a rectified photo pair: `disparity` is in pixels
of the left eye; `distance` follows the relative rule.

stereo-guided (a network or plug-in --model with a stereo --layout): the network's
disparity of the left eye, fused over --views as for mono 360 footage, is mapped to the
stereo's metres by a smooth scale and shift field fitted where the stereo is confident:
dense metric distance with the network's edges, on every pixel but the sky (VR180: the
180-degree field). `--model stereo` stays the pure stereo path.

videos: depth is stabilised over time (--no-stabilise to turn it off). 360 videos and
sequences also get a camera solve (--no-camera-solve to turn it off): each frame's
rotation and location, from the frames alone and robust to moving objects, recorded in
the sidecar (OUTDIR/clip/clip.json, "camera"); with a moving camera the stabiliser
follows it, moving earlier frames' depth into each frame. Locations are in metres for
metric models and stereo, else in shot units (the stabilised depth's own: distance is
1 / disparity), fixed once per shot with the nearest of the first points the solve
triangulates at twice --near. A cut (two shots joined) starts a new pose chain, whose world
is its first frame, and a new reference; a black or featureless frame keeps the pose
before it, with a warning. --frames A-B runs a chunk (with the context frames the
stabiliser needs before A; the camera solve reads from the shot's first frame to a few
frames past B, so a chunk's poses and depth equal a whole-shot run's); chunks of one
shot with equal options can share a folder, even at the same time.

resume: frames already complete from an earlier run are skipped, if that run's options
(recorded in its sidecar: model, views, near/far, stabilisation, layout, the input
itself...) equal this run's. If they differ the run stops (exit 2) naming each option
that differs and touching nothing; --overwrite replaces what was made with other
options.

progress: --progress bar redraws a bar on a terminal; where stderr is a pipe or a file
it writes one plain line every few seconds instead. --progress json prints one JSON
line per frame written on stdout: {"frame", "done", "total", "fps", "eta_s"}.

cluster (--cluster, the optional Ray extra): `ray` starts a Ray cluster here for the
job; `ray:HOST:PORT` joins the one whose head runs `ray start --head --port PORT`;
`ray://HOST:PORT` joins it through its Ray Client server. A video is split into chunks
(--chunk-frames), each run with its context frames (the same files as one run) as a task
asking for a GPU where the cluster has them. Every node must see the inputs, models and
OUTDIR at the same paths (shared storage): the job checks, and names a node that cannot.
A failed chunk is tried again (--retries); rerunning a stopped job resumes it.

exit status: 0 done, 2 bad usage or bad input (including a rerun whose options differ
from the finished frames'), 3 weights missing, 1 anything else.
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
    estimate.add_argument("--edges", choices=EDGE_MODES, default="snap", help="snap: depth edges put on the "
                          "picture's (stereo fattening undone, smeared edges snapped); none: as estimated")
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
        sky=args.sky, refine=args.refine, edges=args.edges, overwrite=args.overwrite)
