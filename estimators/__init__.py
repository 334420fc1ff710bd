"""Depth 360's depth engine: everything that turns 360 footage into depth, without Blender.

Nothing in this package imports Blender modules (`bpy`, `mathutils`, ...); the Blender
side (`compositing/`, `operators/`, `panels/`) calls into it with plain data.
Heavy dependencies (torch, timm, OpenCV) are imported where they are used, so that
`depth360 --help` and `depth360 models` stay fast.
"""

from .version import __version__

__all__ = ["__version__"]
