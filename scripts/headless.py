"""Depth 360 without the UI: estimate depth, build the 360 mesh and the compositor, render.

In Blender (the scene is the .blend given to -b):

    blender -b scene.blend --python scripts/headless.py -- INPUT -o OUTDIR [options]

Through the `bpy` module (open a scene with --blend, or start from the default one):

    python scripts/headless.py INPUT -o OUTDIR [--blend scene.blend] [options]

The engine runs in-process when torch and OpenCV import in this Python, else (or with
--python) in a worker subprocess of that Python. The Depth 360 extension is used if it
is installed and enabled; otherwise the extension folder this script lives in is loaded.
Exit status: 0 done, 2 bad usage, 1 anything else (the message on stderr says what).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path

EXTENSION_ROOT = Path(__file__).resolve().parents[1]
LOCAL_PACKAGE = "depth360"


def script_arguments(argv: list[str], inside_blender: bool) -> list[str]:
    """This script's own arguments: those after `--`; in Blender without `--`, none."""
    if "--" in argv:
        return argv[argv.index("--") + 1:]
    return [] if inside_blender else argv[1:]


def build_parser() -> argparse.ArgumentParser:
    """Options of the headless entry (most mirror `depth360 estimate`)."""
    parser = argparse.ArgumentParser(
        prog="headless.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Estimate depth for 360 footage, build the Depth 360 mesh and compositor in the\n"
            "scene, and render the composite.\n\n"
            "  in Blender:          blender -b scene.blend --python scripts/headless.py -- INPUT -o OUTDIR ...\n"
            "  with the bpy module: python scripts/headless.py INPUT -o OUTDIR [--blend scene.blend] ..."
        ),
        epilog="exit status: 0 done, 2 bad usage, 1 anything else (the message says what)",
    )
    parser.add_argument("input", metavar="INPUT", help="360 image, movie or image sequence")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the depth files")
    parser.add_argument("--blend", metavar="FILE", help="open this .blend first (the bpy module; "
                        "in Blender give it to -b instead)")
    parser.add_argument("--model", help="model name, or python:FILE.py:FACTORY (default: the scene's)")
    parser.add_argument("--layout", choices=("mono", "top-bottom", "side-by-side", "vr180"),
                        help="stereo layout (a network with a stereo layout: stereo-guided)")
    parser.add_argument("--views", choices=("cube", "ico", "equirect"), help="360 view layout")
    parser.add_argument("--near", type=float, metavar="M", help="distance of the nearest surface")
    parser.add_argument("--far", type=float, metavar="M", help="distance of the farthest surfaces")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), help="device for the networks")
    parser.add_argument("--input-size", type=int, metavar="PIXELS",
                        help="network input side instead of the model's own (smaller: faster, coarser)")
    parser.add_argument("--python", metavar="PATH", help="run the engine in a worker with this Python")
    parser.add_argument("--engine", choices=("auto", "worker", "in-process"), default="auto",
                        help="where the engine runs (default auto: in-process if it imports here)")
    parser.add_argument("--no-mesh", action="store_true", help="do not build the 360 depth mesh")
    parser.add_argument("--no-compositor", action="store_true", help="do not build the compositor")
    parser.add_argument("--camera-solve", action="store_true",
                        help="a moving 360 camera: animate the panoramic camera from the camera solve and put the "
                        "depth mesh of --frame (default: the current) in world space")
    parser.add_argument("--render", metavar="FILE.png", help="render the composite to this PNG")
    parser.add_argument("--frame", type=int, metavar="N", help="scene frame to render (default: current)")
    parser.add_argument("--samples", type=int, default=16, metavar="N", help="Cycles samples (default 16)")
    parser.add_argument("--resolution-percentage", type=int, default=100, metavar="P",
                        help="render size in percent of the plate's (default 100)")
    parser.add_argument("--save-blend", metavar="FILE", help="save the scene to this .blend at the end")
    return parser


def load_extension():
    """The Depth 360 package, registered: the enabled extension, else this script's folder."""
    import bpy

    for name in bpy.context.preferences.addons.keys():
        if name.rpartition(".")[2] == "depth360":
            return importlib.import_module(name)
    package = sys.modules.get(LOCAL_PACKAGE)
    if package is None:
        spec = importlib.util.spec_from_file_location(
            LOCAL_PACKAGE, EXTENSION_ROOT / "__init__.py", submodule_search_locations=[str(EXTENSION_ROOT)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules[LOCAL_PACKAGE] = package
        spec.loader.exec_module(package)
    if not hasattr(bpy.types.Scene, "depth360"):
        package.register()
    return package


def configure_scene(scene, args: argparse.Namespace) -> dict:
    """Put the options into `scene.depth360`; the estimate operator's own options."""
    from os.path import abspath

    settings = scene.depth360
    settings.source_path = abspath(args.input)
    settings.output_dir = abspath(args.output)
    for name in ("layout", "views", "near", "far", "input_size"):
        value = getattr(args, name)
        if value is not None:
            setattr(settings, name, value)
    settings.build_mesh_after = not args.no_mesh and not args.camera_solve  # the solve places its own mesh
    settings.build_compositor_after = not args.no_compositor
    options = {"engine": {"auto": "AUTO", "worker": "WORKER", "in-process": "IN_PROCESS"}[args.engine]}
    if args.model:
        options["model"] = args.model
    if args.python:
        options["python"] = abspath(args.python)
    if args.device:
        options["device"] = args.device
    return options


def render_composite(scene, path: str, samples: int, percentage: int) -> None:
    """Render the scene (compositor included) to a PNG at `path`."""
    import bpy

    scene.cycles.samples = samples
    scene.render.resolution_percentage = percentage
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):  # Blender 5.0+
        settings.media_type = "IMAGE"
    settings.file_format = "PNG"
    settings.color_mode = "RGB"
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True, scene=scene.name)


def run(args: argparse.Namespace) -> int:
    """Estimate, build and render as `args` say; the exit status."""
    from os.path import abspath

    import bpy

    if args.blend:
        bpy.ops.wm.open_mainfile(filepath=abspath(args.blend))
    load_extension()
    scene = bpy.context.scene
    options = configure_scene(scene, args)
    try:
        bpy.ops.depth360.estimate(**options)
    except RuntimeError as error:  # the operator's error report
        print(f"headless: {str(error).strip()}", file=sys.stderr)
        return 1
    print(f"headless: depth {scene.depth360.depth_path}")
    if args.frame is not None:
        scene.frame_set(args.frame)
    if args.camera_solve:
        try:
            bpy.ops.depth360.apply_camera_solve(frame=scene.frame_current, build_mesh=not args.no_mesh)
        except RuntimeError as error:
            print(f"headless: {str(error).strip()}", file=sys.stderr)
            return 1
        camera = scene.camera
        keys = camera.animation_data.action.frame_range
        print(f"headless: camera solve: {camera.name} keyed on frames {int(keys[0])}-{int(keys[1])}")
    if args.render:
        render_composite(scene, abspath(args.render), args.samples, args.resolution_percentage)
        print(f"headless: rendered {abspath(args.render)}")
    if args.save_blend:
        bpy.ops.wm.save_as_mainfile(filepath=abspath(args.save_blend))
        print(f"headless: saved {abspath(args.save_blend)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse the arguments (before Blender loads, so --help is quick), then run."""
    inside_blender = "bpy" in sys.modules  # Blender imports it before running a --python script
    args = build_parser().parse_args(script_arguments(sys.argv if argv is None else argv, inside_blender))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
