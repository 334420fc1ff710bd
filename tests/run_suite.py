"""Run the whole test suite: the engine tests, then the Blender tests on bpy 5.0.x, 4.5 LTS and 4.2 LTS.

The engine tests run in a process that never loads Blender (one of them checks that);
each Blender run has a process of its own.

Called by `make test` (and so by CI). Prints each run's pytest output, then one closing
line `suite: N passed, N failed` over all runs; exits non-zero if anything failed.
"""

from __future__ import annotations

import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A RuntimeWarning from Blender (a property option one version wants, say) fails its run.
BLENDER_ARGS = ["tests/blender", "-W", "error::RuntimeWarning"]
RUNS = (
    ("engine", REPO / ".venv" / "bin" / "python", ["tests/engine"]),
    ("blender-5.0", REPO / ".venv" / "bin" / "python", BLENDER_ARGS),
    ("blender-4.5-lts", REPO / ".venv-bpy45" / "bin" / "python", BLENDER_ARGS),
    ("blender-4.2-lts", REPO / ".venv-bpy42" / "bin" / "python", BLENDER_ARGS),
)


def _counts(report: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) from a JUnit XML report; a missing report counts as a failure."""
    if not report.exists():
        return 0, 1, 0
    suites = ElementTree.parse(report).getroot()
    total = failed = skipped = 0
    for suite in suites.iter("testsuite"):
        total += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return total - failed - skipped, failed, skipped


def main(argv: list[str]) -> int:
    build = REPO / "build" / "test-reports"
    build.mkdir(parents=True, exist_ok=True)
    passed = failed = skipped = 0
    worst = 0
    for label, python, paths in RUNS:
        report = build / f"{label}.xml"
        report.unlink(missing_ok=True)
        print(f"\n=== tests on {label} ===", flush=True)
        start = time.monotonic()
        code = subprocess.call(
            [str(python), "-m", "pytest", *paths, f"--junitxml={report}", *argv], cwd=REPO
        )
        crashed = f" (the process died of signal {-code})" if code < 0 else ""
        print(f"=== {label}: exit {code}{crashed} in {time.monotonic() - start:.0f} s ===", flush=True)
        p, f, s = _counts(report)
        passed, failed, skipped = passed + p, failed + f, skipped + s
        worst = worst or code
    line = f"suite: {passed} passed, {failed} failed"
    print("\n" + line + (f", {skipped} skipped" if skipped else ""))
    if worst == 0 and passed == 0:
        return 1
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
