"""Ground-truth render worker: runs inside `bpy`, renders one request, writes arrays.

Usage (cwd = repository root): ``python -m tests.groundtruth.worker REQUEST.json OUTDIR``.
The request is ``{"scene", "params", "width", "samples", "frames": [...],
"stereo": null | {"ipd", "pole_merge": null | [from_deg, to_deg]} | {"ipd", "vr180": true}}``.
A ``vr180`` request renders each eye as a half equirect, 180 x 180 degrees (``width`` x
``width``): the same camera with its longitude and latitude limited to +-90 degrees, and
two parallel eyes ``ipd`` apart (Blender's ordinary stereo camera, not spherical: each
eye's Z pass is measured from that eye). For every frame two
Cycles CPU renders are made: a *beauty* render (``samples`` per pixel, Blackman-Harris
1.5 px filter, anti-aliased RGB) and a *geometry* render (1 sample, a 0.01 px box filter,
so every value belongs to the exact pixel-centre ray) for the Z pass (for a panoramic
camera: the distance from the camera centre), the object index and the AOV ``ray``.
Both are written as multilayer OpenEXR, read back with the OpenEXR package and saved as
``frame_NNNN.npz`` (mono: ``rgb distance object_index ray``; stereo: the same names
prefixed ``left_`` / ``right_``) plus ``frame_NNNN.json`` (objects, render seconds).
Exit status: 0 done, 2 bad request (ValueError), 1 anything else.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

# Cycles writes this depth where a ray hits nothing.
BACKGROUND_DEPTH = 1.0e9
GEOMETRY_FILTER_WIDTH = 0.01
BEAUTY_FILTER_WIDTH = 1.5
AOV_RAY = "ray"


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Blender's Standard view transform on an sRGB display: clip to 0..1, sRGB OETF."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(
        np.float32
    )


def _configure(scene, width: int, samples: int, stereo: dict | None) -> None:
    import bpy

    render = scene.render
    render.engine = "CYCLES"
    vr180 = stereo is not None and bool(stereo.get("vr180"))
    render.resolution_x = width
    render.resolution_y = width if vr180 else width // 2
    render.resolution_percentage = 100
    render.use_persistent_data = True
    render.film_transparent = False
    render.use_motion_blur = False
    render.dither_intensity = 0.0
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0

    cycles = scene.cycles
    cycles.device = "CPU"
    cycles.samples = samples
    cycles.use_adaptive_sampling = False
    cycles.use_denoising = False
    cycles.seed = 0
    cycles.use_animated_seed = False
    # Direct light only: the scenes are lit by emission and a radius-0 point light.
    for bounces in ("max_bounces", "diffuse_bounces", "glossy_bounces",
                    "transmission_bounces", "volume_bounces", "transparent_max_bounces"):
        setattr(cycles, bounces, 0)
    cycles.caustics_reflective = False
    cycles.caustics_refractive = False
    # A point light and a few emitters need no light tree: without it these scenes render 28%
    # faster (the same expected image, another noise pattern).
    cycles.use_light_tree = False

    view_layer = scene.view_layers[0]
    view_layer.use_pass_z = True
    view_layer.use_pass_object_index = True
    if AOV_RAY not in view_layer.aovs:
        aov = view_layer.aovs.add()
        aov.name = AOV_RAY
        aov.type = "COLOR"

    image = render.image_settings
    if hasattr(image, "media_type"):  # Blender 5.0+
        image.media_type = "MULTI_LAYER_IMAGE"
    else:
        image.file_format = "OPEN_EXR_MULTILAYER"
    image.color_depth = "32"
    image.exr_codec = "NONE"

    render.use_multiview = stereo is not None
    if stereo is not None:
        render.views_format = "STEREO_3D"
        image.views_format = "INDIVIDUAL"
        camera_stereo = bpy.data.objects["camera"].data.stereo
        camera_stereo.convergence_mode = "PARALLEL"
        camera_stereo.interocular_distance = stereo["ipd"]
        if vr180:
            _limit_to_180(bpy.data.objects["camera"].data)
            camera_stereo.use_spherical_stereo = False
            return
        camera_stereo.use_spherical_stereo = True
        pole_merge = stereo["pole_merge"]
        camera_stereo.use_pole_merge = pole_merge is not None
        if pole_merge is not None:
            # Set "to" first so that Blender does not clamp "from" against the old "to".
            camera_stereo.pole_merge_angle_to = math.radians(pole_merge[1])
            camera_stereo.pole_merge_angle_from = math.radians(pole_merge[0])


def _limit_to_180(camera_data) -> None:
    """The equirect camera limited to the half sphere in front: longitude and latitude +-90 deg."""
    half = math.pi / 2
    owner = camera_data if hasattr(camera_data, "longitude_min") else camera_data.cycles
    owner.longitude_min, owner.longitude_max = -half, half
    owner.latitude_min, owner.latitude_max = -half, half


def _render(scene, path_base: Path, samples: int, filter_type: str, filter_width: float) -> None:
    import bpy

    scene.cycles.samples = samples
    scene.cycles.pixel_filter_type = filter_type
    scene.cycles.filter_width = filter_width
    scene.render.filepath = str(path_base)
    bpy.ops.render.render(write_still=True)


def _exr_channels(path: Path) -> dict[str, np.ndarray]:
    """Every channel (or RGBA group) of every part of an EXR file, by its full name."""
    import OpenEXR

    channels = {}
    with OpenEXR.File(str(path)) as exr:
        for part in exr.parts:
            for name, channel in part.channels.items():
                channels[name] = np.array(channel.pixels)
    return channels


def _pass(channels: dict[str, np.ndarray], names: tuple[str, ...], path: Path) -> np.ndarray:
    """The pass whose name (the part after the view layer) is one of `names`."""
    for key, pixels in channels.items():
        parts = key.split(".")
        if len(parts) >= 2 and parts[1] in names:
            return pixels
    raise RuntimeError(f"{path}: no pass named {names}; channels: {sorted(channels)}")


def _eye_arrays(beauty_path: Path, geometry_path: Path) -> dict[str, np.ndarray]:
    beauty = _exr_channels(beauty_path)
    geometry = _exr_channels(geometry_path)
    combined = _pass(beauty, ("Combined",), beauty_path)[..., :3].astype(np.float32)
    depth = _pass(geometry, ("Depth",), geometry_path).astype(np.float32)
    index = _pass(geometry, ("IndexOB", "Object Index"), geometry_path)
    ray = _pass(geometry, (AOV_RAY,), geometry_path)[..., :3].astype(np.float32)
    distance = np.where(depth >= BACKGROUND_DEPTH, np.float32(np.inf), depth)
    return {
        "rgb": linear_to_srgb(combined),
        "distance": distance.astype(np.float32),
        "object_index": np.rint(index).astype(np.int32),
        "ray": ray,
    }


def run(request: dict, outdir: Path) -> None:
    """Build the requested scene and render every requested frame into `outdir`."""
    import bpy

    from . import scenes

    width, samples = int(request["width"]), int(request["samples"])
    stereo = request.get("stereo")
    scene = scenes.build(request["scene"], **request["params"])
    _configure(scene, width, samples, stereo)
    outdir.mkdir(parents=True, exist_ok=True)
    for frame in request["frames"]:
        scene.frame_set(int(frame))
        start = time.perf_counter()
        beauty = outdir / f"f{frame:04d}_beauty"
        geometry = outdir / f"f{frame:04d}_geometry"
        _render(scene, beauty, samples, "BLACKMAN_HARRIS", BEAUTY_FILTER_WIDTH)
        _render(scene, geometry, 1, "BOX", GEOMETRY_FILTER_WIDTH)
        seconds = time.perf_counter() - start
        if stereo is None:
            eyes = {"": ""}
        else:
            eyes = {
                "left_": scene.render.views["left"].file_suffix,
                "right_": scene.render.views["right"].file_suffix,
            }
        arrays = {}
        for prefix, suffix in eyes.items():
            beauty_file = beauty.with_name(beauty.name + suffix + ".exr")
            geometry_file = geometry.with_name(geometry.name + suffix + ".exr")
            for name, array in _eye_arrays(beauty_file, geometry_file).items():
                arrays[prefix + name] = array
            beauty_file.unlink()
            geometry_file.unlink()
        np.savez(outdir / f"frame_{frame:04d}.npz", **arrays)
        info = {
            "objects": scenes.scene_objects(scene),
            "camera": scenes.scene_camera(scene),
            "render_seconds": seconds,
            "blender": bpy.app.version_string,
        }
        (outdir / f"frame_{frame:04d}.json").write_text(json.dumps(info, indent=1))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.groundtruth.worker REQUEST.json OUTDIR", file=sys.stderr)
        return 2
    request = json.loads(Path(argv[0]).read_text())
    try:
        run(request, Path(argv[1]))
    except ValueError as error:
        print(f"bad ground-truth request: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
