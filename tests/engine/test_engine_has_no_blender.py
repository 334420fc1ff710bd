"""The depth engine (estimators/) works where Blender cannot be imported, and stays that way."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BLENDER_MODULES = ("bpy", "mathutils", "bmesh", "gpu", "bpy_extras", "addon_utils")


def _engine_modules() -> list[str]:
    modules = []
    for path in sorted((REPO / "estimators").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] != "__main__":  # running, not importing: the command line itself
            modules.append("depth360." + ".".join(parts))
    return modules


def test_every_engine_module_imports_without_blender():
    modules = _engine_modules()
    assert "depth360.estimators.models.registry" in modules
    script = textwrap.dedent(
        f"""
        import importlib, sys

        class BlockBlender:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLENDER_MODULES!r}:
                    raise ImportError(f"Blender module {{name}} is blocked in this process")

        sys.meta_path.insert(0, BlockBlender())
        try:
            import bpy  # noqa
        except ImportError:
            pass
        else:
            raise SystemExit("the blocker failed: bpy imported")
        for name in {modules!r}:
            importlib.import_module(name)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLENDER_MODULES!r})
        print("BLENDER-MODULES-LOADED", loaded)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "BLENDER-MODULES-LOADED []" in result.stdout


def _ruff(path_name: str, source: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--stdin-filename", path_name, "-"],
        input=source, capture_output=True, text=True, cwd=REPO,
    )


def test_static_check_bans_blender_imports_in_the_engine():
    for source in ("import bpy\n\nprint(bpy.data)\n", "from mathutils import Vector\n\nprint(Vector)\n",
                   "def f():\n    import bmesh\n\n    return bmesh\n"):
        result = _ruff("estimators/new_module.py", source)
        assert result.returncode != 0, source
        assert "TID251" in result.stdout, result.stdout
    # The same import is fine on the Blender side of the line.
    assert _ruff("compositing/new_builder.py", "import bpy\n\nprint(bpy.data)\n").returncode == 0


def test_ruff_is_clean_on_the_whole_repository():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
