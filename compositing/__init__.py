"""Builders that act on the open Blender scene (compositor trees, depth mesh, materials)."""
