"""How eventpipe's long-running processes ask glibc to give memory back."""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def large_allocations_return_to_the_system(threshold: int) -> bool:
    """Make every allocation of ``threshold`` bytes or more a mapping of its own, unmapped when freed.

    glibc raises its mmap threshold after the first large free (up to 32 MiB), so later large blocks come from
    the heap or per-thread arenas, which keep the memory once it is freed: a peak of transient buffers then stays
    in the process's RSS for good. A fixed threshold also turns the dynamic one off. Returns False where libc is
    not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
