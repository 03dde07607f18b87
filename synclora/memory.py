"""Freeing memory after a failed or finished model run, without importing torch where it is not loaded yet.

One place for it, used by the pipeline (which must stay light on the CPU path: torch is only looked up, never
imported, here) and by the LTX core and recipe (which hold the big tensors).
"""

from __future__ import annotations

import gc
import sys


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
