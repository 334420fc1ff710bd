"""Blender UI of Depth 360: scene settings, add-on preferences and the N-panel."""

from . import preferences, settings, viewport_panel
from .settings import Depth360SceneSettings

# Registration order: property groups before the classes that point at them.
CLASSES = [*settings.CLASSES, *preferences.CLASSES, *viewport_panel.CLASSES]

__all__ = ["CLASSES", "Depth360SceneSettings"]
