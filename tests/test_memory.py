"""Large frames' memory blocks kept for the next frame (`memory.frame_heap`): counted by the page faults they save."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from synclora import memory

pytestmark = pytest.mark.skipif(memory._libc() is None, reason="glibc's mallopt is Linux-only")


_MEASURE = """
import resource, sys
import numpy as np
from synclora import memory

def faults(n=8, nbytes=48 * 1024**2):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        a = np.empty(nbytes // 4, np.float32)
        a.fill(1.0)
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

plain = faults()
with memory.frame_heap(3840, 2160):
    faults(1)  # the first one grows the heap
    kept = faults()
print(plain, kept, faults())
"""


def test_a_large_frames_blocks_are_reused_inside_and_given_back_after():
    """Minor page faults of n frame-sized float arrays made, written and dropped one after another. Measured in a
    process of its own: the allocator's thresholds are the process's, and a test worker's depend on what ran before
    (one such worker mapped no page at all for them, kept or not)."""
    out = subprocess.run([sys.executable, "-c", _MEASURE], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    plain, kept, after = map(int, out.split())
    assert plain >= 8  # glibc maps each one afresh (past its 32 MB ceiling): each faults its pages in again
    assert kept * 4 < plain, (plain, kept)  # the same pages serve every frame
    assert after * 2 > plain  # afterwards glibc's own thresholds again


def test_which_frames_keep_their_blocks():
    assert not memory.keeps_freed_frames(1920, 1080)  # its float planes (25 MB) stay under glibc's own ceiling
    assert memory.keeps_freed_frames(2560, 1440) and memory.keeps_freed_frames(3840, 2160)
    with memory.frame_heap(1920, 1080):
        assert memory._heap_users == 0
    assert sys.platform.startswith("linux")
