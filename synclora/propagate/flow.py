"""CPU backend: carry the *change* made to frame 0 along the source's own optical flow.

Why this design (each choice measured on synthetic clips with known motion: tests/test_propagate_flow.py,
benchmarks/bench_flow.py):

* **What is carried**: the edit as a per-pixel local gain and offset, ``edited = source_0 + gain * source_0 + offset``
  (gain from a small guided-filter fit regularised towards 1, offset takes the rest, so frame 0 is reproduced
  exactly). Both are cut to zero where the edit did not touch the frame (a soft threshold absorbs rounding and
  compression noise). Frame t is ``source_t + confidence * (gain * source_t + offset)`` warped to frame t: whatever
  the edit did not touch stays *exactly* the source, so lips, blinks and pose come from the source itself, and a
  tint or make-up is re-applied to what frame t shows (a closing eyelid) rather than pasting frame 0's pixels.
* **Where it goes**: the map from frame t back to frame 0 is *chained* frame to frame (DIS flow t -> t-1 composed
  with the previous map), which survives large cumulative motion that a direct flow to frame 0 cannot find
  (measured: direct full-resolution Farneback/DIS drift by 45-70 px on average on the benchmark clip). Chaining drifts,
  so every other frame the chained map is *refined against frame 0* (DIS started from it) and, per pixel, the map
  that explains frame t better wins, the refined one on ties (flat skin, where the chain drifts unseen): drift stays
  about 1 px over hundreds of frames.
* **Where it must not go**: a forward-backward check of each pairwise flow and a photometric check of each pairwise
  match mark occlusions; a photometric mismatch only counts near a motion boundary (elsewhere it is the source
  changing in place: a blink, a shadow). Confidence is carried along the chain (min, so it never decays
  geometrically) and restored where the refined map matches frame 0 again (an occluder has passed). The change is
  faded by it, so it does not smear onto a hand, the inside of an opening mouth or newly revealed background.
* **Speed**: flow runs on small grey frames (longer side about 256 px) and the pairwise flows are computed ahead on
  a worker thread; only the final warp runs at full resolution, and it and the maps it needs only where the change
  can land. OpenCV's own thread pool is off meanwhile (the backend's threads already fill the cores).
* **Faces** (`face_guide`, on by default): inside each face the map follows MediaPipe's face mesh instead, tracked on
  a second worker thread: lips that open, stretch and close and lids that blink carry their make-up, and the mesh's
  openings keep lipstick off teeth and tongue and eye shadow off eyeballs. Outside faces (hair, ears, glasses' arms,
  hats, background) the flow decides, blended at the face border; frames where a face is lost fall back to the flow,
  and the notices say how many. A clip without a face gets a notice and the flow alone.

It suits local appearance edits (glasses, make-up, colour, accessories). It cannot change shape, style or expression:
the output's geometry is always the source's. Known weak spot: the mesh is only as right as MediaPipe's landmarks; on a
mouth it misreads (a wide-open mouth whose thin, pale lower lip it puts on the tongue) lipstick follows the misread lip.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from math import gcd
from typing import Literal

import cv2
import numpy as np

from synclora.config import PropagationSettings
from synclora.errors import InputError
from synclora.propagate import face_guide
from synclora.propagate.base import LABELS, BackendSpec, ProgressFn, Propagator, Segment, no_progress
from synclora.propagate.face_guide import FaceGuide, FaceGuideConfig

_LOOKAHEAD = 4  # pairwise flows computed ahead by the worker thread

LABEL = LABELS["flow"]


@dataclass(frozen=True)
class FlowConfig:
    """Tuning of the flow backend. Defaults were chosen by measuring drift and speed on synthetic clips."""

    flow_side: int = 256  # longer side of the grey frames the flow runs on (384 measured no better, and slower)
    preset: int = cv2.DISOPTICAL_FLOW_PRESET_FAST  # pairwise flow
    refine_every: int = 2  # refine the chained map against frame 0 every this many frames (0: never)
    refine_preset: int = cv2.DISOPTICAL_FLOW_PRESET_FAST
    # grey levels by which the refined map is preferred: on ties (flat skin, where the photometric error cannot tell)
    # the refined map, smoothed from its textured surroundings, beats the chain's slowly accumulating drift
    refine_bias: float = 1.0
    change_lo: float = 2.0  # |edited - source| (max over RGB, 3x3 mean) below this is noise, not an edit
    change_hi: float = 6.0  # ... above this the change is carried in full
    # "linear": carry a local gain and offset (see _change); "residual": carry edited - source (measured worse)
    model: Literal["linear", "residual"] = "linear"
    fit_radius: int = 3  # window radius (px) of the local linear fit
    fit_eps: float = 400.0  # its regulariser (grey levels squared): flat areas keep gain 1
    fb_lo: float = 0.75  # forward-backward error (flow px) under which a match is fully trusted ...
    fb_hi: float = 2.0  # ... and over which it is an occlusion; both grow with the motion (fb_rel)
    fb_rel: float = 0.1
    pair_lo: float = 12.0  # grey-level error between frame t and frame t-1 warped by the pairwise flow under which
    pair_hi: float = 30.0  # the match is trusted, and over which it is a wrong match (an occluder's edge)
    edge_win: int = 15  # motion-boundary reach (flow px); 0: every photometric mismatch counts as occlusion
    edge_lo: float = 0.05  # flow change per flow px under which motion is smooth ...
    edge_hi: float = 0.2  # ... and over which it is a motion boundary
    photo_lo: float = 8.0  # grey-level error vs frame 0 under which a refined match restores confidence ...
    photo_hi: float = 20.0  # ... and over which it restores nothing
    photo_win: int = 7  # box window (flow px) for the photometric errors
    # inside faces, the map follows the face mesh's landmarks (see face_guide); False: flow only
    face_guide: bool = True
    face: FaceGuideConfig = field(default_factory=FaceGuideConfig)


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
    a margin of a small pixel so its edges sample what the full resize samples.
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

    def box(self, m: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        x0, y0, x1, y1 = box
        a, b, ox = self._span(0, x0, x1)
        c, d, oy = self._span(1, y0, y1)
        (_, _, qx, px), (_, _, qy, py) = self.axes
        big = cv2.resize(m[c:d, a:b], ((b - a) // qx * px, (d - c) // qy * py), interpolation=cv2.INTER_LINEAR)
        return big[y0 - oy:y1 - oy, x0 - ox:x1 - ox]


class FlowPropagator(Propagator):
    """Fast CPU preview: the source's own motion carries the edited frame's change to every frame.

    Stateless between calls (one instance serves every request); `settings.quality` does not change it.
    """

    name = "flow"
    label = LABEL
    # Works at the source's own size (no upscaling), up to 1024 px on the long side.
    spec = BackendSpec(max_frames=None, frame_step=1, size_multiple=8, native_fps=None, max_side=1024, native_size=True,
                       min_side=16)

    def __init__(self, settings: PropagationSettings, config: FlowConfig | None = None) -> None:
        self.settings = settings
        self.config = config or FlowConfig()

    # ------------------------------------------------------------------ inputs
    def check_inputs(self, segment: Segment) -> None:
        t, h, w = segment.frames.shape[:3]
        if t < 1:
            raise InputError("the segment to propagate has no frames")
        if min(h, w) < 16:
            raise InputError(f"frames of {w}x{h} are too small for optical flow; use at least 16x16")
        if self.spec.max_side is not None and max(h, w) > self.spec.max_side:
            raise InputError(
                f"frames of {w}x{h} exceed the flow backend's {self.spec.max_side}px limit; lower the resolution"
            )

    # ------------------------------------------------------------------ pieces
    def _change(self, source: np.ndarray, edited: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """The edit as (gain - 1, offset) per pixel and channel, both exactly zero where the edit did not touch.

        edited = source + (gain - 1) * source + offset at frame 0, exactly. With `model="linear"` the gain comes from
        a local linear fit edited ~ a * source + b (a guided filter regularised towards a = 1): a tint or make-up is
        then re-applied to whatever the source shows at frame t (a closing eyelid, a shadow) instead of pasting
        frame 0's pixels. `model="residual"` carries the plain difference (gain None).
        """
        c = self.config
        src = source.astype(np.float32)
        edit = edited.astype(np.float32)
        change = edit - src
        keep = self._touched(change)[..., None]
        if c.model == "residual":
            return None, change * keep
        k = (2 * c.fit_radius + 1,) * 2
        mean_s, mean_e = cv2.blur(src, k), cv2.blur(edit, k)
        var = cv2.blur(src * src, k) - mean_s * mean_s
        cov = cv2.blur(src * edit, k) - mean_s * mean_e
        a = (cov + c.fit_eps) / (var + c.fit_eps)
        b = mean_e - a * mean_s
        a, b = cv2.blur(a, k), cv2.blur(b, k)
        gain = (a - 1.0) * keep
        offset = change * keep - gain * src  # whatever the fit misses (sharp edges) rides along in the offset
        return gain, offset

    def _touched(self, change: np.ndarray) -> np.ndarray:
        """0..1 per pixel: where the edit (`change`, float (H, W, 3)) touched the frame, above rounding noise."""
        c = self.config
        mag = cv2.blur(np.abs(change).max(axis=2), (3, 3))
        return np.clip((mag - c.change_lo) / (c.change_hi - c.change_lo), 0.0, 1.0)

    @staticmethod
    def _carry(change: np.ndarray, gain: np.ndarray | None, roi_map: np.ndarray, src: np.ndarray) -> np.ndarray:
        """The change (offset plus gain times what frame t shows) brought to frame t's pixels through `roi_map`."""
        moved = cv2.remap(change, roi_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if gain is not None:
            moved_gain = cv2.remap(gain, roi_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            moved = cv2.add(moved, cv2.multiply(moved_gain, src, dtype=cv2.CV_32F))
        return moved

    def _grey(self, frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        return cv2.resize(g, size, interpolation=cv2.INTER_AREA) if size != g.shape[::-1] else g

    def _fb_ok(self, back: np.ndarray, fwd: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """1 where flow t->t-1 and t-1->t agree (visible in both), fading to 0 at occlusions."""
        c = self.config
        fwd_at = cv2.remap(fwd, pos, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        loop = back + fwd_at
        err = cv2.magnitude(loop[..., 0], loop[..., 1])
        mot = cv2.magnitude(back[..., 0], back[..., 1])
        lo = c.fb_lo + c.fb_rel * mot
        hi = c.fb_hi + 2.0 * c.fb_rel * mot
        ok = np.clip((hi - err) / (hi - lo), 0.0, 1.0)
        # an isolated unreliable pixel is noise; an occlusion is a region
        return cv2.morphologyEx(ok, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))

    def _motion_edges(self, flow: np.ndarray) -> np.ndarray:
        """1 near motion boundaries: where the flow changes by more than edge_hi per flow px, grown by edge_win."""
        c = self.config
        gx = cv2.Sobel(flow, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(flow, cv2.CV_32F, 0, 1, ksize=3)
        sq = cv2.add(cv2.multiply(gx, gx), cv2.multiply(gy, gy))
        g = cv2.sqrt(cv2.transform(sq, np.array([[1.0 / 64, 1.0 / 64]], np.float32)))  # Sobel gain 8 -> per px
        g = cv2.dilate(g, np.ones((c.edge_win, c.edge_win), np.uint8))
        return np.clip((g - c.edge_lo) / (c.edge_hi - c.edge_lo), 0.0, 1.0)

    def _photo_err(self, g0: np.ndarray, g: np.ndarray, mapping: np.ndarray) -> np.ndarray:
        w = self.config.photo_win
        warped = cv2.remap(g0, mapping, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return cv2.blur(cv2.absdiff(warped, g).astype(np.float32), (w, w))

    def _refine(
        self, ref: cv2.DISOpticalFlow, g0: np.ndarray, g: np.ndarray, ident: np.ndarray, mapping: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Correct the chained map against frame 0; returns the new map and its photometric error.

        DIS from frame t to frame 0 starts from the chained map (so large cumulative motion is no problem); per pixel,
        the map that explains frame t better wins, softly, so maps stay smooth. (A from-scratch direct flow as a third
        candidate was measured and never changed the result.)
        """
        err = self._photo_err(g0, g, mapping)
        refined = ident + ref.calc(g, g0, np.ascontiguousarray(mapping - ident))
        err_ref = self._photo_err(g0, g, refined)
        win = np.clip((err - err_ref + self.config.refine_bias) / 2.0, 0.0, 1.0)[..., None]
        return mapping + win * (refined - mapping), np.minimum(err, err_ref)

    def notices(self, facts: list[dict]) -> list[str]:
        return face_guide.notices(facts)

    # ------------------------------------------------------------------ main
    def propagate(self, segment: Segment, progress: ProgressFn = no_progress) -> np.ndarray:
        """(T, H, W, 3) uint8: frame 0 is the edited frame exactly, frame t is source_t plus the carried change."""
        self.check_inputs(segment)
        with _opencv_serial():
            return self._propagate(segment, progress)

    def _propagate(self, segment: Segment, progress: ProgressFn) -> np.ndarray:
        c = self.config
        frames = np.ascontiguousarray(segment.frames)  # OpenCV wants plain buffers; views (reversed, cropped) copy
        n, h, w = frames.shape[:3]
        out = np.empty_like(frames)
        out[0] = segment.edited
        progress(0.0, f"flow: frame 1/{n}")
        if n == 1:
            progress(1.0, f"flow: frame {n}/{n}")
            return out

        gain, change = self._change(frames[0], np.ascontiguousarray(segment.edited))
        if not change.any() and (gain is None or not gain.any()):  # nothing was edited: the source is the answer
            out[1:] = frames[1:]
            progress(1.0, f"flow: frame {n}/{n}")
            return out

        # flow resolution: longer side about flow_side, aspect kept
        scale = min(1.0, c.flow_side / max(h, w))
        fw, fh = max(8, round(w * scale)), max(8, round(h * scale))
        sx, sy = w / fw, h / fh
        ident = np.dstack(np.meshgrid(np.arange(fw, dtype=np.float32), np.arange(fh, dtype=np.float32)))
        up_scale = np.array([sx, sy], np.float32)
        up_shift = (up_scale - 1) / 2
        upsample = _Upsampler((fw, fh), (w, h))
        ref = cv2.DISOpticalFlow_create(c.refine_preset)  # calc() starts from a given flow of the right shape
        guide = FaceGuide.start(frames, (fw, fh), c.face) if c.face_guide else None
        if guide is not None:
            segment.facts.update(guide.facts())
        # with faces, the change inside frame 0's open mouth and eyes travels apart from the rest (see face_guide)
        hole_gain = hole_change = parts = None
        if guide is not None and guide.active:
            parts = guide.focus(change if gain is None else np.abs(change) + np.abs(gain))
        # where the edit hides what was there (a mask, dark lenses, a beard) the edited frame's content travels instead
        # of its change, unmasked by the openings: the source's motion beneath it never shows (see face_guide)
        content = content_gain = None
        touched = self._touched(segment.edited.astype(np.float32) - frames[0])
        hidden, facts = face_guide.content_weight(guide, frames[0], segment.edited, touched)
        segment.facts.update(facts)
        if hidden is not None:
            hid = (hidden * touched)[..., None]
            content, content_gain = segment.edited * hid, np.repeat(-hid, 3, axis=2)
            change = change * (1 - hid)
            if gain is not None:
                gain = gain * (1 - hid)
        if parts is not None:
            inner, outer = (m[..., None] for m in parts)
            hole_change, change = change * inner, change * outer
            if gain is not None:
                hole_gain, gain = gain * inner, gain * outer

        g0 = self._grey(frames[0], (fw, fh))
        prev = g0
        # The pairwise flows need nothing but the frames: one worker thread computes them ahead (OpenCV releases the
        # GIL), so the second core works while this thread chains maps and warps the change.
        dis = cv2.DISOpticalFlow_create(c.preset)  # used by the single worker thread only

        greys = {0: g0}  # the flow worker's last grey frame: each frame is made grey once (only that thread uses it)

        def pair(t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            out[t] = frames[t]  # the source, which the change is added to where it lands (first touch of `out`)
            a = greys.pop(t - 1, None)
            a = self._grey(frames[t - 1], (fw, fh)) if a is None else a
            b = greys[t] = self._grey(frames[t], (fw, fh))
            return b, dis.calc(b, a, None), dis.calc(a, b, None)  # b(x) ~ a(x + back(x)); fwd the other way

        # The face tracker needs nothing from the flow either: a second worker runs it (one thread, so in frame order:
        # the tracker has state) while the first computes flows; MediaPipe and OpenCV release the GIL.
        tracking = guide is not None and guide.active
        track_pool = ThreadPoolExecutor(max_workers=1) if tracking else None

        def faces_at(t: int) -> list:  # its own grey frame (0.1 ms): waiting for the flow worker's would cost more
            return guide.track(frames[t], self._grey(frames[t], (fw, fh)), g0)

        def submit(t: int) -> tuple:
            return pool.submit(pair, t), track_pool.submit(faces_at, t) if tracking else None

        pool = ThreadPoolExecutor(max_workers=1)
        ahead = {t: submit(t) for t in range(1, min(n, 1 + _LOOKAHEAD))}
        mapping = ident.copy()  # frame-t pixel -> frame-0 position (flow px)
        conf = np.ones((fh, fw), np.float32)
        # where the change lives in frame 0, at flow resolution and a little grown, to crop the full-res work
        changed = (np.abs(change).max(axis=2) > 0) | (gain is not None and (np.abs(gain).max(axis=2) > 0))
        if hole_change is not None:
            changed |= (np.abs(hole_change).max(axis=2) > 0) | (hole_gain is not None and np.abs(hole_gain).max(2) > 0)
        if content is not None:
            changed |= content_gain[..., 0] < 0
        changed = changed.astype(np.uint8)
        support = cv2.resize(changed * 255, (fw, fh), interpolation=cv2.INTER_AREA)
        support = cv2.dilate(support, np.ones((3, 3), np.uint8)).astype(np.float32)
        every = max(1, n // 50)
        try:
            for t in range(1, n):
                flows, tracked = ahead.pop(t)
                g, back, fwd = flows.result()
                faces = tracked.result() if tracked is not None else []
                if t + _LOOKAHEAD < n:
                    ahead[t + _LOOKAHEAD] = submit(t + _LOOKAHEAD)
                pos = ident + back
                mapping = cv2.remap(mapping, pos, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                carried = cv2.remap(conf, pos, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                back_warped = cv2.remap(prev, pos, None, cv2.INTER_LINEAR)
                pair_err = cv2.blur(cv2.absdiff(back_warped, g).astype(np.float32), (3, 3))
                pair_ok = np.clip((c.pair_hi - pair_err) / (c.pair_hi - c.pair_lo), 0.0, 1.0)
                if c.edge_win:
                    # a photometric mismatch only means occlusion near a motion boundary; inside smoothly moving
                    # content it is the source changing in place (a blink, a shadow) and the edit must stay.
                    # Only the mismatched part (plus the reach of the window) needs the motion edges.
                    x, y, bw, bh = cv2.boundingRect((pair_ok < 1.0).astype(np.uint8))
                    if bw and bh:
                        r = c.edge_win + 2
                        x0, y0, x1, y1 = max(0, x - r), max(0, y - r), min(fw, x + bw + r), min(fh, y + bh + r)
                        edge = self._motion_edges(back[y0:y1, x0:x1])
                        np.maximum(pair_ok[y0:y1, x0:x1], 1.0 - edge, out=pair_ok[y0:y1, x0:x1])
                conf = np.minimum(np.minimum(carried, pair_ok), self._fb_ok(back, fwd, pos))

                if c.refine_every and t % c.refine_every == 0:
                    mapping, e_new = self._refine(ref, g0, g, ident, mapping)
                    restore = np.clip((c.photo_hi - e_new) / (c.photo_hi - c.photo_lo), 0.0, 1.0)
                    conf = np.maximum(conf, restore)
                if guide is not None:  # inside faces, the map and its confidence follow the face mesh
                    guide.steer(faces, mapping, conf, g, g0)
                prev = g

                # full resolution: only the final warp of the change, and only where it can land
                landed = cv2.remap(support, mapping, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                x, y, bw, bh = cv2.boundingRect(((landed > 0) & (conf > 0)).astype(np.uint8))
                if bw and bh:
                    # low-res box, grown by the 3x3 blur and interpolation reach, in full-res pixels
                    x0, y0 = max(0, int((x - 2) * sx)), max(0, int((y - 2) * sy))
                    x1, y1 = min(w, int(np.ceil((x + bw + 2) * sx))), min(h, int(np.ceil((y + bh + 2) * sy)))
                    # full-res coordinate x_f = (x_l + 0.5) * s - 0.5; scale at low res, then upsample the map itself
                    roi_map = upsample.box(mapping * up_scale + up_shift, (x0, y0, x1, y1))
                    src_t = frames[t, y0:y1, x0:x1]
                    moved = self._carry(change, gain, roi_map, src_t)
                    holes, edited_holes = guide.holes(faces, (x0, y0, x1, y1)) if guide is not None else (None, None)
                    if holes is not None:  # the surface's change stays off the mouth and eye openings, and near the
                        # mouth's rim lands only where frame t looks like what the map brings there
                        keep = 1 - holes
                        rim = guide.rim_trust(faces, (x0, y0, x1, y1), roi_map, src_t)
                        if rim is not None:
                            keep *= rim
                        moved = cv2.multiply(moved, cv2.merge([keep] * 3))
                    if edited_holes is not None and hole_change is not None:  # the holes' own change, inside them
                        inside = self._carry(hole_change, hole_gain, roi_map, src_t)
                        moved = cv2.add(moved, cv2.multiply(inside, cv2.merge([edited_holes] * 3)))
                    alpha = upsample.box(cv2.blur(conf, (3, 3)), (x0, y0, x1, y1))
                    moved = cv2.multiply(moved, cv2.merge([alpha, alpha, alpha]))
                    if content is not None:  # the hidden part's content, wherever the map brings it from; inside a
                        # tracked face at full strength (frame t differs from frame 0 beneath it: the mouth opened)
                        cover = guide.cover(faces, conf) if guide is not None else conf
                        a_c = upsample.box(cv2.blur(cover, (3, 3)), (x0, y0, x1, y1))
                        inner = self._carry(content, content_gain, roi_map, src_t)
                        moved = cv2.add(moved, cv2.multiply(inner, cv2.merge([a_c, a_c, a_c])))
                    # saturating add; where nothing moved in (moved == 0) the source comes through exactly
                    out[t, y0:y1, x0:x1] = cv2.add(src_t, moved, dtype=cv2.CV_8U)
                if t % every == 0 or t == n - 1:
                    progress(t / (n - 1), f"flow: frame {t + 1}/{n}")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if track_pool is not None:
                track_pool.shutdown(wait=True, cancel_futures=True)
            if guide is not None:
                guide.close()
                segment.facts.update(guide.facts())
        return out
