"""glibc's malloc told to keep the memory torch frees, so large CPU tensors are not page-faulted
afresh at every step.

glibc gives blocks above its mmap threshold (dynamic, at most 32 MiB on 64-bit Linux) straight to
the kernel and unmaps them on free, and returns free memory at the top of the heap beyond its trim
threshold. A training step allocates and frees the same large activations every time, so the
kernel maps and zeroes their pages again at every step. `benchmarks/page_faults.py` on this
project's 2-core CPU (EfficientNet-Lite0 generator, batch 16 at 224 px, bf16, one thread, idle):
by default 64,000-91,000 page faults and 1.55-1.68 s of CPU per step; with both thresholds raised,
0-7,000 faults and 1.43-1.56 s, resident memory 2,040 MB against 1,800 (13% more). Under load the
gap was wider (1.84-2.16 against 1.61-1.73 s, with other jobs on the cores). PyTorch's CPU
performance guide recommends jemalloc or tcmalloc through LD_PRELOAD for the same reason; this
needs no preloading. `recolor eval` batches are alike too: 300 photos, gray and one model, idle,
31.2-39.5 s (22 s of kernel time) by default, 18.1-23.0 s with this, for a peak of 2,122 MB
against 1,812 (docs/evaluation.md has the command). Used by `recolor train` and `recolor eval`;
apply's peak memory at 24 MP is a target of its own: tried there, three alternated runs of 96
photos at 1 MP and of 6 at 24 MP showed no gain beyond the run-to-run spread, for 70 MB more at
1 MP. Elsewhere than on glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import sys

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to this size are reused rather than unmapped: larger than any activation of a training
# batch or of a 24 MP photo's planes, small enough that a huge allocation still goes to mmap.
KEEP_BLOCKS_UP_TO = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); True if it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc has it: musl's mallopt is a stub
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mmap_set = mallopt(_M_MMAP_THRESHOLD, KEEP_BLOCKS_UP_TO)
    return bool(mmap_set) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * KEEP_BLOCKS_UP_TO - 1))
