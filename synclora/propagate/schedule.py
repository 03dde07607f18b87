"""Any frame, any length, any backend: split the clip around the edited frame and drive the backend in chunks.

From the edit index k the edit runs forward to the end and backward to the start (time reversed); both halves share
frame k, which is exactly the edited frame. A backend with a frame limit is driven in chunks: each next chunk starts
from an output frame of the previous one (its `edited` frame), the chunks overlap, and the overlap is cross-faded so
no seam shows. All frame mappings (fps, 8k+1 padding, chunk ranges) come from `video.timing`; this module only
drives and stitches.
"""

from __future__ import annotations

import numpy as np

from synclora.config import PropagationSettings
from synclora.errors import InputError
from synclora.propagate.base import ProgressFn, Propagator, Segment, no_progress
from synclora.video import timing


def propagate_clip(
    frames: np.ndarray,
    edit_index: int,
    edited: np.ndarray,
    backend: Propagator,
    settings: PropagationSettings,
    fps: float,
    progress: ProgressFn = no_progress,
) -> tuple[np.ndarray, list[str]]:
    """Return (frames.shape uint8 result whose frame `edit_index` is `edited`, notices)."""
    n, k = len(frames), edit_index
    if not 0 <= k < n:
        raise ValueError(f"edit index {k} outside 0..{n - 1}")
    notices: list[str] = []
    facts: list[dict] = []
    out = np.empty_like(frames)
    out[k] = edited
    # Work is proportional to frames per direction; the backward half excludes the shared frame k.
    n_fwd, n_bwd = n - k, k + 1
    total = max(1, (n_fwd if n_fwd > 1 else 0) + (n_bwd if n_bwd > 1 else 0))
    done = 0
    for direction, seq_index in (("forward", np.arange(k, n)), ("backward", np.arange(k, -1, -1))):
        if len(seq_index) < 2:
            continue
        share = len(seq_index) / total
        lo = done / total

        def sub(f: float, label: str, lo=lo, share=share, direction=direction) -> None:
            progress(lo + share * f, f"{direction}: {label}")

        result, more = _propagate_direction(frames[seq_index], edited, backend, settings, fps, sub, facts)
        out[seq_index] = result
        done += len(seq_index)
        for m in more:
            if m not in notices:
                notices.append(m)
    out[k] = edited
    for m in backend.notices(facts):
        if m not in notices:
            notices.append(m)
    return out, notices


def _propagate_direction(
    seq: np.ndarray,
    edited: np.ndarray,
    backend: Propagator,
    settings: PropagationSettings,
    fps: float,
    progress: ProgressFn,
    facts: list[dict],
) -> tuple[np.ndarray, list[str]]:
    """Propagate along `seq` (`edited` is the edit of seq[0]); one output per input frame. Each backend call's
    `Segment.facts` is appended to `facts`."""
    spec = backend.spec
    tplan = timing.plan_time(len(seq), fps, spec.native_fps, 1, settings.time_mode)
    bseq = seq[tplan.backend_to_source[: tplan.n_backend]]
    try:
        chunks = timing.plan_chunks(len(bseq), spec.max_frames, spec.frame_step, max(1, settings.chunk_overlap))
    except ValueError:  # the overlap fills a whole chunk of this backend
        raise InputError(
            f"a chunk overlap of {settings.chunk_overlap} frames leaves no new frames in {backend.name}'s chunks of "
            f"at most {spec.max_frames} frames; choose a smaller chunk overlap"
        ) from None
    outputs: list[np.ndarray] = []
    for ci, chunk in enumerate(chunks):
        # Each chunk after the first starts from the previous chunk's result at its first shared frame.
        chunk_edited = edited if ci == 0 else outputs[-1][chunk.start - chunks[ci - 1].start]

        def sub(f: float, label: str, ci=ci) -> None:
            progress((ci + f) / len(chunks), f"chunk {ci + 1}/{len(chunks)} {label}" if len(chunks) > 1 else label)

        frames = bseq[chunk.indices()]
        segment = Segment(frames, chunk_edited, tplan.backend_fps, settings)
        res = backend.propagate(segment, sub)
        facts.append(segment.facts)
        if res.shape != frames.shape or res.dtype != np.uint8:
            raise RuntimeError(f"{backend.name} returned {res.shape} {res.dtype}, expected {frames.shape} uint8")
        res = res[: chunk.length].copy()
        res[0] = chunk_edited
        outputs.append(res)
    out = timing.stitch_chunks(chunks, outputs)
    notices = [tplan.notice] if tplan.notice else []
    if len(chunks) > 1:
        notices.append(
            f"{len(seq)} frames were propagated in {len(chunks)} overlapping chunks of at most {spec.max_frames} "
            f"frames, cross-faded over {chunks[1].overlap} frames at each seam."
        )
    return out[tplan.source_to_backend], notices
