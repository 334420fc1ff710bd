"""The extension manifest says what the project is, and agrees with the engine's version."""

from __future__ import annotations

import tomllib
from pathlib import Path

from depth360.estimators import __version__

REPO = Path(__file__).resolve().parents[2]


def test_manifest_identity_and_permissions():
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    assert manifest["id"] == "depth360"
    assert manifest["name"] == "Depth 360"
    assert manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert set(manifest["permissions"]) == {"files", "network"}
    assert "online" in manifest["permissions"]["network"]
    assert manifest["version"] == __version__
    assert (REPO / "LICENSE").read_text().startswith(" " * 20 + "GNU GENERAL PUBLIC LICENSE")
