"""Keep freed host memory in the process for CPU training (glibc's malloc).

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap``
and returns it to the kernel on free; it also trims freed memory at the top of its heap. A CPU
training step allocates and frees its large activations and gradients every step, so every
step faults in (and the kernel zeroes) the same few hundred MiB again: on the main job, ~107k
page faults per step. ``retain_freed_memory`` makes malloc serve large blocks from its heap and
keep what is freed there, so the next step reuses the same pages: ~7k faults per step and
steps 10-13% faster (``benchmarks/RESULTS.md``, "host memory"). The price is that the process
keeps its peak memory until it exits instead of shrinking between steps.

The setting is process-wide and takes effect for later allocations; DataLoader workers
forked afterwards inherit it. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import platform

logger = logging.getLogger(__name__)

# mallopt parameters, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # bytes (mallopt takes an int): trim only when ~2 GiB lie free on top


def retain_freed_memory() -> bool:
    """Serve large allocations from malloc's heap and never trim it (glibc); True when set."""
    libc_name = platform.libc_ver()[0]
    if libc_name != "glibc":
        logger.debug("retain_freed_memory: not glibc (%s), nothing done", libc_name or "unknown")
        return False
    libc = ctypes.CDLL(None)
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    done = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not done:
        logger.warning("retain_freed_memory: glibc refused mallopt; page faults stay as they are")
    return done
