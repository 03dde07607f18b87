"""Freeing memory after a failed or finished model run, without importing torch where it is not loaded yet.

One place for it, used by the pipeline (which must stay light on the CPU path: torch is only looked up, never
imported, here) and by the LTX core and recipe (which hold the big tensors).
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
from collections.abc import Iterator


def free_memory() -> None:
    """Drop Python garbage, then CUDA's cached blocks (only if torch is already loaded)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    """True for host `MemoryError` and torch's (CUDA) out-of-memory error."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")  # looked up now: a backend may have imported torch since
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    return oom is not None and isinstance(exc, oom)


# glibc's allocator hands blocks above its mmap threshold (grown with use, but never past 32 MB) straight to the kernel
# and back, and gives freed heap memory back above its trim threshold. From 2560×1440 up a frame's float arrays pass
# 32 MB, so every frame's temporaries were fresh pages: a 4K UHD propagation spent 66 of its 155 s in the kernel (3 s
# of 4K, `--side-by-side --report`; 88-95 s with freed blocks kept for the next frame, for ~0.8 GiB more at its peak:
# `limits.HEAP_PIXEL_BYTES`). Below that size glibc's own thresholds already keep them, and keeping more only raised
# the peak (`benchmarks/README.md`). Which clips get it: `keeps_freed_frames`.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_DYNAMIC_MAX = 32 * 1024**2  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: where its own thresholds settle
_MMAP_BYTES, _TRIM_BYTES = 256 * 1024**2, 2 * 1024**3
_heap_lock = threading.Lock()
_heap_users = 0


def _libc():
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def keeps_freed_frames(width: int, height: int) -> bool:
    """Are a width×height frame's float32 RGB planes beyond what glibc's allocator keeps for reuse by itself?"""
    return width * height * 3 * 4 > _DYNAMIC_MAX


@contextlib.contextmanager
def frame_heap(width: int, height: int) -> Iterator[None]:
    """While frames of width×height stream, freed frame-sized blocks stay for the next frame instead of going back to
    the kernel (large frames only, `keeps_freed_frames`; glibc only; counted, so overlapping runs share it).
    Afterwards the thresholds are where glibc's own would have settled, and what is free goes back (`malloc_trim`)."""
    global _heap_users
    libc = _libc() if keeps_freed_frames(width, height) else None
    if libc is None:
        yield
        return
    with _heap_lock:
        if _heap_users == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_BYTES)
            libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES)
        _heap_users += 1
    try:
        yield
    finally:
        with _heap_lock:
            _heap_users -= 1
            if _heap_users == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _DYNAMIC_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, 2 * _DYNAMIC_MAX)
                libc.malloc_trim(0)
