"""The engine's version; `blender_manifest.toml` carries the same number (a test checks)."""

__version__ = "0.1.0"
