"""`depth360.download_model` in real Blender: refused offline, a verified download online.

The weights are served on 127.0.0.1 (no network). The worker is the project's engine
Python (`.venv`), as an external Python set in the preferences: it has torch, which
checks that the downloaded file loads.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import bpy
import pytest

from tests.loopback_server import LoopbackFileServer

REPO = Path(__file__).resolve().parents[2]
ENGINE_PYTHON = REPO / ".venv" / "bin" / "python"
# A model whose download has no pinned sha256 and size (registry.py), so fixture weights fit.
MODEL = "midas-dpt-swin2-tiny-256"
CHECKPOINT = "dpt_swin2_tiny_256.pt"
FIXTURE = "midas_dpt_swin2_tiny_256"


@pytest.fixture
def prefs(installed_extension, tmp_path):
    addon_prefs = bpy.context.preferences.addons[installed_extension].preferences
    saved = (addon_prefs.models_dir, addon_prefs.python_path, bpy.context.preferences.system.use_online_access)
    addon_prefs.models_dir = str(tmp_path / "models")
    addon_prefs.python_path = str(ENGINE_PYTHON)
    yield addon_prefs
    addon_prefs.models_dir, addon_prefs.python_path, bpy.context.preferences.system.use_online_access = saved


@pytest.fixture(scope="module")
def fixture_checkpoint(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("served") / CHECKPOINT
    script = textwrap.dedent(f"""
        import torch
        from tests.reference_fixtures import fixture_state_dict
        torch.save(fixture_state_dict({FIXTURE!r}), {str(path)!r})
    """)
    subprocess.run([str(ENGINE_PYTHON), "-c", script], cwd=REPO, check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    return path.read_bytes()


def test_download_is_refused_without_online_access(prefs):
    bpy.context.preferences.system.use_online_access = False
    assert not bpy.app.online_access
    with pytest.raises(RuntimeError, match="online access"):
        bpy.ops.depth360.download_model(model=MODEL)
    assert not Path(prefs.models_dir, CHECKPOINT).exists()


def test_download_fetches_and_verifies_the_weights(prefs, fixture_checkpoint):
    bpy.context.preferences.system.use_online_access = True
    assert bpy.app.online_access
    with LoopbackFileServer(fixture_checkpoint, file_name=CHECKPOINT) as server:
        result = bpy.ops.depth360.download_model(model=MODEL, url=server.url)
    assert result == {"FINISHED"}
    assert sorted(os.listdir(prefs.models_dir)) == [CHECKPOINT]
    assert Path(prefs.models_dir, CHECKPOINT).read_bytes() == fixture_checkpoint


def test_a_corrupt_download_is_an_error_and_leaves_nothing(prefs):
    bpy.context.preferences.system.use_online_access = True
    with LoopbackFileServer(b"not a checkpoint" * 100, file_name=CHECKPOINT) as server:
        with pytest.raises(RuntimeError, match="failed"):
            bpy.ops.depth360.download_model(model=MODEL, url=server.url)
    assert not any(name == CHECKPOINT for name in os.listdir(prefs.models_dir))
