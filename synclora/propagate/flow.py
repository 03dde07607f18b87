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
  a worker thread; maps are upsampled, and only the final warp runs at full resolution, cropped to where the change
  can land.

No face landmarks: DIS already follows the face, and a landmark model costs more per frame than this whole pipeline.

It suits local appearance edits (glasses, make-up, colour, accessories). It cannot change shape or style: the
output's geometry is always the source's. Known weak spot: make-up on lips that stretch a lot (a wide-open mouth)
is partly faded for those frames, because a coarse flow cannot follow thin, fast, non-rigid lips.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from synclora.config import PropagationSettings
from synclora.errors import InputError
from synclora.propagate.base import LABELS, BackendSpec, ProgressFn, Propagator, Segment, no_progress

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
        mag = cv2.blur(np.abs(change).max(axis=2), (3, 3))
        keep = np.clip((mag - c.change_lo) / (c.change_hi - c.change_lo), 0.0, 1.0)[..., None]
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

    # ------------------------------------------------------------------ main
    def propagate(self, segment: Segment, progress: ProgressFn = no_progress) -> np.ndarray:
        """(T, H, W, 3) uint8: frame 0 is the edited frame exactly, frame t is source_t plus the carried change."""
        self.check_inputs(segment)
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
        ref = cv2.DISOpticalFlow_create(c.refine_preset)  # calc() starts from a given flow of the right shape

        g0 = self._grey(frames[0], (fw, fh))
        prev = g0
        # The pairwise flows need nothing but the frames: one worker thread computes them ahead (OpenCV releases the
        # GIL), so the second core works while this thread chains maps and warps the change.
        dis = cv2.DISOpticalFlow_create(c.preset)  # used by the single worker thread only

        def pair(t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            a, b = self._grey(frames[t - 1], (fw, fh)), self._grey(frames[t], (fw, fh))
            return b, dis.calc(b, a, None), dis.calc(a, b, None)  # b(x) ~ a(x + back(x)); fwd the other way

        pool = ThreadPoolExecutor(max_workers=1)
        ahead = {t: pool.submit(pair, t) for t in range(1, min(n, 1 + _LOOKAHEAD))}
        mapping = ident.copy()  # frame-t pixel -> frame-0 position (flow px)
        conf = np.ones((fh, fw), np.float32)
        # where the change lives in frame 0, at flow resolution and a little grown, to crop the full-res work
        changed = (np.abs(change).max(axis=2) > 0) | (gain is not None and (np.abs(gain).max(axis=2) > 0))
        changed = changed.astype(np.uint8)
        support = cv2.resize(changed * 255, (fw, fh), interpolation=cv2.INTER_AREA)
        support = cv2.dilate(support, np.ones((3, 3), np.uint8)).astype(np.float32)
        every = max(1, n // 50)
        try:
            for t in range(1, n):
                g, back, fwd = ahead.pop(t).result()
                if t + _LOOKAHEAD < n:
                    ahead[t + _LOOKAHEAD] = pool.submit(pair, t + _LOOKAHEAD)
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
                prev = g

                # full resolution: only the final warp of the change, and only where it can land
                out[t] = frames[t]
                landed = cv2.remap(support, mapping, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                x, y, bw, bh = cv2.boundingRect(((landed > 0) & (conf > 0)).astype(np.uint8))
                if bw and bh:
                    # low-res box, grown by the 3x3 blur and interpolation reach, in full-res pixels
                    x0, y0 = max(0, int((x - 2) * sx)), max(0, int((y - 2) * sy))
                    x1, y1 = min(w, int(np.ceil((x + bw + 2) * sx))), min(h, int(np.ceil((y + bh + 2) * sy)))
                    # full-res coordinate x_f = (x_l + 0.5) * s - 0.5; scale at low res, then upsample the map itself
                    full_map = cv2.resize(mapping * up_scale + up_shift, (w, h), interpolation=cv2.INTER_LINEAR)
                    roi_map = full_map[y0:y1, x0:x1]
                    src_t = frames[t, y0:y1, x0:x1]
                    moved = cv2.remap(change, roi_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                    if gain is not None:
                        moved_gain = cv2.remap(gain, roi_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                        moved = cv2.add(moved, cv2.multiply(moved_gain, src_t, dtype=cv2.CV_32F))
                    alpha = cv2.resize(cv2.blur(conf, (3, 3)), (w, h), interpolation=cv2.INTER_LINEAR)[y0:y1, x0:x1]
                    moved = cv2.multiply(moved, cv2.merge([alpha, alpha, alpha]))
                    # saturating add; where nothing moved in (moved == 0) the source comes through exactly
                    out[t, y0:y1, x0:x1] = cv2.add(src_t, moved, dtype=cv2.CV_8U)
                if t % every == 0 or t == n - 1:
                    progress(t / (n - 1), f"flow: frame {t + 1}/{n}")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return out
