"""The sync report of a result made from several keyframes: each frame judged against the keyframe that governs it.

A result propagated from several edited frames carries, at each frame, the edit of its nearest keyframe (or of its
span's keyframe). Edit kept is only meaningful against that keyframe's change, so the compared range is cut where
the governing keyframe changes and each part gets its own report (`compare_videos` with that keyframe's image and
index, over its frames); the verdict says which keyframe's part faded. Frames no keyframe governs (outside every
span) are the source's own and are not judged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from synclora.metrics.compare import compare_videos
from synclora.metrics.report import SyncReport


@dataclass
class KeyframePart:
    """The frames `start`..`stop - 1` governed by the keyframe at frame `index`, and their report."""

    index: int
    start: int
    stop: int
    report: SyncReport | None  # None: too short to judge (one frame)

    @property
    def frames(self) -> str:
        return f"frame {self.start}" if self.stop - self.start == 1 else f"frames {self.start}–{self.stop - 1}"


def governed_parts(governing: Callable[[int], int | None], start: int, stop: int) -> list[tuple[int, int, int]]:
    """(keyframe index, start, stop) for each stretch of frames start..stop-1 that one keyframe governs."""
    out: list[tuple[int, int, int]] = []
    for i in range(start, stop):
        g = governing(i)
        if g is None:
            continue
        if out and out[-1][0] == g and out[-1][2] == i:
            out[-1] = (g, out[-1][1], i + 1)
        else:
            out.append((g, i, i + 1))
    return out


def compare_keyframes(source, result, images: dict[int, np.ndarray | str], governing: Callable[[int], int | None],
                      frame_range: tuple[int, int], progress=None, **kw) -> list[KeyframePart]:
    """One report per stretch of frames a keyframe governs (`images`: keyframe index → its edited image)."""
    parts = governed_parts(governing, *frame_range)
    total = sum(b - a for _, a, b in parts) or 1
    done = 0
    out = []
    for k, a, b in parts:
        rep = None
        if b - a >= 2:
            def sub(f: float, label: str, lo=done, n=b - a, k=k) -> None:
                if progress is not None:
                    progress((lo + f * n) / total, f"keyframe {k}: {label}")

            rep = compare_videos(source, result, edited_frame=images[k], edit_index=k, frame_range=(a, b),
                                 progress=sub, **kw)
        out.append(KeyframePart(k, a, b, rep))
        done += b - a
    return out


def verdict(parts: Sequence[KeyframePart]) -> tuple[str, list[str]]:
    """(one verdict for the whole result, one line per keyframe's part): the problems of each part are named with
    its keyframe, so a reader sees whose edit faded where."""
    judged = [p for p in parts if p.report is not None]
    if not judged:
        return "no stretch of frames long enough to judge", []
    lines, problems = [], []
    for p in judged:
        r = p.report
        kept = r.kept.worst(r.thresholds.edit_min_run) if r.kept is not None else None
        text = f"keyframe {p.index} ({p.frames}): lag {r.lag:+d}"
        if kept is not None:
            text += f", edit kept {min(max(kept, 0.0), 1.0):.0%} at its lowest"
        lines.append(text + f" — {r.verdict}")
        problems += [f"keyframe {p.index}'s part: {q}" for q in r.problems]
    lags = {p.report.lag for p in judged}
    head = f"lag {judged[0].report.lag:+d} on every keyframe's part" if len(lags) == 1 else "lags differ by part"
    if problems:
        return f"{head}; " + "; ".join(problems), lines
    return f"{head}; every keyframe's edit kept", lines
