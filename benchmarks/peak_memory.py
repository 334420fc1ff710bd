"""Resident-memory readings shared by the benchmark scripts (Linux /proc, getrusage fallback)."""

from __future__ import annotations

import resource
import sys


def reset_peak_rss() -> bool:
    """Reset the kernel's resident high-water mark (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """This process's resident high-water mark in MiB (VmHWM, which `reset_peak_rss` resets)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kilobytes / 1024 if sys.platform != "darwin" else kilobytes / 2**20
