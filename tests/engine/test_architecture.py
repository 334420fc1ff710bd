"""The house rules of the code: imports only go down the stack, no Blender in the engine, short functions.

The engine (`estimators/`) is a stack of subpackages, each allowed to import only those
below it (README, "For developers"); the Blender side sits on top of the engine:
compositing < operators < panels < the extension's `__init__`. The checker reads every
module's imports (top level and inside functions) with `ast`, so a lazy import counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The engine's stack, bottom first; "" are the top-level modules (errors, version, sampling).
ENGINE_STACK = ("", "media", "models", "postprocess", "panorama", "stereo", "video", "device", "pipeline", "cluster",
                "cli")
# The extension's stack, bottom first; the engine is below all of it.
BLENDER_STACK = ("estimators", "compositing", "operators", "panels", "__init__")
BLENDER_MODULES = ("bpy", "mathutils", "bmesh", "gpu", "bpy_extras")
LONGEST_FUNCTION = 80
LONGEST_CLI_MODULE = 250


def _layer(parts: tuple[str, ...]) -> tuple[str, int] | None:
    """(stack, rank) of a module given as its parts below the repository root."""
    if not parts:
        return None
    if parts[0] == "estimators":
        sub = parts[1] if len(parts) > 1 and parts[1] in ENGINE_STACK[1:] else ""
        return "engine", ENGINE_STACK.index(sub)
    if parts[0] in BLENDER_STACK[1:4]:
        return "blender", BLENDER_STACK.index(parts[0])
    if parts == ("__init__",):
        return "blender", BLENDER_STACK.index("__init__")
    return None


def _resolve(node: ast.ImportFrom, package: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The modules (parts below the repository root) a `from ... import` names."""
    if node.level:
        base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    elif node.module and node.module.startswith("depth360."):
        base = ()
    else:
        return []
    module = tuple(node.module.split(".")) if node.module else ()
    if module[:1] == ("depth360",):
        module = module[1:]
    target = base + module
    names = [alias.name for alias in node.names]
    found = []
    for name in names:  # `from . import x`: x may be a module of that package
        candidate = target + (name,)
        if (REPO.joinpath(*candidate).is_dir() or REPO.joinpath(*candidate[:-1], f"{name}.py").is_file()):
            found.append(candidate)
    return found or [target]


def layer_violations(relative_path: str, source: str) -> list[str]:
    """Every import in `source` (the file at `relative_path`) that goes up the stack or into Blender."""
    parts = Path(relative_path).with_suffix("").parts
    package = parts[:-1]  # a module's package; for an __init__, its own package
    here = _layer(parts)
    if here is None:
        return []
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [tuple(alias.name.split(".")) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if not node.level and node.module and node.module.split(".")[0] in BLENDER_MODULES:
                targets = [tuple(node.module.split("."))]
            else:
                targets = _resolve(node, package)
        else:
            continue
        for target in targets:
            if target[0] in BLENDER_MODULES:
                if here[0] == "engine":
                    problems.append(f"{relative_path}:{node.lineno}: the engine imports Blender ({'.'.join(target)})")
                continue
            if target[:1] == ("depth360",):
                target = target[1:]
            there = _layer(target)
            if there is None:
                continue
            upward = (there[0] == here[0] and there[1] > here[1]) or (here[0] == "engine" and there[0] == "blender")
            if upward:
                problems.append(f"{relative_path}:{node.lineno}: imports {'.'.join(target)}, above it in the stack")
    return problems


def _project_modules() -> list[Path]:
    paths = [REPO / "__init__.py"]
    for folder in ("estimators", "compositing", "operators", "panels"):
        paths += sorted((REPO / folder).rglob("*.py"))
    return paths


def test_imports_only_go_down_the_stack():
    problems = []
    for path in _project_modules():
        problems += layer_violations(str(path.relative_to(REPO)), path.read_text())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("path", "planted", "expected"),
    [
        ("estimators/media/image_io.py", "from ..pipeline import run\n", "above it"),
        ("estimators/models/weights.py", "def f():\n    from ..panorama import fusion\n", "above it"),
        ("estimators/postprocess/filters.py", "from depth360.estimators.cli import main\n", "above it"),
        ("estimators/errors.py", "from .media import image_io\n", "above it"),
        ("estimators/panorama/fusion.py", "import bpy\n", "imports Blender"),
        ("estimators/pipeline/run.py", "def f():\n    from mathutils import Vector\n", "imports Blender"),
        ("estimators/cli/__init__.py", "from ... import operators\n", "above it"),
        ("operators/estimate.py", "from ..panels import settings\n", "above it"),
        ("compositing/depth_mesh.py", "from ..operators import estimate\n", "above it"),
    ],
)
def test_the_checker_catches_a_planted_import(path, planted, expected):
    source = (REPO / path).read_text()
    assert not layer_violations(path, source)
    problems = layer_violations(path, source + "\n" + planted)
    assert problems and expected in problems[0], problems


def test_downward_imports_are_allowed():
    assert not layer_violations("estimators/pipeline/run.py", "from ..media import image_io\nfrom . import stages\n")
    assert not layer_violations("panels/settings.py", "from ..operators import estimate\nfrom ..estimators import cli\n")


def test_functions_are_short_and_the_command_line_is_small():
    long = []
    for path in sorted((REPO / "estimators").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length >= LONGEST_FUNCTION:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {length} lines")
    assert not long, "\n".join(long)
    for module in ("__init__.py", "arguments.py"):
        lines = len((REPO / "estimators" / "cli" / module).read_text().splitlines())
        assert lines < LONGEST_CLI_MODULE, f"estimators/cli/{module}: {lines} lines"
