"""Freed heap memory kept for the next training step: MODEL.CPU_KEEP_HEAP, a CPU lever.

glibc gives the free memory at the top of its heap back to the OS once more than a trim threshold of
it is free (by default 2x the mmap threshold, which grows with the blocks freed up to 32 MiB), and maps
and unmaps every block above the mmap threshold. A training step frees at its end most of what it
allocated (the activations saved for backward), so the next step faults the same pages in again and the
kernel zero-fills each one: ~20k page faults a VoV3D-M step at 2x16x112^2 (AMD EPYC Zen 3, 2 threads),
where the step runs ~10% faster without them. Raising the trim threshold keeps that memory in the heap,
as CUDA's caching allocator keeps its blocks: the process holds its peak, which every step reaches
anyway. Blocks above 32 MiB (glibc's cap on the mmap threshold) are still mapped per allocation.

`auto` measures: the chosen route's train step is run and its page faults counted; the heap is kept
when a step faults in more than FAULTS_PER_STEP pages. Only glibc has these knobs (mallopt); with any
other C library the lever does nothing (prepare_for_training logs why).
"""

import ctypes
import functools
import resource

_M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: never trim on free (malloc_trim still releases)
MMAP_THRESHOLD = 32 << 20  # glibc's largest; fixed, so the threshold no longer moves with the frees
FAULTS_PER_STEP = 1024  # 4 MiB of zero-filled pages a step: below this, keeping the heap buys nothing

_kept = False


@functools.lru_cache(maxsize=None)
def glibc():
    """Returns the C library as a ctypes handle when it is glibc (it has mallopt), else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only
        libc.mallopt
    except (OSError, AttributeError, TypeError):  # TypeError: no CDLL(None) (Windows)
        return None
    return libc


def is_kept():
    """True once keep_freed_memory() has set the thresholds in this process."""
    return _kept


def keep_freed_memory():
    """Sets glibc's trim and mmap thresholds so that freed memory stays in the heap for the next
    step; returns True when set (False without glibc). Process-wide, and inherited by forked workers."""
    global _kept
    libc = glibc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    _kept = _kept or ok
    return ok


def page_faults():
    """Returns the process's minor page faults so far (pages the kernel mapped in, zero-filled)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def faults_per_step(step, steps=2):
    """Returns the page faults of one call of `step`: the mean over `steps` calls, after a first call
    that grows the heap to the step's peak."""
    step()
    before = page_faults()
    for _ in range(steps):
        step()
    return (page_faults() - before) / steps
