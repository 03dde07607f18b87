"""Any frame, any length, any backend: split the clip around its keyframes and drive the backend in chunks.

From a keyframe k the edit runs forward and backward (time reversed); both halves share frame k, which is exactly the
edited frame. With several keyframes of one look, the edit runs backward from the first to the start, forward from
the last to the end, and both ways between neighbours, blended by distance (`video.keyframes` plans the legs). A
backend with a frame limit is driven in chunks: each next chunk starts from an output frame of the previous one (its
`edited` frame), the chunks overlap, and the overlap is cross-faded so no seam shows. All frame mappings (fps, 8k+1
padding, chunk ranges) come from `video.timing`; this module only drives and stitches.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from synclora.config import PropagationSettings
from synclora.errors import InputError
from synclora.propagate.base import ProgressFn, Propagator, Segment, no_progress
from synclora.video import keyframes as kf
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
    """Return (frames.shape uint8 result whose frame `edit_index` is `edited`, notices): one keyframe."""
    return propagate_keyframes(frames, [(edit_index, edited)], backend, settings, fps, progress)


def meet_frames(backend: Propagator, settings: PropagationSettings) -> int | None:
    """How the propagations from two keyframes of one look are blended: over the whole way between them (None) for a
    backend that carries the edit along the source's own motion (both carry the same change; the blend averages
    their drift), or cross-faded over `chunk_overlap` frames where they meet in the middle for a backend that works
    in chunks (a generative model: every frame costs, and two generated takes blended over hundreds of frames would
    show both)."""
    if backend.spec.max_frames is None:
        return None
    return max(1, settings.chunk_overlap)


def propagate_keyframes(
    frames: np.ndarray,
    keys: list[tuple[int, np.ndarray]],
    backend: Propagator,
    settings: PropagationSettings,
    fps: float,
    progress: ProgressFn = no_progress,
) -> tuple[np.ndarray, list[str]]:
    """Carry one look through `frames` from its keyframes `keys` ((index, edited frame) pairs): each frame follows
    its nearest keyframes; between two, the propagations from each are blended by distance (`meet_frames`), so
    every keyframe is met exactly and nothing jumps. Returns (frames.shape uint8 result, notices)."""
    n = len(frames)
    keys = sorted(((int(k), img) for k, img in keys), key=lambda p: p[0])
    for k, _ in keys:
        if not 0 <= k < n:
            raise ValueError(f"keyframe {k} outside 0..{n - 1}")
    image = dict(keys)
    look = kf.Look(timing.FrameSpan(0, n - 1, n, Fraction(fps)), tuple(image), tuple(range(len(image))))
    legs = look.legs(meet_frames(backend, settings))
    notices: list[str] = []
    facts: list[dict] = []
    out = np.empty_like(frames)
    # Work is proportional to frames per leg; each leg after its keyframe (the keyframe itself is given).
    total = max(1, sum(len(leg) for leg, _ in legs))
    done = 0
    pending: dict[tuple[int, int], np.ndarray] = {}  # a ramp's earlier leg, until the later one is there
    for leg, ramp in legs:
        share = len(leg) / total
        lo = done / total
        label = "forward" if leg.forward else "backward"
        if len(image) > 1:
            label += f" from keyframe {leg.key}"

        def sub(f: float, text: str, lo=lo, share=share, label=label) -> None:
            progress(lo + share * f, f"{label}: {text}")

        seq = leg.frames
        result, more = _propagate_direction(frames[seq], image[leg.key], backend, settings, fps, sub, facts)
        done += len(leg)
        for m in more:
            if m not in notices:
                notices.append(m)
        if ramp is None:
            out[seq] = result
        elif leg.forward:
            pending[ramp] = result  # frames leg.key..hi, blended once the leg from the next keyframe is done
        else:
            _blend(out, pending.pop(ramp), result, leg.key, ramp)
    for k, img in keys:
        out[k] = img
    for m in backend.notices(facts):
        if m not in notices:
            notices.append(m)
    return out, notices


def _blend(out: np.ndarray, fwd: np.ndarray, bwd: np.ndarray, b: int, ramp: tuple[int, int]) -> None:
    """Frames a..b from the leg forward from a (`fwd`: a..hi) and the leg backward from b (`bwd`: b..lo, time
    reversed), weighted by distance along the ramp lo..hi; one frame at a time (no float copy of the clip)."""
    lo, hi = ramp
    a = hi - (len(fwd) - 1)
    for i in range(a, b + 1):
        w = kf.key_weight(i, lo, hi)
        if w <= 0:
            out[i] = fwd[i - a]
        elif w >= 1:
            out[i] = bwd[b - i]
        else:
            mix = fwd[i - a].astype(np.float32) * (1 - w) + bwd[b - i].astype(np.float32) * w
            out[i] = np.clip(np.rint(mix), 0, 255).astype(np.uint8)


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
