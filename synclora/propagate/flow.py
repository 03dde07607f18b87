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
* **Speed**: flow runs on small grey frames (longer side about 256 px; larger, up to 640, where the edited face is
  small in the frame, so that the face guidance still sees its lips) and the pairwise flows are computed ahead on
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

from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from synclora.config import PropagationSettings
from synclora.errors import InputError
from synclora.propagate import face_content
from synclora.propagate.base import LABELS, BackendSpec, ProgressFn, Propagator, Segment, no_progress
from synclora.propagate.face_guide import FaceGuideConfig
from synclora.propagate.flow_track import _LOOKAHEAD, FlowTrack, _opencv_serial, _Upsampler  # noqa: F401

LABEL = LABELS["flow"]


@dataclass(frozen=True)
class FlowConfig:
    """Tuning of the flow backend. Defaults were chosen by measuring drift and speed on synthetic clips."""

    flow_side: int = 256  # longer side of the grey frames the flow runs on (384 measured no better, and slower)
    # ... grown (up to this) when the edited face would span fewer flow pixels than the face guidance needs
    # (`FaceGuideConfig.min_span`): a face small in a wide frame
    face_side_max: int = 640
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
    def check_inputs(self, segment: Segment, any_size: bool = False) -> None:
        """`any_size`: the frame-by-frame form works at the frames' own size (its cost is where the change lands)."""
        t, h, w = segment.frames.shape[:3]
        if t < 1:
            raise InputError("the segment to propagate has no frames")
        if min(h, w) < 16:
            raise InputError(f"frames of {w}x{h} are too small for optical flow; use at least 16x16")
        if not any_size and self.spec.max_side is not None and max(h, w) > self.spec.max_side:
            raise InputError(
                f"frames of {w}x{h} exceed the flow backend's {self.spec.max_side}px limit; lower the resolution"
            )

    # ------------------------------------------------------------------ pieces
    def _change(self, source: np.ndarray, edited: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """The edit as (gain - 1, offset) per pixel and channel, both exactly zero where the edit did not touch, and
        where it touched (`_touched`).

        edited = source + (gain - 1) * source + offset at frame 0, exactly. With `model="linear"` the gain comes from
        a local linear fit edited ~ a * source + b (a guided filter regularised towards a = 1): a tint or make-up is
        then re-applied to whatever the source shows at frame t (a closing eyelid, a shadow) instead of pasting
        frame 0's pixels. `model="residual"` carries the plain difference (gain None). The fit runs only over the box
        the edit touched, grown by the reach of its two box filters (a tenth of a 1080p frame for make-up).
        """
        c = self.config
        diff = cv2.absdiff(edited, source)
        touched = self._touched(np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2]))
        keep = touched[..., None]
        change = edited.astype(np.float32) - source
        if c.model == "residual":
            return None, change * keep, touched
        gain, offset = np.zeros_like(change), np.zeros_like(change)
        x, y, bw, bh = cv2.boundingRect((touched > 0).astype(np.uint8))
        if not (bw and bh):
            return gain, offset, touched
        h, w = touched.shape
        win = 2 * c.fit_radius + 1  # the fit's box window; two of them reach 2 * fit_radius < win from the box
        x0, y0, x1, y1 = max(0, x - win), max(0, y - win), min(w, x + bw + win), min(h, y + bh + win)
        src = source[y0:y1, x0:x1].astype(np.float32)
        edit = edited[y0:y1, x0:x1].astype(np.float32)
        k = (win, win)
        mean_s, mean_e = cv2.blur(src, k), cv2.blur(edit, k)
        var = cv2.blur(src * src, k) - mean_s * mean_s
        cov = cv2.blur(src * edit, k) - mean_s * mean_e
        a = (cov + c.fit_eps) / (var + c.fit_eps)
        b = mean_e - a * mean_s
        a, b = cv2.blur(a, k), cv2.blur(b, k)
        inner = (slice(y - y0, y - y0 + bh), slice(x - x0, x - x0 + bw))
        box = (slice(y, y + bh), slice(x, x + bw))
        gain[box] = (a[inner] - 1.0) * keep[box]
        offset[box] = change[box] * keep[box] - gain[box] * src[inner]  # the fit's misses (sharp edges) ride here
        return gain, offset, touched

    def _touched(self, mag: np.ndarray) -> np.ndarray:
        """0..1 per pixel: where the edit touched the frame, above rounding noise. `mag`: |edited - source|, the largest
        of the three channels (H, W)."""
        c = self.config
        mag = cv2.blur(mag.astype(np.float32), (3, 3))
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
        return face_content.notices(facts)

    # ------------------------------------------------------------------ main
    def propagate(self, segment: Segment, progress: ProgressFn = no_progress) -> np.ndarray:
        """(T, H, W, 3) uint8: frame 0 is the edited frame exactly, frame t is source_t plus the carried change."""
        self.check_inputs(segment)
        with _opencv_serial():
            return self._propagate(segment, progress)

    def _propagate(self, segment: Segment, progress: ProgressFn) -> np.ndarray:
        frames = np.ascontiguousarray(segment.frames)  # OpenCV wants plain buffers; views (reversed, cropped) copy
        n = len(frames)
        out = np.empty_like(frames)
        out[0] = segment.edited
        progress(0.0, f"flow: frame 1/{n}")
        if n == 1:
            progress(1.0, f"flow: frame {n}/{n}")
            return out
        probes = frames[probe_indices(n, self.config.face.probes)] if self.config.face_guide else None
        track = FlowTrack(self, frames[0], segment.edited, probes)
        segment.facts.update(track.facts())
        every = max(1, n // 50)
        walk = track.maps(frames[1:])
        try:
            for t, (frame, fmap) in enumerate(walk, start=1):
                track.compose(frame, fmap, out=out[t])
                if t % every == 0 or t == n - 1:
                    progress(t / (n - 1), f"flow: frame {t + 1}/{n}")
        finally:
            walk.close()
            track.close()
            segment.facts.update(track.facts())
        return out

    def track(self, first: np.ndarray, edited: np.ndarray, probes: np.ndarray | None = None) -> FlowTrack:
        self.check_inputs(Segment(first[None], edited, 1.0, self.settings), any_size=True)
        return FlowTrack(self, first, edited, probes)


def probe_indices(n: int, probes: int) -> list[int]:
    """The frames of an n-frame direction faces are counted on (as many as the face guide probes, spread out)."""
    return sorted({round(i) for i in np.linspace(0, n - 1, max(1, min(probes, n)))})
