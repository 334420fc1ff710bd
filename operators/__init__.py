"""Blender operators of Depth 360 (thin: read properties, call the engine, report)."""

from . import build_compositor, build_mesh

CLASSES: list = [*build_mesh.CLASSES, *build_compositor.CLASSES]

__all__ = ["CLASSES"]
