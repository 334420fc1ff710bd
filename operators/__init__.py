"""Blender operators of Depth 360 (thin: read properties, call the engine, report)."""

CLASSES: list = []

__all__ = ["CLASSES"]
