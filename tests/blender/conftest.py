"""Fixtures for tests that run inside real Blender (the `bpy` module: 5.0.x, 4.5 LTS or 4.2 LTS).

Blender's user folders (preferences, extension repositories) are redirected to a
temporary folder before `bpy` is first imported, so tests never touch a real setup.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "bl_ext.user_default.depth360"


def pytest_configure(config):
    if "bpy" not in sys.modules:
        os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="depth360-blender-user-")


def blender_ext_cli() -> Path:
    """Blender's own extension tool (build/validate), shipped inside the bpy module."""
    import bpy

    scripts = Path(bpy.utils.resource_path("LOCAL")) / "scripts"
    return scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory) -> Path:
    """The extension zip, built and validated by Blender's extension tooling."""
    out = tmp_path_factory.mktemp("extension")
    cli = str(blender_ext_cli())
    build = subprocess.run(
        [sys.executable, cli, "build", "--source-dir", str(REPO), "--output-dir", str(out)],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (zip_path,) = out.glob("depth360-*.zip")
    check = subprocess.run(
        [sys.executable, cli, "validate", str(zip_path)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return zip_path


@pytest.fixture(scope="session")
def installed_extension(extension_zip) -> str:
    """Install the zip through Blender's extension machinery, enabled; the add-on's module name."""
    import bpy

    result = bpy.ops.extensions.package_install_files(
        filepath=str(extension_zip), repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}
    assert PACKAGE in bpy.context.preferences.addons
    return PACKAGE
