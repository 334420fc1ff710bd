"""The extension installs, enables, disables and re-enables in real Blender."""

from __future__ import annotations

import zipfile

import bpy

PANELS = (
    "VIEW3D_PT_depth360",
    "VIEW3D_PT_depth360_source",
    "VIEW3D_PT_depth360_model",
    "VIEW3D_PT_depth360_output",
    "VIEW3D_PT_depth360_camera_solve",
)


def _enable(module: str) -> None:
    import addon_utils

    errors = []
    addon_utils.enable(module, default_set=True, handle_error=errors.append)
    assert not errors, errors


def _disable(module: str) -> None:
    import addon_utils

    errors = []
    addon_utils.disable(module, default_set=True, handle_error=errors.append)
    assert not errors, errors


def _assert_registered() -> None:
    for name in PANELS:
        panel = getattr(bpy.types, name, None)
        assert panel is not None, f"{name} is not registered"
        assert panel.bl_space_type == "VIEW_3D" and panel.bl_region_type == "UI"
        assert panel.bl_category == "Depth 360"
    prop = bpy.types.Scene.bl_rna.properties["depth360"]
    assert prop.type == "POINTER" and prop.fixed_type.identifier == "Depth360SceneSettings"


def _assert_unregistered() -> None:
    for name in PANELS:
        assert getattr(bpy.types, name, None) is None, f"{name} still registered"
    assert "depth360" not in bpy.types.Scene.bl_rna.properties


def test_zip_holds_the_extension_and_nothing_of_the_workshop(extension_zip):
    names = set(zipfile.ZipFile(extension_zip).namelist())
    assert {"blender_manifest.toml", "__init__.py", "LICENSE"} <= names
    assert any(n.startswith("estimators/") for n in names)
    assert any(n.startswith("panels/") for n in names)
    for unwanted in ("tests/", ".venv", ".ci/", "requirements/", "Makefile", "__pycache__"):
        assert not any(unwanted in n for n in names), unwanted


def test_panel_preferences_and_settings_after_install(installed_extension):
    _assert_registered()
    prefs = bpy.context.preferences.addons[installed_extension].preferences
    assert prefs.device == "auto"
    assert prefs.models_dir == ""
    assert {"models_dir", "device"} <= set(prefs.bl_rna.properties.keys())
    settings = bpy.context.scene.depth360
    assert settings.model == "depth-anything-v2-small"
    assert settings.layout == "mono"
    assert settings.near < settings.far
    settings.layout = "top-bottom"
    assert settings.layout == "top-bottom"


def test_disable_and_reenable_without_error(installed_extension):
    _disable(installed_extension)
    _assert_unregistered()
    _enable(installed_extension)
    _assert_registered()
    # A second cycle proves unregister() mirrors register() completely.
    _disable(installed_extension)
    _assert_unregistered()
    _enable(installed_extension)
    _assert_registered()


def test_blender_exits_cleanly_with_the_extension_enabled(extension_zip, tmp_path):
    """A Blender process that enabled the extension ends with status 0 (no crash at exit)."""
    import os
    import subprocess
    import sys

    script = (
        "import bpy\n"
        f"bpy.ops.extensions.package_install_files(filepath={str(extension_zip)!r}, "
        "repo='user_default', enable_on_install=True)\n"
        "assert hasattr(bpy.types.Scene, 'depth360')\n"
    )
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"exit status {result.returncode}: {result.stderr[-2000:]}"
