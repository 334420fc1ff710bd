"""Run the whole test suite: the engine tests, then the Blender tests on bpy 5.0.x, 4.5 LTS and 4.2 LTS.

The engine tests run in processes that never load Blender (one of them checks that): pytest-xdist
workers, one per core (at most MAX_WORKERS), each test file on one worker (torch keeps its
default threads: runs compared bit for bit, a cluster's against a single run, use the same
count). The three Blender runs then go at the same time, each in a process of its own, their
outputs printed one after the other. Parallel processes that want the same ground-truth
render wait for one render (tests/groundtruth locks it). Every run's idle thread pools sleep
instead of spinning (QUIET_THREAD_POOLS).

Called by `make test` (and so by CI). Prints each run's pytest output, then one closing
line `suite: N passed, N failed` over all runs; exits non-zero if anything failed.
Arguments are handed to every pytest run; `--serial` runs everything one after the other.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_WORKERS = 4

# A RuntimeWarning from Blender (a property option one version wants, say) fails its run.
BLENDER_ARGS = ["tests/blender", "-W", "error::RuntimeWarning"]
# Idle thread pools sleep at once instead of spinning: the suite runs more processes than there
# are cores, and OpenMP's (torch) and OpenBLAS's (numpy) default busy-waits then burn the time
# other processes need (about 10% of the engine run on 2 cores). Results do not change: the
# thread counts stay as they are. A value already in the environment is kept.
QUIET_THREAD_POOLS = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}
ENGINE = ("engine", REPO / ".venv" / "bin" / "python", ["tests/engine"])
BLENDERS = (
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


def _engine_options(serial: bool) -> tuple[list[str], dict[str, str]]:
    """pytest options and environment of the engine run: xdist workers sharing the cores."""
    cores = os.cpu_count() or 1
    workers = 1 if serial else max(1, min(cores, MAX_WORKERS))
    if workers == 1:
        return [], _environment()
    return ["-n", str(workers), "--dist", "loadfile"], _environment()


def _environment() -> dict[str, str]:
    """This process's environment with the thread pools quiet when idle (QUIET_THREAD_POOLS)."""
    return {**QUIET_THREAD_POOLS, **os.environ}


def _start(label: str, python: Path, paths: list[str], argv: list[str], build: Path, *, env=None, log=None):
    report = build / f"{label}.xml"
    report.unlink(missing_ok=True)
    command = [str(python), "-m", "pytest", *paths, f"--junitxml={report}", *argv]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT if log else None)


def _finished(label: str, code: int, seconds: float, build: Path) -> tuple[int, int, int]:
    crashed = f" (the process died of signal {-code})" if code < 0 else ""
    print(f"=== {label}: exit {code}{crashed} in {seconds:.0f} s ===", flush=True)
    return _counts(build / f"{label}.xml")


def main(argv: list[str]) -> int:
    serial = "--serial" in argv
    argv = [arg for arg in argv if arg != "--serial"]
    build = REPO / "build" / "test-reports"
    build.mkdir(parents=True, exist_ok=True)
    totals, codes = [0, 0, 0], []

    def add(counts, code):
        for index, value in enumerate(counts):
            totals[index] += value
        codes.append(code)

    label, python, paths = ENGINE
    options, env = _engine_options(serial)
    print(f"\n=== tests on {label} ===", flush=True)
    start = time.monotonic()
    code = _start(label, python, paths, [*options, *argv], build, env=env).wait()
    add(_finished(label, code, time.monotonic() - start, build), code)

    with tempfile.TemporaryDirectory(prefix="depth360-suite-") as logs:
        runs = []
        for label, python, paths in BLENDERS:
            log = open(Path(logs) / f"{label}.log", "w+")  # noqa: SIM115 - closed below
            if serial:
                print(f"\n=== tests on {label} ===", flush=True)
            start = time.monotonic()
            process = _start(label, python, paths, argv, build, env=_environment(), log=None if serial else log)
            if serial:
                process.wait()
            runs.append((label, process, log, start, time.monotonic()))
        for label, process, log, start, started_all in runs:
            code = process.wait()
            seconds = (started_all if serial else time.monotonic()) - start
            if not serial:
                log.seek(0)
                print(f"\n=== tests on {label} (run beside the other Blenders) ===\n{log.read()}", end="", flush=True)
            log.close()
            add(_finished(label, code, seconds, build), code)
    passed, failed, skipped = totals
    line = f"suite: {passed} passed, {failed} failed"
    print("\n" + line + (f", {skipped} skipped" if skipped else ""))
    if passed == 0:
        return 1
    return next((code for code in codes if code != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
