"""Which edited frame governs which frames of the clip: keyframes, their looks, and how they blend.

A propagation takes one or more keyframes (an edited copy of frame `index`, optionally with a span of its own).
Two ways to use several:

- **the same look pinned at several frames** (no keyframe has a span of its own): one *look* covers the edited span
  (`--span`, the whole clip by default) and every frame follows its nearest keyframes;
- **different looks on different spans** (every keyframe has a span): each span is one look, driven by its keyframe
  alone, fading from the source (or from the neighbouring look) and back with the span's fades.

One keyframe is the first case with a single key. Everything here is decided from the probed clip alone (indices,
spans, fades, which propagation covers which frame with what weight), before any frame is decoded; the scheduler
(`propagate.schedule`) runs the propagations and the pipeline composes them by these weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from synclora import limits
from synclora.errors import InputError
from synclora.video.timing import FrameSpan, resolve_span


@dataclass(frozen=True)
class Leg:
    """One propagation of a look: from keyframe `key` (its frame) to `to`, both inclusive, forward when `to > key`.

    `ramp` = (lo, hi) where this leg meets the next key's leg: frames strictly between lo and hi are blended, the
    weight of the later keyframe's leg rising linearly from 0 at lo to 1 at hi (by distance, so each key is met
    exactly); None: the leg alone covers its frames.
    """

    key: int
    to: int

    @property
    def forward(self) -> bool:
        return self.to >= self.key

    @property
    def frames(self) -> np.ndarray:
        step = 1 if self.forward else -1
        return np.arange(self.key, self.to + step, step)

    def __len__(self) -> int:
        return abs(self.to - self.key) + 1


@dataclass(frozen=True)
class Look:
    """One look: its span (with fades) and the keyframes that pin it there (sorted frame indices, and their
    positions in the user's list)."""

    span: FrameSpan
    keys: tuple[int, ...]
    members: tuple[int, ...]

    def legs(self, meet: int | None) -> list[tuple[Leg, tuple[int, int] | None]]:
        """The propagations that cover this look's frames (`span.first`..`span.last`), each with the ramp where it
        meets the next one. Between two keys a and b the leg forward from a and the leg backward from b are blended
        by distance: over all of a..b (`meet` None), or over `meet` frames around the middle (each leg then stops
        there: half the work, for backends whose every frame is costly)."""
        first, last = self.span.first, self.span.last
        keys = self.keys
        out: list[tuple[Leg, tuple[int, int] | None]] = []
        for a, b in zip(keys, keys[1:]):
            lo, hi = ramp(a, b, meet)
            out.append((Leg(a, hi), (lo, hi)))
            out.append((Leg(b, lo), (lo, hi)))
        if keys[-1] < last:
            out.append((Leg(keys[-1], last), None))
        if keys[0] > first:
            out.append((Leg(keys[0], first), None))
        return out

    def governing(self, i: int) -> int:
        """The keyframe (frame index) frame `i` follows most: the nearest one (the earlier one at equal distance)."""
        return min(self.keys, key=lambda k: (abs(i - k), k))


def ramp(a: int, b: int, meet: int | None) -> tuple[int, int]:
    """(lo, hi) of the blend between keys a < b: the later key's weight is (i - lo) / (hi - lo) on lo..hi."""
    if meet is None or b - a <= meet + 1:
        return a, b
    lo = (a + b - meet - 1) // 2
    return lo, lo + meet + 1


def key_weight(i: int, lo: int, hi: int) -> float:
    """The later key's share of frame i on a ramp lo..hi (0 at lo and before, 1 at hi and after)."""
    return float(min(1.0, max(0.0, (i - lo) / (hi - lo))))


@dataclass(frozen=True)
class KeyframePlan:
    """Every look of a propagation on an `n_frames` clip, with what each frame is made of."""

    looks: tuple[Look, ...]
    indices: tuple[int, ...]  # every keyframe's frame, in the user's order
    n_frames: int
    notices: tuple[str, ...] = ()

    @property
    def frames(self) -> int:
        """Frames handed to the backend's propagations at most (every look's span and fades)."""
        return sum(look.span.window for look in self.looks)

    @property
    def one_look(self) -> bool:
        return len(self.looks) == 1

    def weights(self, i: int) -> list[tuple[int, float]]:
        """(look number, weight) of every look frame `i` shows; the source shows with 1 − the sum."""
        parts = [(n, look.span.weight(i)) for n, look in enumerate(self.looks)]
        parts = [(n, w) for n, w in parts if w > 0]
        total = sum(w for _, w in parts)
        if total > 1:  # never for a plan from `plan_keyframes` (its looks share no frame)
            parts = [(n, w / total) for n, w in parts]
        return parts

    def governing(self, i: int) -> int | None:
        """The keyframe (its frame index) frame `i` of the result is measured against; None outside every look."""
        parts = self.weights(i)
        if not parts:
            return None
        n, _ = max(parts, key=lambda p: p[1])
        return self.looks[n].governing(i)

    def key_of(self, index: int) -> int:
        """Position in the user's list of the keyframe at frame `index`."""
        return self.indices.index(index)

    def describe(self) -> list[str]:
        """One line per look, for the summary: its keyframes and the frames it covers."""
        lines = []
        for look in self.looks:
            keys = ", ".join(str(k) for k in look.keys)
            what = f"keyframe{'s' if len(look.keys) > 1 else ''} {keys}"
            lines.append(f"{what}: {look.span.describe()}")
        return lines


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{what} must be a whole number, got {value!r}")
    return int(value)


def plan_keyframes(
    indices: Sequence[int],
    spans: Sequence[Any],
    info: Any,
    *,
    span: Any = None,
    fade: int | None = None,
) -> KeyframePlan:
    """The keyframes (frame indices, each one's own span or None) on a probed clip (`n_frames`, `fps`, `path`), with
    the edited span `span` (for keyframes without spans of their own) and the fade length: every mistake is one
    sentence, before any frame is decoded."""
    n = int(info.n_frames)
    name = Path(info.path).name if getattr(info, "path", None) else "the clip"
    count = len(indices)
    if count == 0:
        raise InputError("no edited frame was given; edit a frame of the clip first")
    if count > limits.MAX_KEYFRAMES:
        raise InputError(f"{count} keyframes were given; a propagation takes at most {limits.MAX_KEYFRAMES}")
    if count > n:
        raise InputError(f"{count} keyframes were given but {name} has only {n} frames; give at most one per frame")
    idx = [_whole(k, "a keyframe's index (frame number)") for k in indices]
    for k in idx:
        if not 0 <= k < n:
            raise InputError(f"frame {k} is out of range: {name} has frames 0 to {n - 1}")
    seen: set[int] = set()
    for k in idx:
        if k in seen:
            raise InputError(f"two keyframes are on frame {k}; give each keyframe a frame of its own")
        seen.add(k)
    own = [s not in (None, "") for s in spans]
    if any(own) and not all(own):
        bare = ", ".join(str(k) for k, o in zip(idx, own) if not o)
        raise InputError(f"some keyframes have a span and some (frame {bare}) do not; give every keyframe a span "
                         "of its own (one look each), or none (the same look pinned at several frames)")
    if not any(own):
        resolved = resolve_span(span, info, fade=fade, edit_index=idx[0] if count == 1 else None)
        for k in sorted(idx):
            if not resolved.start <= k <= resolved.end:
                raise InputError(f"keyframe {k} is outside the edited span {resolved.text} (frames "
                                 f"{resolved.start}–{resolved.end}); choose a span that contains every keyframe")
        order = sorted(range(count), key=lambda j: idx[j])
        look = Look(resolved, tuple(idx[j] for j in order), tuple(order))
        return KeyframePlan((look,), tuple(idx), n, tuple(resolved.notices))
    if span not in (None, ""):
        raise InputError("the edited span applies to keyframes without spans of their own, but every keyframe has "
                         "one; leave the edited span empty")
    looks = []
    for j, (k, s) in enumerate(zip(idx, spans)):
        try:
            looks.append(Look(resolve_span(s, info, fade=fade, edit_index=k), (k,), (j,)))
        except InputError as exc:
            raise InputError(f"keyframe {k}: {exc}") from None
    looks.sort(key=lambda look: look.span.start)
    for a, b in zip(looks, looks[1:]):
        if b.span.start <= a.span.end:
            raise InputError(f"the spans {a.span.text} (keyframe {a.keys[0]}) and {b.span.text} (keyframe "
                             f"{b.keys[0]}) overlap on frames {b.span.start}–{min(a.span.end, b.span.end)}; each "
                             "frame may follow one keyframe")
    looks, notices = _fit_fades(looks)
    return KeyframePlan(tuple(looks), tuple(idx), n, tuple(notices))


def _fit_fades(looks: list[Look]) -> tuple[list[Look], list[str]]:
    """Fades between two looks stay in the frames between their spans (a span is its own look on every frame) and
    never share a frame: where both do not fit, the gap is split between the fade-out of one and the fade-in of the
    next (said in a notice), so each frame shows at most one look over the source."""
    notices = [n for look in looks for n in look.span.notices]
    out = list(looks)
    for j in range(len(out) - 1):
        a, b = out[j], out[j + 1]
        gap = b.span.start - a.span.end - 1
        fa, fb = a.span.fade_out, b.span.fade_in
        if fa + fb > gap:
            fa = min(fa, max(gap - fb, (gap + 1) // 2))
            fb = min(fb, gap - fa)
            notices.append(f"The fades between the spans {a.span.text} and {b.span.text} are {fa} and {fb} frames "
                           f"instead of {a.span.fade}: only {gap} frame{'s' if gap != 1 else ''} lie between them.")
        out[j] = replace(a, span=replace(a.span, fade_out=fa))
        out[j + 1] = replace(b, span=replace(b.span, fade_in=fb))
    return out, notices
