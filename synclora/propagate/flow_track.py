"""The flow backend, one frame at a time: the map of each frame back to the edited frame, then the warp of the change.

A propagation streams its clip (decode → backend → encode) and never holds it, so the flow backend is split in two:

* `FlowTrack.maps` walks the frames of one direction in order (frame 0 is the edited one) and yields, for each, a
  `FrameMap`: the low-resolution map back to frame 0 and its confidence, cut to where the change lands, plus the face
  mesh's points. It is small (kilobytes for make-up on a face), so the backward half of a clip can be kept as maps
  while the result is written front to back.
* `FlowTrack.compose` is the final warp: the frame plus the carried change, at the frame's own resolution, only
  inside the box where the change lands. Everything outside it is the frame itself, exactly.

`FlowPropagator.propagate` (a whole segment, for callers that hold one) is the same two steps in one loop. The
design's reasons (chained maps refined against frame 0, occlusion checks, face guidance) are in `propagate.flow`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from math import gcd
from typing import TYPE_CHECKING

import cv2
import numpy as np

from synclora.propagate import face_content
from synclora.propagate.base import Tracker
from synclora.propagate.face_guide import FaceGuide, Seen
from synclora.video.lazy import PatchedFrame

if TYPE_CHECKING:
    from synclora.propagate.flow import FlowPropagator

_LOOKAHEAD = 4  # frames whose pairwise flows and face tracking run ahead on the worker threads

_serial_lock = threading.Lock()
_serial_users = 0
_serial_before = 0


@contextmanager
def _opencv_serial() -> Iterator[None]:
    """OpenCV's own thread pool off while a propagation runs: the backend's threads (flows, face tracking, the warp)
    already keep the cores busy, and OpenCV splitting each small call over the same cores again only adds hand-offs
    and spinning workers (measured on 2 cores: ~10 % more CPU a frame, ~10 % fewer frames a second). Counted, so
    overlapping propagations restore the caller's setting only when the last one ends."""
    global _serial_users, _serial_before
    with _serial_lock:
        if _serial_users == 0:
            _serial_before = cv2.getNumThreads()
            cv2.setNumThreads(0)
        _serial_users += 1
    try:
        yield
    finally:
        with _serial_lock:
            _serial_users -= 1
            if _serial_users == 0:
                cv2.setNumThreads(_serial_before)


class _Upsampler:
    """`cv2.resize(m, full, INTER_LINEAR)[y0:y1, x0:x1]` without upsampling the rest of the frame.

    The final warp needs the map and its confidence at full resolution only where the change lands (often a tenth of
    the frame). A crop of the small map is resized instead, starting on a whole period of the two sizes' ratio and as
    long as whole periods, so the scale and every output pixel's source coordinate are those of the full resize, with
    a margin of a small pixel so its edges sample what the full resize samples. `cut` names the crop, so a caller can
    keep just the crop and `expand` it later.
    """

    def __init__(self, small: tuple[int, int], full: tuple[int, int]):
        self.axes = [(n, big, n // gcd(n, big), big // gcd(n, big)) for n, big in zip(small, full)]

    def _span(self, axis: int, lo: int, hi: int) -> tuple[int, int, int]:
        """Small-map crop [a, b) and its full-resolution origin for full-resolution pixels [lo, hi)."""
        n, big, q, p = self.axes[axis]
        first = (lo + 0.5) * n / big - 0.5  # source coordinates of the first and last output pixel
        last = (hi - 0.5) * n / big - 0.5
        a = max(0, (int(np.floor(first)) - 1) // q * q)
        b = min(n, -(-(int(np.floor(last)) + 3) // q) * q)
        return a, b, a // q * p

    def cut(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """The small map's crop (a, b, c, d) = columns a..b-1, rows c..d-1 that `expand` needs for `box`."""
        x0, y0, x1, y1 = box
        a, b, _ = self._span(0, x0, x1)
        c, d, _ = self._span(1, y0, y1)
        return a, b, c, d

    def expand(self, crop: np.ndarray, cut: tuple[int, int, int, int], box: tuple[int, int, int, int]) -> np.ndarray:
        a, b, c, d = cut
        x0, y0, x1, y1 = box
        (_, _, qx, px), (_, _, qy, py) = self.axes
        ox, oy = a // qx * px, c // qy * py
        big = cv2.resize(crop, ((b - a) // qx * px, (d - c) // qy * py), interpolation=cv2.INTER_LINEAR)
        return big[y0 - oy:y1 - oy, x0 - ox:x1 - ox]

    def box(self, m: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        a, b, c, d = cut = self.cut(box)
        return self.expand(m[c:d, a:b], cut, box)


@dataclass
class FrameMap:
    """What the final warp of one frame needs: where the change lands (`box`, full resolution; None: nowhere), the
    map back to frame 0 (scaled to full-resolution coordinates) and the change's opacity there, both at flow
    resolution and cut to `cut` (see `_Upsampler.cut`), and the face mesh's points (None for a face lost)."""

    box: tuple[int, int, int, int] | None = None
    cut: tuple[int, int, int, int] = (0, 0, 0, 0)
    mapping: np.ndarray | None = None  # (d - c, b - a, 2) float32
    alpha: np.ndarray | None = None  # (d - c, b - a) float32
    faces: tuple[np.ndarray | None, ...] = ()
    # the opacity of the edit's hidden content (None: the edit hides nothing): full inside tracked faces
    content_alpha: np.ndarray | None = None  # (d - c, b - a) float32

    @property
    def nbytes(self) -> int:
        arrays = [self.mapping, self.alpha, self.content_alpha, *self.faces]
        return 256 + sum(a.nbytes for a in arrays if a is not None)


def _nonzero(a: np.ndarray | None) -> np.ndarray | bool:
    """(H, W) bool: where any channel of `a` (H, W, 3) is not zero; False for None. Channel by channel: a reduction
    over the three-long last axis (`np.abs(a).max(2) > 0`) is ten times slower, 80 ms a 1080p frame."""
    if a is None:
        return False
    return (a[..., 0] != 0) | (a[..., 1] != 0) | (a[..., 2] != 0)


def flow_size(w: int, h: int, side: int) -> tuple[int, int]:
    """(fw, fh) of the grey frames the flow runs on: the longer side `side`, never larger than the frame."""
    scale = min(1.0, side / max(h, w))
    return max(8, round(w * scale)), max(8, round(h * scale))


class FlowTrack(Tracker):
    """One direction of one flow propagation: set up on frame 0 and its edit, then `maps` in order and `compose`."""

    def __init__(self, prop: FlowPropagator, first: np.ndarray, edited: np.ndarray, probes: np.ndarray | None = None):
        """`first`/`edited`: frame 0 and its edit (same size); `probes`: a few frames spread over the direction,
        `first` among them at [0], on which faces are counted (None: just `first`)."""
        self.prop, c = prop, prop.config
        self.first = np.ascontiguousarray(first)
        h, w = self.first.shape[:2]
        self.size = (w, h)
        self.guide: FaceGuide | None = None
        self._facts: dict = {}
        gain, change, touched = prop._change(self.first, np.ascontiguousarray(edited))
        self.idle = not change.any() and (gain is None or not gain.any())  # nothing was edited: the source it is
        if self.idle:
            return
        fw, fh = flow_size(w, h, c.flow_side)
        if c.face_guide:
            stack = self.first[None] if probes is None else probes
            self.guide = FaceGuide.start(stack, (fw, fh), c.face)
            grow = self.guide.wanted_scale() if self.guide.active else 1.0
            if grow > 1.0:  # a face small in the frame (a 16:9 phone clip): the flow runs larger, up to its cap
                fw, fh = flow_size(w, h, min(round(c.flow_side * grow), max(c.flow_side, c.face_side_max)))
                self.guide.rescale((fw, fh))
            self._facts.update(self.guide.facts())
        self.flow_size = (fw, fh)
        self.sx, self.sy = w / fw, h / fh
        self.ident = np.dstack(np.meshgrid(np.arange(fw, dtype=np.float32), np.arange(fh, dtype=np.float32)))
        self.up_scale = np.array([self.sx, self.sy], np.float32)
        self.up_shift = (self.up_scale - 1) / 2
        self.upsample = _Upsampler((fw, fh), (w, h))
        # with faces, the change inside frame 0's open mouth and eyes travels apart from the rest (see face_guide)
        hole_gain = hole_change = parts = None
        # where the change lives in frame 0; splitting it below (holes, hidden content) only moves it between arrays
        changed = _nonzero(change) | _nonzero(gain)
        if self.guide is not None and self.guide.active:
            parts = self.guide.focus(changed, self.first)
        # where the edit hides what was there (a mask, dark lenses, a beard) the edited frame's content travels instead
        # of its change, unmasked by the openings: the source's motion beneath it never shows (see face_guide)
        self.content = self.content_gain = None
        edited = np.ascontiguousarray(edited)
        hidden, facts = face_content.content_weight(self.guide, self.first, edited, touched)
        self._facts.update(facts)
        if hidden is not None:
            hid = (hidden * touched)[..., None]
            self.content, self.content_gain = edited * hid, np.repeat(-hid, 3, axis=2)
            change = change * (1 - hid)
            if gain is not None:
                gain = gain * (1 - hid)
        if parts is not None:
            inner, outer = (m[..., None] for m in parts)
            hole_change, change = change * inner, change * outer
            if gain is not None:
                hole_gain, gain = gain * inner, gain * outer
        self.gain, self.change, self.hole_gain, self.hole_change = gain, change, hole_gain, hole_change
        # ... and the content that travels instead, at flow resolution and a little grown, to crop the full-res work
        if self.content is not None:
            changed |= self.content_gain[..., 0] < 0
        support = cv2.resize(changed.astype(np.uint8) * 255, (fw, fh), interpolation=cv2.INTER_AREA)
        # grown once more for the nearest-pixel lookup in `_frame_map`: the nearest pixel is within one of each pixel
        # a bilinear lookup reads, so this finds (at least) every pixel the change can land on, at a quarter the cost
        self.support = cv2.dilate(support, np.ones((5, 5), np.uint8))
        # the change's arrays (float, three channels: 25 MB each at 1080p) kept only over the box where they are not
        # zero; the warp samples them at frame-0 positions less the box's origin (zero outside the box, as before)
        x, y, bw, bh = cv2.boundingRect(changed.astype(np.uint8))
        x1, y1 = x + max(1, bw), y + max(1, bh)
        self.origin = np.array([x, y], np.float32)

        def crop(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.ascontiguousarray(a[y:y1, x:x1])

        self.change, self.gain, self.hole_change, self.hole_gain, self.content, self.content_gain = (
            crop(a) for a in (self.change, self.gain, self.hole_change, self.hole_gain, self.content,
                              self.content_gain))

    def facts(self) -> dict:
        return dict(self._facts)

    def close(self) -> None:
        """Stop the face tracker (the warp still needs the guide's frame-0 geometry, which stays)."""
        if self.guide is not None:
            self.guide.close()
            self._facts.update(self.guide.facts())

    # ------------------------------------------------------------------ the maps
    def maps(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, FrameMap]]:
        """For frames 1, 2, ... of the direction (in order), each frame with its `FrameMap`. The pairwise flows and
        the face tracking run `_LOOKAHEAD` frames ahead on two worker threads (OpenCV and MediaPipe release the GIL),
        so only that many frames are held."""
        if self.idle:
            for f in frames:
                yield f, FrameMap()
            return
        with _opencv_serial():
            yield from self._maps(iter(frames))

    def _maps(self, frames: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, FrameMap]]:
        p, c, guide = self.prop, self.prop.config, self.guide
        fw, fh = self.flow_size
        ident = self.ident
        ref = cv2.DISOpticalFlow_create(c.refine_preset)  # calc() starts from a given flow of the right shape
        dis = cv2.DISOpticalFlow_create(c.preset)  # used by the flow worker thread only
        g0 = p._grey(self.first, (fw, fh))
        # each frame is made grey once, as it is pulled, for both workers (a 720p frame's costs a millisecond)
        greys = {0: g0}
        held: dict[int, np.ndarray] = {0: self.first}

        def pair(t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            a, b = greys.pop(t - 1), greys[t]
            back, fwd = dis.calc(b, a, None), dis.calc(a, b, None)  # b(x) ~ a(x + back(x)); fwd the other way
            pos = ident + back
            return b, pos, self._pair_ok(a, b, back, fwd, pos)

        tracking = guide is not None and guide.active

        pool = ThreadPoolExecutor(max_workers=1)
        # (the mesh's tracking and its maps on two threads, pipelined, measured slower: 50-53 fps against 52-55)
        track_pool = ThreadPoolExecutor(max_workers=1) if tracking else None
        ahead: dict[int, tuple] = {}
        pulled = 0

        def pull() -> None:
            nonlocal pulled
            frame = next(frames, None)
            if frame is None:
                return
            pulled += 1
            held[pulled] = frame if not isinstance(frame, np.ndarray) else np.ascontiguousarray(frame)
            rgb = np.asarray(held[pulled])  # a decoded frame is converted whole here: the flow and the mesh see it all
            g = greys[pulled] = p._grey(rgb, (fw, fh))
            faces = track_pool.submit(guide.track, rgb, g, g0) if tracking else None
            ahead[pulled] = (pool.submit(pair, pulled), faces)

        mapping = ident.copy()  # frame-t pixel -> frame-0 position (flow px)
        conf = np.ones((fh, fw), np.float32)
        try:
            for _ in range(_LOOKAHEAD):
                pull()
            t = 0
            while t + 1 in ahead:
                t += 1
                flows, tracked = ahead.pop(t)
                g, pos, pair_ok = flows.result()
                faces = tracked.result() if tracked is not None else []
                held.pop(t - 1, None)
                pull()
                mapping, conf = self._step(t, mapping, conf, pos, pair_ok, g, g0, ref, faces)
                yield held[t], self._frame_map(mapping, conf, faces)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if track_pool is not None:
                track_pool.shutdown(wait=True, cancel_futures=True)
            self.close()

    def _pair_ok(self, prev: np.ndarray, g: np.ndarray, back: np.ndarray, fwd: np.ndarray,
                 pos: np.ndarray) -> np.ndarray:
        """0..1 per flow pixel: does the pairwise flow from frame t (`g`) to frame t-1 (`prev`) hold there (see
        `propagate.flow`)? It needs nothing of the chain, so it runs on the flow's worker thread, beside the warp."""
        p, c = self.prop, self.prop.config
        fw, fh = self.flow_size
        back_warped = cv2.remap(prev, pos, None, cv2.INTER_LINEAR)
        pair_err = cv2.blur(cv2.absdiff(back_warped, g).astype(np.float32), (3, 3))
        pair_ok = np.clip((c.pair_hi - pair_err) / (c.pair_hi - c.pair_lo), 0.0, 1.0)
        if c.edge_win:
            # a photometric mismatch only means occlusion near a motion boundary; inside smoothly moving content it
            # is the source changing in place (a blink, a shadow) and the edit must stay. Only the mismatched part
            # (plus the reach of the window) needs the motion edges.
            x, y, bw, bh = cv2.boundingRect((pair_ok < 1.0).astype(np.uint8))
            if bw and bh:
                r = c.edge_win + 2
                x0, y0, x1, y1 = max(0, x - r), max(0, y - r), min(fw, x + bw + r), min(fh, y + bh + r)
                edge = p._motion_edges(back[y0:y1, x0:x1])
                np.maximum(pair_ok[y0:y1, x0:x1], 1.0 - edge, out=pair_ok[y0:y1, x0:x1])
        return np.minimum(pair_ok, p._fb_ok(back, fwd, pos))

    def _step(self, t, mapping, conf, pos, pair_ok, g, g0, ref, faces):
        """The map and confidence of frame t from frame t-1's, carried along the pairwise flow (`pos`: each frame-t
        pixel's position in frame t-1) and cut to where that flow holds (`pair_ok`)."""
        p, c = self.prop, self.prop.config
        ident = self.ident
        mapping = cv2.remap(mapping, pos, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        carried = cv2.remap(conf, pos, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        conf = np.minimum(carried, pair_ok)
        if c.refine_every and t % c.refine_every == 0:
            mapping, e_new = p._refine(ref, g0, g, ident, mapping)
            restore = np.clip((c.photo_hi - e_new) / (c.photo_hi - c.photo_lo), 0.0, 1.0)
            conf = np.maximum(conf, restore)
        if self.guide is not None:  # inside faces, the map and its confidence follow the face mesh
            self.guide.steer(faces, mapping, conf, g, g0)
        return mapping, conf

    def _frame_map(self, mapping: np.ndarray, conf: np.ndarray, faces: list) -> FrameMap:
        """Cut what the final warp needs out of the maps: only where the change can land."""
        w, h = self.size
        pts = tuple(None if s is None else s.pts for s in faces)
        landed = cv2.remap(self.support, mapping, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        cover = None
        if self.content is not None:  # hidden content is carried by the mesh whatever frame t shows beneath it
            cover = self.guide.cover(faces, conf) if self.guide is not None else conf
        x, y, bw, bh = cv2.boundingRect(((landed > 0) & ((conf if cover is None else cover) > 0)).astype(np.uint8))
        if not (bw and bh):
            return FrameMap(faces=pts)
        # low-res box, grown by the 3x3 blur and interpolation reach, in full-res pixels
        sx, sy = self.sx, self.sy
        x0, y0 = max(0, int((x - 2) * sx)), max(0, int((y - 2) * sy))
        x1, y1 = min(w, int(np.ceil((x + bw + 2) * sx))), min(h, int(np.ceil((y + bh + 2) * sy)))
        box = (x0, y0, x1, y1)
        a, b, c, d = cut = self.upsample.cut(box)
        # full-res coordinate x_f = (x_l + 0.5) * s - 0.5; scaled at low res, the map itself is upsampled later
        m = mapping[c:d, a:b] * self.up_scale + self.up_shift
        alpha = cv2.blur(conf, (3, 3))[c:d, a:b]
        content_alpha = None if cover is None else np.ascontiguousarray(cv2.blur(cover, (3, 3))[c:d, a:b])
        return FrameMap(box, cut, np.ascontiguousarray(m), np.ascontiguousarray(alpha), pts, content_alpha)

    # ------------------------------------------------------------------ the warp
    def compose(self, frame, fmap: FrameMap, out: np.ndarray | None = None):
        """`frame` plus the change carried to it: a new array, or `out` (frame's shape) filled; outside `fmap.box`,
        `frame` exactly. A decoded frame (`video.lazy`) gives a `PatchedFrame`: only the box is converted to RGB and
        back, everything else stays the source's own samples."""
        if not isinstance(frame, np.ndarray):
            if self.idle or fmap.box is None:
                return frame
            return PatchedFrame(frame, fmap.box, self._patch(frame.rgb_box(fmap.box), fmap))
        if out is None:
            out = np.array(frame, copy=True)
        else:
            out[...] = frame
        if self.idle or fmap.box is None:
            return out
        x0, y0, x1, y1 = fmap.box
        out[y0:y1, x0:x1] = self._patch(np.ascontiguousarray(frame[y0:y1, x0:x1]), fmap)
        return out

    def _patch(self, src_t: np.ndarray, fmap: FrameMap) -> np.ndarray:
        """The frame's box (`src_t`: its RGB there) with the change carried into it."""
        guide = self.guide
        box = fmap.box
        roi_map = self.upsample.expand(fmap.mapping, fmap.cut, box)
        src_t = np.ascontiguousarray(src_t)
        local = roi_map - self.origin  # frame-0 positions in the change's own box
        moved = self.prop._carry(self.change, self.gain, local, src_t)
        faces = [None if pts is None else Seen(pts=pts) for pts in fmap.faces]
        holes, edited_holes = guide.holes(faces, box) if guide is not None else (None, None)
        if holes is not None:  # the surface's change stays off the mouth and eye openings, and near the mouth's rim
            keep = 1 - holes  # lands only where frame t looks like what the map brings there
            rim = guide.rim_trust(faces, box, roi_map, src_t)
            if rim is not None:
                keep *= rim
            moved = cv2.multiply(moved, cv2.merge([keep] * 3))
        if edited_holes is not None and self.hole_change is not None:  # the holes' own change, inside them
            inside = self.prop._carry(self.hole_change, self.hole_gain, local, src_t)
            moved = cv2.add(moved, cv2.multiply(inside, cv2.merge([edited_holes] * 3)))
        alpha = self.upsample.expand(fmap.alpha, fmap.cut, box)
        moved = cv2.multiply(moved, cv2.merge([alpha, alpha, alpha]))
        if fmap.content_alpha is not None:  # the hidden part's content, wherever the map brings it from; inside a
            # tracked face at full strength (frame t differs from frame 0 beneath it: the mouth opened)
            a_c = self.upsample.expand(fmap.content_alpha, fmap.cut, box)
            inner = self.prop._carry(self.content, self.content_gain, local, src_t)
            moved = cv2.add(moved, cv2.multiply(inner, cv2.merge([a_c, a_c, a_c])))
        # saturating add; where nothing moved in (moved == 0) the source comes through exactly
        return cv2.add(src_t, moved, dtype=cv2.CV_8U)
