"""Process-level memory settings for CPU training.

``reuse_freed_memory()`` tells glibc's malloc to keep freed memory for reuse instead of handing it
back to the kernel after every tensor: allocations up to 32 MiB come from the heap (not a fresh
``mmap`` each) and the heap is not trimmed. A training step frees and re-allocates the same
activation sizes every step; without this each re-allocation is a fresh run of page faults (on the
SD1.5 step on CPU, ~30 % of the CPU time was kernel time). Measured in docs/benchmarks.md.
Malloc settings given in the environment (``MALLOC_MMAP_THRESHOLD_`` and the like, e.g. by
``bench/online_memory.py`` to make RSS follow live memory) win: then nothing is changed.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
#: glibc's largest mmap threshold on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``): 4 MiB x sizeof(long).
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_applied = False


def reuse_freed_memory(trim_threshold: int = 1 << 34, top_pad: int = 256 << 20) -> bool:
    """Apply the malloc settings above (once per process); False where the C library is not glibc."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX), (M_TRIM_THRESHOLD, min(trim_threshold, 2**31 - 1)), (M_TOP_PAD, top_pad)))
    _applied = ok
    return ok
