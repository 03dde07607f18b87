"""Large frames' memory blocks kept for the next frame (`memory.frame_heap`): counted by the page faults they save."""

from __future__ import annotations

import resource
import sys

import numpy as np
import pytest

from synclora import memory

pytestmark = pytest.mark.skipif(memory._libc() is None, reason="glibc's mallopt is Linux-only")


def _faults_of_frames(n: int = 8, nbytes: int = 48 * 1024**2) -> int:
    """Minor page faults of n frame-sized float arrays made, written and dropped one after another."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        a = np.empty(nbytes // 4, np.float32)
        a.fill(1.0)
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_a_large_frames_blocks_are_reused_inside_and_given_back_after():
    plain = _faults_of_frames()
    assert plain >= 8  # glibc maps each one afresh (past its 32 MB ceiling): each faults its pages in again
    with memory.frame_heap(3840, 2160):
        _faults_of_frames(1)  # the first one grows the heap
        kept = _faults_of_frames()
    assert kept * 4 < plain, (plain, kept)  # the same pages serve every frame
    assert _faults_of_frames() * 2 > plain  # afterwards glibc's own thresholds again


def test_which_frames_keep_their_blocks():
    assert not memory.keeps_freed_frames(1920, 1080)  # its float planes (25 MB) stay under glibc's own ceiling
    assert memory.keeps_freed_frames(2560, 1440) and memory.keeps_freed_frames(3840, 2160)
    with memory.frame_heap(1920, 1080):
        assert memory._heap_users == 0
    assert sys.platform.startswith("linux")
