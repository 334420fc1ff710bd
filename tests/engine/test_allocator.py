"""The engine's own processes keep the memory they free (estimators.cli.allocator)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from depth360.estimators.cli.allocator import keep_freed_memory

    kept = keep_freed_memory() if sys.argv[1] == "keep" else False
    np.ones(12_000_000, np.float32)  # 48 MB: over glibc's default thresholds, under ours
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        np.ones(12_000_000, np.float32)  # a frame's array, made and freed
    print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator: Linux only")
def test_a_freed_frame_array_is_reused_without_faulting_its_pages_in_again():
    faults = {}
    for mode in ("default", "keep"):
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        kept, count = out.stdout.split()
        faults[mode] = int(count)
        assert kept == str(mode == "keep")
    print(f"\npage faults over 20 frames' arrays: {faults}")
    assert faults["default"] > 20 * 10 and faults["keep"] < faults["default"] / 10, faults
