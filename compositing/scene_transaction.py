"""Scene transactions: an operator's building either completes or leaves the scene as it was.

A builder checks its inputs before it changes anything, but an operator often runs
several steps (mesh, then compositor; a new mesh, then the paint canvas), and a later
step can fail after an earlier one changed the scene. `scene_transaction(scene)` records,
on entry, what the builders touch:

- which datablocks exist, of every kind in `DATA_KINDS` (by `session_uid`, which Blender
  never reuses within a session);
- the scene settings the builders change: render engine, resolution, transparent film,
  the view transform, the scene camera and world, the compositor (`use_nodes` in 4.x,
  `compositing_node_group` in 5.0), the texture-paint canvas, the view layers' Depth and
  Shadow Catcher passes, the objects linked to the scene collection, the active and
  selected objects;
- the transform and lens type of every existing camera object and its depth of field
  (a camera's keyframes are an action: an action added in the block is removed);
- the colour space and source of every existing image;
- which compositor trees are empty (4.x: the scene's own tree, 5.0: compositor node groups).

If the block raises, everything recorded is put back and every datablock the block
added is removed, then the exception goes on (operators turn a `CompositingInputError`
into an error report). Removing a datablock that existed before cannot be undone, so a
step that removes one must come last (after everything that can fail). A compositor tree
that was empty is emptied again (4.x: the scene's tree, which `use_nodes` creates and
nothing removes, stays; without nodes and switched off it is as good as absent); the nodes
of a tree that had some are not recorded: `compositor_tree.build_compositor` replaces them
only after all its checks passed, and every operator builds the compositor last.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import bpy
import mathutils

# Removal order: objects first, so the data they use lose their users.
DATA_KINDS = ("objects", "meshes", "cameras", "lights", "materials", "textures", "images",
              "node_groups", "worlds", "actions")
_SCENE_SETTINGS = (
    ("render", ("engine", "film_transparent", "resolution_x", "resolution_y", "resolution_percentage")),
    ("view_settings", ("view_transform", "look", "exposure", "gamma")),  # the look depends on the transform
    ("tool_settings.image_paint", ("mode", "canvas")),
    ("", ("camera", "world")),
)
_CAMERA_OBJECT = ("location", "rotation_mode", "rotation_euler", "rotation_quaternion")
_CAMERA_DATA = ("type", "panorama_type", "dof.focus_distance", "dof.focus_object")
_IMAGE = ("colorspace_settings.name", "source")
_FILE_SOURCES = ("FILE", "SEQUENCE", "MOVIE", "TILED")


def _owner(root, path: str):
    for name in path.split(".") if path else ():
        root = getattr(root, name)
    return root


def _plain(value):
    """A value to keep: vectors, Eulers and quaternions as tuples (Blender reuses their storage)."""
    return tuple(value) if isinstance(value, mathutils.Vector | mathutils.Euler | mathutils.Quaternion) else value


def _read(root, path: str, names) -> list[tuple[object, str, object]]:
    """(owner, attribute, value) of each of `names` (dotted below `path`) on `root`."""
    values = []
    for name in names:
        owner_path, _, attribute = f"{path}.{name}".strip(".").rpartition(".")
        owner = _owner(root, owner_path)
        values.append((owner, attribute, _plain(getattr(owner, attribute))))
    return values


def _write(values) -> None:
    for owner, attribute, value in values:
        try:
            if _plain(getattr(owner, attribute)) != value:  # an unchanged setting is not touched
                setattr(owner, attribute, value)
        except ReferenceError:
            continue  # the owner (or the value) was removed inside the transaction


def _view_layer(scene: bpy.types.Scene) -> bpy.types.ViewLayer:
    """The view layer whose active and selected objects the user sees."""
    return bpy.context.view_layer if bpy.context.scene == scene else scene.view_layers[0]


_NO_TREE = -1  # 4.x: the scene has no tree yet (`use_nodes` makes one)


def _compositor_trees(scene: bpy.types.Scene) -> list:
    """The compositor trees a builder may fill: 5.0's compositor node groups, 4.x's scene tree.

    Each as (tree, its key): the node group's `session_uid`; the scene tree's `_NO_TREE`
    (an embedded tree has no uid of its own, and there is one per scene).
    """
    if hasattr(scene, "compositing_node_group"):
        return [(tree, tree.session_uid) for tree in bpy.data.node_groups if tree.bl_idname == "CompositorNodeTree"]
    return [(scene.node_tree, _NO_TREE)] if scene.node_tree is not None else []


def _compositor(scene: bpy.types.Scene) -> tuple[str, ...]:
    return ("compositing_node_group",) if hasattr(scene, "compositing_node_group") else ("use_nodes",)


@dataclass
class SceneState:
    """What `scene_transaction` puts back (see the module's docstring)."""

    scene: bpy.types.Scene
    datablocks: dict[str, set[int]] = field(default_factory=dict)
    settings: list = field(default_factory=list)
    linked: set[int] = field(default_factory=set)
    active: bpy.types.Object | None = None
    selected: set[int] = field(default_factory=set)
    empty_trees: set[int] = field(default_factory=set)
    actions: list = field(default_factory=list)

    @classmethod
    def record(cls, scene: bpy.types.Scene) -> SceneState:
        state = cls(scene)
        state.datablocks = {kind: {block.session_uid for block in getattr(bpy.data, kind)} for kind in DATA_KINDS}
        for path, names in (*_SCENE_SETTINGS, ("", _compositor(scene))):
            state.settings += _read(scene, path, names)
        for view_layer in scene.view_layers:
            state.settings += _read(view_layer, "", ("use_pass_z", "cycles.use_pass_shadow_catcher"))
        for obj in bpy.data.objects:
            if obj.type == "CAMERA":
                state.settings += _read(obj, "", _CAMERA_OBJECT) + _read(obj.data, "", _CAMERA_DATA)
                animation = obj.animation_data
                state.actions.append((obj, animation.action if animation is not None else None))
        for image in bpy.data.images:
            if image.source in _FILE_SOURCES:  # not Render Result / Viewer Node (no colour space)
                state.settings += _read(image, "", _IMAGE)
        state.linked = {obj.session_uid for obj in scene.collection.objects}
        state.empty_trees = {key for tree, key in _compositor_trees(scene) if len(tree.nodes) == 0}
        if not hasattr(scene, "compositing_node_group") and scene.node_tree is None:
            state.empty_trees.add(_NO_TREE)
        view_layer = _view_layer(scene)
        state.active = view_layer.objects.active
        state.selected = {obj.session_uid for obj in view_layer.objects if obj is not None and obj.select_get()}
        return state

    def restore(self) -> None:
        """Put the recorded settings back and remove every datablock added since."""
        scene = self.scene
        _write(self.settings)
        self._restore_actions()
        for tree, key in _compositor_trees(scene):
            if key in self.empty_trees:
                tree.nodes.clear()
        for obj in list(scene.collection.objects):
            if obj.session_uid not in self.linked:
                scene.collection.objects.unlink(obj)
        for kind in DATA_KINDS:
            data = getattr(bpy.data, kind)
            for block in [block for block in data if block.session_uid not in self.datablocks[kind]]:
                data.remove(block)
        view_layer = _view_layer(scene)
        for obj in view_layer.objects:
            if obj is not None:  # None: an object removed since the last view-layer update
                obj.select_set(obj.session_uid in self.selected)
        with contextlib.suppress(ReferenceError):  # the active object was removed in the block
            view_layer.objects.active = self.active


    def _restore_actions(self) -> None:
        """Give every camera back the action (keyframes) it had, or none."""
        for obj, action in self.actions:
            with contextlib.suppress(ReferenceError):
                animation = obj.animation_data
                if action is None:
                    if animation is not None:
                        obj.animation_data_clear()
                elif animation is None or animation.action != action:
                    (animation or obj.animation_data_create()).action = action


@contextlib.contextmanager
def scene_transaction(scene: bpy.types.Scene) -> Iterator[SceneState]:
    """Run the block's changes to `scene` and bpy.data all or nothing (see the module docstring)."""
    state = SceneState.record(scene)
    try:
        yield state
    except BaseException:
        state.restore()
        raise
