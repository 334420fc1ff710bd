"""Depth 360: a Blender extension for depth-based compositing of 360 footage.

Only `register()` and `unregister()` live here. Blender modules are imported inside
them, so the package also imports outside Blender (the `depth360` command line runs
its engine, `estimators/`, without bpy).
"""


def register():
    import bpy

    from . import operators, panels

    for cls in (*panels.CLASSES, *operators.CLASSES):
        bpy.utils.register_class(cls)
    bpy.types.Scene.depth360 = bpy.props.PointerProperty(type=panels.Depth360SceneSettings)


def unregister():
    import bpy

    from . import operators, panels

    operators.estimate.stop_all_jobs()  # a running estimate's worker, timer and status go with it
    del bpy.types.Scene.depth360
    for cls in reversed((*panels.CLASSES, *operators.CLASSES)):
        bpy.utils.unregister_class(cls)
