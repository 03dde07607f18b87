"""Which source frame an edited image was made from, found while the frames go by.

Used two ways: the report finds the frame when nobody said which one was edited, and a propagation checks the frame
it was given (an edit of frame 12 propagated as frame 150's carries a misplaced edit through the whole clip, and
nothing else would say so). Either way the frames are looked at once, in order, as they are decoded anyway.

Coarse: the smallest mean difference of small grey thumbnails, each pixel's capped (the edited part then adds about
the same to every frame, and the parts that moved decide; a median would call every frame of a still shot equal).
Fine, among the best few: the fewest pixels that differ at all at a larger size — the edit differs wherever it is, a
neighbouring frame also at every edge that moved.
"""

from __future__ import annotations

import heapq

import cv2
import numpy as np

# A given frame is called a likely mistake only when another frame matches the edit clearly better: by this share
# of the fine image's pixels, and by this factor (repeated or near-identical frames of a still shot never qualify).
MISMATCH_MARGIN = 0.03
MISMATCH_FACTOR = 1.5
COARSE_CLIP = 16  # grey levels: a pixel differing more (the edit, a moved edge) counts as much as any other


def grey(img: np.ndarray, side: int) -> np.ndarray:
    """`img` (RGB) in grey, its longer side shrunk to `side` (never enlarged)."""
    h, w = img.shape[:2]
    s = min(1.0, side / max(h, w))
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return cv2.resize(g, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def shrink_factor(size: tuple[int, int], fine: int) -> int:
    """The whole factor frames of `size` may be shrunk by before `grey(frame, fine)`: no smaller than the fine image
    (a whole factor averages whole blocks of pixels, as shrinking straight to it does), so it stays as sharp. A decoded
    frame shrinks from its planes: 1280×720 by 4, 1920×1080 by 6, straight to 320×180."""
    return max(1, max(size) // fine)


class EditMatch:
    """Feed every source frame in order (`add`), then ask which one the edited image was made from (`best`), or
    whether another frame fits it clearly better than the frame a caller was told (`mismatch`)."""

    def __init__(self, edited: np.ndarray, *, thumb: int = 96, fine: int = 320, candidates: int = 5,
                 keep: int | None = None):
        """`keep`: a frame whose fine image is kept whatever its coarse rank (the frame a caller was told)."""
        self.fine, self.candidates, self.keep = fine, candidates, keep
        self.ref_small = grey(edited, thumb).astype(np.int16)
        self.ref_fine = grey(edited, fine).astype(np.int16)
        self._best: list[tuple[float, int, np.ndarray]] = []  # a heap of the `candidates` best coarse matches
        self._kept: np.ndarray | None = None

    def scale(self, size: tuple[int, int]) -> int:
        """The whole factor frames of `size` may be shrunk by before `add` (their fine image stays as sharp)."""
        return shrink_factor(size, self.fine)

    def add(self, i: int, frame: np.ndarray) -> None:
        """Source frame i (RGB, any size of the video's aspect)."""
        self.add_grey(i, grey(frame, self.fine))

    def add_grey(self, i: int, g: np.ndarray) -> None:
        """Source frame i as `grey(frame, fine)` (shared by several matches of one video)."""
        if g.shape != self.ref_fine.shape:
            g = cv2.resize(g, self.ref_fine.shape[::-1], interpolation=cv2.INTER_AREA)
        small = cv2.resize(g, self.ref_small.shape[::-1], interpolation=cv2.INTER_AREA).astype(np.int16)
        d = float(np.minimum(np.abs(small - self.ref_small), COARSE_CLIP).mean())
        item = (-d, -i, g)
        if len(self._best) < self.candidates:
            heapq.heappush(self._best, item)
        elif item[:2] > self._best[0][:2]:
            heapq.heapreplace(self._best, item)
        if i == self.keep:
            self._kept = g

    def _fine(self, g: np.ndarray) -> float:
        return float((np.abs(g.astype(np.int16) - self.ref_fine) > 4).mean())

    def _winner(self) -> tuple[float, int]:
        """(fine score, frame) of the best candidate: the fewest differing pixels, the earlier frame on a tie."""
        return min((self._fine(g), -neg_i) for _, neg_i, g in self._best)

    def best(self) -> int | None:
        """The frame the edited image was most likely made from (None: no frame was added)."""
        return self._winner()[1] if self._best else None

    def mismatch(self) -> tuple[int, float, float] | None:
        """(the better frame, its score, the kept frame's score) when another frame matches the edited image clearly
        better than the kept frame (`keep`); None when the kept frame is (about) the best."""
        if self._kept is None or not self._best:
            return None
        given = self._fine(self._kept)
        score, i = self._winner()
        if i == self.keep or given - score < MISMATCH_MARGIN or given < MISMATCH_FACTOR * score:
            return None
        return i, score, given


class EditCheck:
    """A frame tap (`video.taps`; the pipeline puts it before the caller's) that checks, while a propagation decodes
    its source, that each edited image was made from the frame it was given for; `notices` names the frame it was more
    likely made from."""

    def __init__(self, images: dict[int, np.ndarray], fine: int = 320):
        self.fine = fine
        self.matches = {k: EditMatch(img, fine=fine, keep=k) for k, img in images.items()}

    def on_source(self, index: int, frame) -> None:
        if not isinstance(frame, np.ndarray):  # a decoded frame: shrunk from its planes first
            frame = frame.reduced(shrink_factor((frame.width, frame.height), self.fine))
        g = grey(frame, self.fine)
        for m in self.matches.values():
            m.add_grey(index, g)

    def on_result(self, index: int, frame: np.ndarray) -> None:
        return None

    def finish(self, ok: bool) -> None:
        return None

    def notices(self) -> list[str]:
        out = []
        for k, m in sorted(self.matches.items()):
            found = m.mismatch()
            if found is None:
                continue
            j, score, given = found
            out.append(f"The edited image given for frame {k} looks like it was made from frame {j}: it differs from "
                       f"frame {k} in {given:.0%} of the picture and from frame {j} in {score:.0%}. The edit was "
                       f"carried from frame {k} as asked; if it belongs to frame {j}, give it frame {j}'s index.")
        return out
