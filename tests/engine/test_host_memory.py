from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# malloc, write and free 256 MiB three times (glibc's own malloc, as torch's CPU allocator
# uses); print the page faults of the last round.
ROUNDS = """
import ctypes, resource, sys
from objdet.engine.host_memory import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(256 << 20)
    libc.memset(block, 1, 256 << 20)
    libc.free(block)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = (256 << 20) // 4096


def last_round_page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting")
def test_retained_memory_is_reused_without_page_faults() -> None:
    retained = last_round_page_faults("retain")
    assert retained < PAGES // 20  # the heap's pages again
    # without it, a fresh mapping every round (one fault per page, or per huge page with THP)
    assert last_round_page_faults("default") > 10 * max(retained, 10)
