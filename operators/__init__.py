"""Blender operators of Depth 360 (thin: read properties, call the engine, report)."""

from . import (
    build_compositor,
    build_mesh,
    camera_solve,
    dependencies,
    download_model,
    estimate,
    paint_depth,
)

CLASSES: list = [
    *build_mesh.CLASSES,
    *build_compositor.CLASSES,
    *camera_solve.CLASSES,
    *estimate.CLASSES,
    *dependencies.CLASSES,
    *paint_depth.CLASSES,
    *download_model.CLASSES,
]

__all__ = ["CLASSES"]
