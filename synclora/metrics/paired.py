"""One pass over both videos for what needs a source frame and its result frame at once.

The report reads the source and the result on two threads (each decodes and runs its own landmarker). The edit-kept
score samples both frames where the *source's* landmarks put the edit, and the landmark view draws both frames side
by side; neither may cost a second decoding. So the source's thread hands each frame's landmarks, its patch and its
small image to the result's thread here, which scores and draws. Reading two files, the source may run at most
`AHEAD` frames ahead (memory stays small); watching a propagation (`ahead=None`), it never waits — the propagation may
decode the source well ahead of its result — and keeps only the patch per frame (the landmarks and the small image
only for the landmark view). If either side stops (an error, a short file), the other is released, never left
waiting.
"""

from __future__ import annotations

import threading

import numpy as np

from synclora.metrics.kept import EditKept, EditProbe, PartKept, sample_at
from synclora.metrics.view import LandmarkVideo

AHEAD = 16


class PairedPass:
    def __init__(self, n: int, source_size: tuple[int, int], result_size: tuple[int, int], *,
                 probe: EditProbe | None = None, view: LandmarkVideo | None = None, start: int = 0,
                 low: float = 0.5, ahead: int | None = AHEAD):
        self.n, self.start, self.low, self.ahead = n, start, low, ahead
        self.probe, self.view = probe, view
        self.scale = (result_size[0] / source_size[0], result_size[1] / source_size[1])
        self._items: dict[int, dict] = {}
        self._cond = threading.Condition()
        self._done = {"source": False, "result": False}
        self._failed = {"source": False, "result": False}
        self.kept = np.full(n, np.nan)
        names = list(probe.templates) if probe is not None else []
        self.part_kept = {name: np.full(n, np.nan) for name in names}
        self.slid = {name: np.zeros(n, bool) for name in names}

    def finish(self, side: str, failed: bool = False) -> None:
        """`side` ("source"/"result") has no more frames (or `failed`): release the other side."""
        with self._cond:
            self._done[side] = True
            self._failed[side] = failed
            self._cond.notify_all()

    def source_frame(self, i: int, frame, pts, k: int) -> None:
        item: dict = {"pts": pts if self.view is not None else None}
        if self.probe is not None and pts is not None:
            mx, my = self.probe.positions(pts)
            item["patch"] = sample_at(frame, mx, my, k)  # from the image the landmarker saw (anti-aliased)
            item["pos"] = (mx, my)
        if self.view is not None:
            item["img"] = frame.reduced(self.view.src_factor)
        with self._cond:
            if self.ahead is not None:
                self._cond.wait_for(lambda: len(self._items) < self.ahead or self._done["result"])
            self._items[i] = item
            self._cond.notify_all()

    def result_frame(self, i: int, frame, pts, k: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: i in self._items or self._done["source"])
            item = self._items.pop(i, None)
            self._cond.notify_all()
        if item is None:
            if self._failed["source"]:
                raise RuntimeError("the source could not be read")  # stop; the source's own error is reported
            return  # the source ended early; the frame counts will say so
        src_pts = item["pts"]
        if "patch" in item:
            mx, my = item["pos"]
            if self.scale != (1.0, 1.0):
                mx, my = mx * np.float32(self.scale[0]), my * np.float32(self.scale[1])
            whole, parts = self.probe.score(item["patch"], sample_at(frame, mx, my, k), self.low)
            self.kept[i] = whole
            for name, (value, slid) in parts.items():
                self.part_kept[name][i] = value
                self.slid[name][i] = slid
        if self.view is not None:
            self.view.add(i, item["img"], src_pts, frame.reduced(self.view.res_factor), pts)

    def edit_kept(self, notes: list[str] | None = None) -> EditKept | None:
        if self.probe is None:
            return None
        parts = {name: PartKept(name, self.probe.shares[name], self.part_kept[name], self.slid[name])
                 for name in self.part_kept}
        return EditKept(self.probe.edit_index, self.start, self.kept, parts, list(notes or []))
