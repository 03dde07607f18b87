"""Face guidance for the flow backend: inside each face, the map back to the edited frame follows the face mesh.

Why: optical flow on small grey frames cannot follow thin, fast, non-rigid parts. Lips that open, stretch and close
slide off their make-up or fade it (the occlusion checks fire), and lids that blink lose their shadow. MediaPipe's
face mesh (478 points, tracked on a face crop in about 4 ms a frame) names the same point of the face in every frame,
so the map from frame t back to frame 0 is known directly, without chaining: piecewise-affine on the mesh triangles.

* **Topology keeps parts apart.** The mesh has three holes: the mouth's opening and the eyes'. We fill each with a
  strip of triangles of its own. The change painted on frame 0 is split into what lies on the surface (skin, lips,
  lids) and what lies inside an opening it reached into (a tint over the eyes, whitened teeth). In frame t the
  surface's change stays off every opening (lipstick never reaches teeth or tongue, shadow never an eyeball) and an
  opening's change stays inside it. An opening that is closed in frame 0 (closed lips, a blink) carries no change.
  Around the mouth's rim, at full resolution, the surface's change also needs frame t to look like what the map
  brings there: a landmark a pixel off would otherwise put lip colour on the first row of teeth.
* **Mesh or flow.** Landmarks jitter by a pixel where textured skin does not; the flow loses thin fast parts where
  the mesh does not. Where the flow's map is within reach of the mesh's, the one that explains frame t better over a
  small window wins (the flow on ties); farther off, the mesh decides.
* **Visibility.** Triangles facing away in frame t are not drawn; nearer triangles are drawn over farther ones; a
  pixel whose triangle was hidden in frame 0 (a cheek behind the nose) is left to the flow.
* **Blending.** The result replaces the flow's map inside the face and fades into it over a band inside the face's
  outline, so hair, ears, glasses' arms, hats and background keep the flow's map and no seam shows. It is fed back
  into the flow's chain, so a frame where the face is lost continues from a face-correct map.
* **Confidence.** Inside the face the edit is trusted where frame 0 seen through the mesh's map matches frame t
  (judged over the face's surface and over a window a fraction of the face wide), or where the flow trusts its own
  map and the two agree; a hand over the face fails both and fades the edit as before.
* **Cost.** Faces are counted once per segment with MediaPipe's face detector on a few frames, and the mesh finds that
  many on frame 0; it then tracks only the faces the edit touches (a tracker allowed more faces than it follows runs
  its detector on every frame), and its detector runs again only after a face is lost. Tracking, the mesh's map and
  its judgement run on a worker thread of their own, at the flow's resolution, beside the flow's.
* **Notices.** Each segment reports facts (faces found, frames guided, frames a face was lost);
  `face_content.notices` turns the facts of all segments of a clip into what the user reads: no face at all (the
  preview cannot follow a face and lip sync cannot be judged), no face in the edited frame, several faces followed,
  frames where a face was lost.

It follows geometry only: the edit's look is still carried as the flow backend carries it (a local gain and offset),
so it suits make-up, tints and accessories on the face, not changes of shape, style or expression. It is only as right
as MediaPipe's landmarks: where they misread a mouth, the lipstick follows the misread lips.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from synclora.face import parts as fp
from synclora.face.mesh import count_faces
from synclora.face.topology import (
    HOLE_RINGS,
    HOLES,
    OUTLINE,
    SURFACE,
    fill_polygons,
    raster,
    topology,
    triangle_affines,
)


@dataclass(frozen=True)
class FaceGuideConfig:
    """Tuning of the face guidance (measured on benchmarks/bench_flow.py's expressive faces)."""

    max_faces: int = 4  # most faces guided in one clip
    probes: int = 5  # frames (spread over the segment) on which faces are counted before tracking
    feather: float = 0.35  # width of the blend into the flow at the face border, x the eye span
    whole_mesh: float = 0.7  # map the whole mesh when the edit's triangles are more than this share of it
    min_open: float = 1.5  # a hole (mouth, eye) opening less than this (px) in frame 0 is closed there
    # a hole is edited in frame 0 when this fraction of its inside (more than `hole_inset` x the eye span from its
    # border, where a soft or slightly wide lipstick may reach) changed
    hole_edited: float = 0.3
    hole_inset: float = 0.03
    min_confidence: float = 0.5  # MediaPipe's detection and tracking confidence
    photo_lo: float = 12.0  # grey-level error vs frame 0 (through the face map) under which the edit is trusted ...
    photo_hi: float = 30.0  # ... and over which it is not (something in front of the face)
    photo_win: float = 0.2  # window of that error, x the eye span
    # A face less than this many flow pixels between the outer eye corners (the thresholds were tuned at 70-90; a
    # portrait in a 16:9 720p frame has about 50) has each flow pixel average more of it, and the same landmark error
    # costs more grey levels (measured on the same face: 1.45x at 1280x720 as at 352x288): the grey-level thresholds
    # above and below grow by that ratio
    judge_span: float = 72.0
    # The flow runs at a size where the largest face spans at least this many flow pixels between the outer eye
    # corners (`FlowConfig.face_side_max` caps it): below about 35 the lips are a flow pixel or two thick and the edit
    # fades off them (measured on a face half as high as a 1280x720 frame, span 26 at the usual 256 px: lipstick kept
    # on 61 % of frames; 98-100 % at 40-48; `python -m benchmarks.bench_flow --sizes`)
    min_span: float = 40.0
    # ... and per pixel (3x3): a gross mismatch there is a landmark that is off (a lip put on the tongue)
    pixel_lo: float = 35.0
    pixel_hi: float = 70.0
    rim: float = 0.03  # ... and at full resolution within this (x the eye span) of the mouth's opening
    # Where the flow's map is within `reach` (x the eye span) of the mesh's, the one that explains frame t better over
    # a window of `choice_win` (x the eye span) wins, the flow by `flow_bias` grey levels on ties; farther off, the
    # mesh. Measured on the bench's drawn face: lenses drift 0.72 px over 200 frames (flow alone 0.67, the mesh alone
    # 0.79), lipstick and shadow kept as often.
    reach: float = 0.06
    choice_win: float = 0.1
    flow_bias: float = 3.0


@dataclass
class _Track:
    ref: np.ndarray  # (478, 3) landmarks in frame 0 (full-res pixel-index coordinates)
    last: np.ndarray  # (2,) centroid when last seen
    size: float  # eye span in frame 0 (px)
    ref_ids: np.ndarray | None = None  # frame 0's triangle ids at flow resolution (-1: none)
    ref_box: tuple[int, int] = (0, 0)  # offset of ref_ids
    ref_pad: np.ndarray | None = None  # ref_ids with a border of -1 (lookups one pixel outside its box)
    edited: tuple[bool, ...] = (False,) * len(HOLES)  # per hole: does the edit reach inside it in frame 0?
    active: np.ndarray | None = None  # (K,) bool: the triangles near the edit, the only ones mapped (None: all)


@dataclass
class Seen:
    """One tracked face in one frame: its landmarks and, at the flow's resolution over `box`, the mesh's map to
    frame 0 with what is known about it without the flow."""

    pts: np.ndarray  # (478, 3) full-res pixel-index coordinates
    box: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 at flow resolution
    face_map: np.ndarray | None = None  # (h, w, 2) frame-0 flow pixel of each pixel
    weight: np.ndarray | None = None  # (h, w) blend weight against the flow's map
    error: np.ndarray | None = None  # (h, w) grey-level error of frame 0 seen through the map (choice window)
    ok: np.ndarray | None = None  # (h, w) 0..1: the map explains frame t (see FaceGuideConfig.photo_*)


@dataclass
class FaceGuide:
    """One segment's face tracks: `start` on the frames, `focus` on the edit, then per frame `track` (in order, on one
    thread), `steer` the flow's map and confidence with what was tracked, and mask the final warp with `holes` and
    `rim_trust`; `facts` for the notices."""

    config: FaceGuideConfig
    size: tuple[int, int]  # (w, h) of the frames
    flow_size: tuple[int, int]  # (fw, fh) of the flow's maps
    tracks: list[_Track] = field(default_factory=list)
    seen: int = 0  # most faces found in any probe
    found: int = 0  # faces found in frame 0 (those the edit touches are tracked)
    frames: int = 0  # frames steered (after frame 0)
    guided: int = 0  # ... with every tracked face found
    lost: int = 0  # ... with a tracked face missing
    _tracker: object | None = None
    _grey0: np.ndarray | None = None  # frame 0 in grey, full resolution (the check at the openings' rims)

    # ------------------------------------------------------------------ set-up
    @classmethod
    def start(cls, frames: np.ndarray, flow_size: tuple[int, int], config: FaceGuideConfig | None = None) -> FaceGuide:
        """Count the faces, then track frame 0; faces found there are the ones guided."""
        return cls._start(frames, flow_size, config or FaceGuideConfig())

    @classmethod
    def _start(cls, frames: np.ndarray, flow_size: tuple[int, int], cfg: FaceGuideConfig) -> FaceGuide:
        from synclora.face.mesh import FaceMeshTracker

        n, h, w = frames.shape[:3]
        guide = cls(config=cfg, size=(w, h), flow_size=flow_size)
        picks = sorted({round(i) for i in np.linspace(0, n - 1, max(1, min(cfg.probes, n)))})
        counts = count_faces(frames, picks, cfg.min_confidence)
        guide.seen = min(cfg.max_faces, max(counts))
        if not guide.seen:
            return guide
        guide._tracker = FaceMeshTracker(max_faces=guide.seen, min_confidence=cfg.min_confidence)
        for pts in guide._detect(frames[0]):
            span = fp.eye_span(pts)  # outer eye corners: the face's size, robust to mouth and lid motion
            if span < 4:
                continue
            tr = _Track(ref=pts, last=pts[:, :2].mean(0), size=span)
            ids, box = raster(guide._to_flow(pts), guide.flow_size)
            tr.ref_ids, tr.ref_box, tr.ref_pad = ids, box, np.pad(ids, 1, constant_values=-1)
            guide.tracks.append(tr)
        guide.found = len(guide.tracks)
        if not guide.tracks:
            guide.close()
            # the detector alone sometimes sees a face in texture: only the mesh's word says a face is elsewhere
            with FaceMeshTracker(static=True, max_faces=cfg.max_faces, min_confidence=cfg.min_confidence) as mesh:
                guide.seen = max(len(mesh.faces(frames[i])) for i, k in zip(picks, counts) if k)
        else:
            guide._grey0 = cv2.cvtColor(np.ascontiguousarray(frames[0]), cv2.COLOR_RGB2GRAY)
        return guide

    def wanted_scale(self) -> float:
        """How many times larger the flow's frames should be for the largest tracked face to span `min_span` flow
        pixels between its eyes (1: they are large enough)."""
        span = max(tr.size for tr in self.tracks) * self.flow_size[0] / self.size[0]
        return max(1.0, self.config.min_span / span)

    def rescale(self, flow_size: tuple[int, int]) -> None:
        """Work at another flow size (before `focus`): frame 0's mesh is drawn again at it."""
        self.flow_size = flow_size
        for tr in self.tracks:
            ids, box = raster(self._to_flow(tr.ref), self.flow_size)
            tr.ref_ids, tr.ref_box, tr.ref_pad = ids, box, np.pad(ids, 1, constant_values=-1)

    def _narrow(self, frame0: np.ndarray) -> None:
        """Track only the faces followed. MediaPipe's tracker runs its face detector on every frame while it follows
        fewer faces than it may (12.4 ms a 512² frame instead of 7), so a face counted on the probes but not followed
        (untouched by the edit, absent from frame 0, or the detector's false find) would cost a detection a frame. A
        tracker for just the followed faces replaces it when on frame 0 it finds each of them where it was."""
        from synclora.face.mesh import FaceMeshTracker

        if len(self.tracks) >= self._tracker.max_faces:
            return
        narrow = FaceMeshTracker(max_faces=len(self.tracks), min_confidence=self.config.min_confidence)
        found = [pts[:, :2].mean(0) - 0.5 for pts in narrow.faces(frame0)]
        if all(any(np.linalg.norm(c - tr.last) < 0.05 * tr.size for c in found) for tr in self.tracks):
            self.close()
            self._tracker = narrow
        else:
            narrow.close()

    def close(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None

    @property
    def active(self) -> bool:
        return bool(self.tracks)

    def _detect(self, frame: np.ndarray) -> list[np.ndarray]:
        found = self._tracker.faces(frame)  # type: ignore[union-attr]
        for pts in found:
            pts[:, :2] -= 0.5  # pixel-index coordinates, as OpenCV's maps use
        return found

    # ------------------------------------------------------------------ per frame
    def track(self, frame: np.ndarray, g: np.ndarray, g0: np.ndarray) -> list[Seen | None]:
        """Each tracked face in `frame` (None where lost) with its map to frame 0; `g`, `g0` are frames t and 0 in grey
        at the flow's size. Call once per frame, in order, from one thread (the tracker has state); it needs nothing
        from the flow, so it runs ahead on a worker thread of its own."""
        if not self.active:
            return []
        found = self._detect(frame)
        out: list[Seen | None] = [None] * len(self.tracks)
        cand = [(float(np.linalg.norm(p[:, :2].mean(0) - tr.last)), i, j)
                for i, tr in enumerate(self.tracks) for j, p in enumerate(found)]
        used: set[int] = set()
        for d, i, j in sorted(cand):
            if out[i] is None and j not in used and d < 1.5 * self.tracks[i].size:
                seen = out[i] = Seen(pts=found[j])
                used.add(j)
                self.tracks[i].last = found[j][:, :2].mean(0)
                got = self._face_map(self.tracks[i], self._to_flow(found[j]))
                if got is not None:
                    seen.box, seen.face_map, seen.weight, surface, mapped = got
                    seen.error, seen.ok = self._judge(self.tracks[i], seen, surface, mapped, g, g0)
        return out

    def _judge(self, tr: _Track, seen: Seen, surface: np.ndarray, mapped: np.ndarray, g: np.ndarray,
               g0: np.ndarray):
        """How well frame 0 seen through the mesh's map explains frame t: the error over the choice window, and 0..1
        trust. Trust is judged over the face's surface only (thin lips next to an opened mouth must not be judged by
        the teeth and throat) and over a window a fraction of the face wide (an occluder, a hand, is a region; a lip
        line or a stretched crease is not), and per pixel, where a gross mismatch is a landmark that is off (a lip
        put on the tongue)."""
        c = self.config
        x0, y0, x1, y1 = seen.box
        scale = tr.size * self.flow_size[0] / self.size[0]  # the eye span in flow pixels
        k = max(1.0, c.judge_span / scale)
        warped = cv2.remap(g0, seen.face_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # judged over the mapped pixels only (elsewhere the map means nothing)
        diff = cv2.absdiff(warped, g[y0:y1, x0:x1]).astype(np.float32) * mapped
        win = max(3, int(c.choice_win * scale) | 1)
        error = cv2.blur(diff, (win, win)) / np.maximum(cv2.blur(mapped, (win, win)), 1e-3)
        win = max(3, int(c.photo_win * scale) | 1)
        err = cv2.blur(diff * surface, (win, win)) / np.maximum(cv2.blur(surface, (win, win)), 1e-3)
        ok = np.clip((k * c.photo_hi - err) / (k * (c.photo_hi - c.photo_lo)), 0.0, 1.0)
        px = np.clip((k * c.pixel_hi - cv2.blur(diff, (3, 3)) / np.maximum(cv2.blur(mapped, (3, 3)), 1e-3))
                     / (k * (c.pixel_hi - c.pixel_lo)), 0.0, 1.0)
        # not inside the openings: what shows there changes by itself (a look aside, a lid, the tongue), and what the
        # edit put there (a lens's tint) is re-applied to it
        np.minimum(ok, 1.0 - surface * (1.0 - px), out=ok)
        return error, ok

    def steer(self, faces: list[Seen | None], mapping: np.ndarray, conf: np.ndarray, g: np.ndarray,
              g0: np.ndarray) -> None:
        """Pull the flow's map (frame-t flow pixel -> frame-0 flow pixel) and confidence towards each face's mesh."""
        if not self.active:
            return
        self.frames += 1
        if any(f is None for f in faces):
            self.lost += 1
        else:
            self.guided += 1
        fw = self.flow_size[0]
        for tr, seen in zip(self.tracks, faces):
            if seen is None or seen.box is None:
                continue
            (x0, y0, x1, y1), face_map, weight = seen.box, seen.face_map, seen.weight
            sub = mapping[y0:y1, x0:x1]
            gap = face_map - sub
            # where the flow's map is within a tolerance of the mesh's, the flow may be the more precise of the two (a
            # landmark jitters by a pixel, textured skin does not): there the one that explains frame t better wins,
            # the flow on ties. Farther off, the flow has lost the part (fast lips, a blink) and the mesh decides.
            scale = tr.size * fw / self.size[0]  # the eye span in flow pixels
            agree = np.clip(2.0 - cv2.magnitude(gap[..., 0], gap[..., 1]) / (self.config.reach * scale), 0.0, 1.0)
            if agree.any():
                win = max(3, int(self.config.choice_win * scale) | 1)
                warped = cv2.remap(g0, np.ascontiguousarray(sub), None, cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
                e_flow = cv2.blur(cv2.absdiff(warped, g[y0:y1, x0:x1]).astype(np.float32), (win, win))
                keep = agree * np.clip((seen.error - e_flow + self.config.flow_bias) / 2.0, 0.0, 1.0)
                gap *= (1.0 - keep)[..., None]
            sub += weight[..., None] * gap
            # trusted where the mesh's map explains frame t, or where the flow trusts its own map and it agrees
            c = conf[y0:y1, x0:x1]
            c += weight * (np.maximum(seen.ok, c * agree) - c)

    def cover(self, faces: list[Seen | None], conf: np.ndarray) -> np.ndarray:
        """`conf` (flow resolution) raised to each tracked face's blend weight: the confidence of an edit's hidden
        content, which the mesh carries whatever frame t shows beneath it."""
        out = conf.copy()
        for seen in faces:
            if seen is not None and seen.box is not None:
                x0, y0, x1, y1 = seen.box
                # full a quarter of the blend's width inside the outline: the jaw's rim moves against the background,
                # and the flow's doubt there would let the source's shading through
                np.maximum(out[y0:y1, x0:x1], np.minimum(4 * seen.weight, 1), out=out[y0:y1, x0:x1])
        return out

    def focus(self, changed: np.ndarray, frame0: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Learn where the edit is on frame 0 (`frame0`; `changed`: (H, W) bool). Faces it does not touch are not
        followed (nothing of the edit is there to carry; if none is left, no landmarks are tracked at all). Returns,
        where the edit reaches inside an open hole (a tint over the eyes, whitened teeth), soft masks of what travels
        as the holes' change and as the surface's; None when it stays out of every hole. The two overlap by a band at
        each hole's border, so that where frame t's border cuts between them (with its own soft edge) the edit is
        carried whole."""
        small = cv2.resize(changed.astype(np.uint8), self.flow_size, interpolation=cv2.INTER_AREA) > 0
        self.tracks = [tr for tr in self.tracks if self._touches(tr, small)]
        if not self.tracks:
            self.close()
            return None
        self._narrow(frame0)
        top = topology()
        near_edit = cv2.dilate(small.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        for tr in self.tracks:  # only the mesh near the edit is mapped: work in proportion to the edit
            x0, y0 = tr.ref_box
            h, w = tr.ref_ids.shape
            under = tr.ref_ids[near_edit[y0:y0 + h, x0:x0 + w] & (tr.ref_ids >= 0)]
            touched = np.zeros(len(top.tris), bool)
            touched[under] = True
            active = top.ring[:, touched].any(axis=1)
            tr.active = active if active.mean() < self.config.whole_mesh else None
        polys = []
        w, h = self.size
        for tr in self.tracks:
            edited = []
            for poly, opening in zip(self._hole_polys(tr.ref), self._openings(tr.ref)):
                inner = fill_polygons([poly], (0, 0, w, h), -max(1, round(self.config.hole_inset * tr.size)))
                hit = opening >= self.config.min_open and inner is not None and (inner > 0.5).any() and \
                    float(changed[inner > 0.5].mean()) > self.config.hole_edited
                edited.append(hit)
                if hit:
                    polys.append(poly)
            tr.edited = tuple(edited)
        if not polys:
            return None
        band = max(1, round(0.01 * min(tr.size for tr in self.tracks)))
        holes = fill_polygons(polys, (0, 0, w, h), band)
        core = fill_polygons(polys, (0, 0, w, h), -band)
        return holes, 1.0 - (core if core is not None else 0.0)

    def holes(self, faces: list[Seen | None], box: tuple[int, int, int, int]) -> tuple[np.ndarray | None,
                                                                                             np.ndarray | None]:
        """Soft masks (float32, 0..1) over `box` (full res) of frame t's mouth and eye openings: all of them, and the
        ones the edit reached inside in frame 0; None where empty."""
        polys = [(poly, hit) for tr, seen in zip(self.tracks, faces) if seen is not None
                 for poly, hit in zip(self._hole_polys(seen.pts), tr.edited)]
        return fill_polygons([p for p, _ in polys], box), fill_polygons([p for p, hit in polys if hit], box)

    def rim_trust(self, faces: list[Seen | None], box: tuple[int, int, int, int], roi_map: np.ndarray,
                  src: np.ndarray) -> np.ndarray | None:
        """0..1 per pixel of a full-res box, for the surface's change: around the mouth's opening, does what frame t
        shows look like what the map brings from frame 0? A landmark a pixel or two off would otherwise put the lip's
        colour on the first row of teeth or the throat's rim; those differ from lips by far more than any stretch or
        shading, so a gross mismatch there drops the surface's edit (`pixel_lo`/`pixel_hi` grey levels). Not around
        the eyes: a closing lid differs as much from the lashes it is mapped to, and shadow never reached an eyeball
        in any measurement. None when no mouth is in the box."""
        c = self.config
        mouths = [seen.pts[HOLE_RINGS[0], :2] for seen in faces if seen is not None]
        reach = max(1, round(c.rim * min(tr.size for tr in self.tracks)))
        rim = fill_polygons(mouths, box, reach)
        if rim is None:
            return None
        seen0 = cv2.remap(self._grey0, roi_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        diff = cv2.absdiff(seen0, cv2.cvtColor(np.ascontiguousarray(src), cv2.COLOR_RGB2GRAY)).astype(np.float32)
        bad = np.clip((diff - c.pixel_lo) / (c.pixel_hi - c.pixel_lo), 0.0, 1.0)
        return 1.0 - rim * bad

    def _touches(self, tr: _Track, support: np.ndarray) -> bool:
        """Does the edit (flow-resolution support) reach the face's frame-0 mesh, grown by the blend's width?"""
        x0, y0 = tr.ref_box
        h, w = tr.ref_ids.shape
        grow = int(self.config.feather * tr.size * self.flow_size[0] / self.size[0]) + 1
        ya, yb, xa, xb = max(0, y0 - grow), y0 + h + grow, max(0, x0 - grow), x0 + w + grow
        face = np.zeros(support.shape, np.uint8)
        face[y0:y0 + h, x0:x0 + w] = tr.ref_ids >= 0
        near = cv2.dilate(face[ya:yb, xa:xb], np.ones((2 * grow + 1,) * 2, np.uint8))
        return bool((near.astype(bool) & support[ya:yb, xa:xb]).any())

    # ------------------------------------------------------------------ geometry
    def _to_flow(self, pts: np.ndarray) -> np.ndarray:
        """Full-res pixel-index coordinates -> the flow's (same convention as flow.py's map upsampling)."""
        (w, h), (fw, fh) = self.size, self.flow_size
        out = pts.copy()
        out[:, 0] = (pts[:, 0] + 0.5) * fw / w - 0.5
        out[:, 1] = (pts[:, 1] + 0.5) * fh / h - 0.5
        return out

    def _face_map(self, tr: _Track, p: np.ndarray):
        """Piecewise-affine map of the face's pixels to frame 0, the blend weight, the surface mask and the mapped
        pixels (the map means nothing elsewhere), over the face's box at the flow's resolution."""
        ids, (x0, y0) = raster(p, self.flow_size, tr.active)
        if not ids.size:
            return None
        inside = ids >= 0
        if not inside.any():
            return None
        # a crack of a pixel or two between drawn triangles (rounding, an occluder's edge) is part of the mapped
        # region: it takes a neighbour's triangle, whose map carries on smoothly across it
        mapped = cv2.morphologyEx(np.pad(inside.astype(np.uint8), 1), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
        cracks = (mapped[1:-1, 1:-1] > 0) & ~inside
        if cracks.any():
            near = cv2.dilate(ids.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int32)
            ids = np.where(cracks, near, ids)
            inside = ids >= 0
        top = topology()
        ref = self._to_flow(tr.ref)
        aff = np.zeros((len(top.tris) + 1, 6), np.float32)  # frame t -> frame 0, one row per triangle; -1: outside
        use = np.arange(len(top.tris)) if tr.active is None else np.flatnonzero(tr.active)
        aff[use] = triangle_affines(p[top.tris[use], :2], ref[top.tris[use], :2]).reshape(-1, 6)
        bh, bw = ids.shape
        xs = np.arange(x0, x0 + bw, dtype=np.float32)[None, :]
        ys = np.arange(y0, y0 + bh, dtype=np.float32)[:, None]
        c = [np.take(aff[:, i], ids) for i in range(6)]  # each triangle's affine, spread over its pixels
        face_map = np.dstack([c[0] * xs + c[1] * ys + c[2], c[3] * xs + c[4] * ys + c[5]])
        # frame 0 must have seen this part of the surface: where another, far part of the mesh covers the mapped
        # point in frame 0 (a cheek behind the nose), frame 0 shows something else and the flow decides
        rh, rw = tr.ref_ids.shape
        # (judged at the four flow pixels around the mapped point: a face a hundred flow pixels high has lips a pixel
        # or two thick in frame 0, and rounding alone would land on a triangle of the other lip)
        hidden = inside.copy()
        # as indices into ref_pad (frame 0's ids with a border of -1): the four corners at +0/+1 on each axis
        fx = np.floor(face_map[..., 0]).astype(np.int32) + (1 - tr.ref_box[0])
        fy = np.floor(face_map[..., 1]).astype(np.int32) + (1 - tr.ref_box[1])
        row = np.maximum(ids, 0) * len(top.tris)
        near = top.near_surface.ravel()
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            under = tr.ref_pad[np.clip(fy + dy, 0, rh + 1), np.clip(fx + dx, 0, rw + 1)]
            hidden &= (under >= 0) & ~np.take(near, row + np.maximum(under, 0))
        # blend weight: 0 at the face's outline, 1 a feather's width inside (a smooth step); a short ramp where the
        # mapped triangles end inside the face (far from the edit, nothing to blend there); 0 where frame 0 did not
        # see the surface
        feather = max(1.0, self.config.feather * tr.size * self.flow_size[0] / self.size[0])
        oval = np.zeros((bh + 2, bw + 2), np.uint8)
        cv2.fillPoly(oval, [np.round((p[OUTLINE, :2] - (x0 - 1, y0 - 1)) * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
        oval[[0, -1], :] |= (oval[[1, -2], :] > 0).astype(np.uint8)  # the box's own edge is not the face's
        oval[:, [0, -1]] |= (oval[:, [1, -2]] > 0).astype(np.uint8)
        wgt = np.clip(cv2.distanceTransform(oval, cv2.DIST_L2, 3)[1:-1, 1:-1] / feather, 0.0, 1.0)
        wgt = wgt * wgt * (3 - 2 * wgt)
        wgt *= np.clip(cv2.distanceTransform(mapped, cv2.DIST_L2, 3)[1:-1, 1:-1] / 3, 0, 1)
        if hidden.any():
            gone = hidden.astype(np.float32)
            wgt *= 1 - np.minimum(cv2.blur(cv2.dilate(gone, np.ones((3, 3), np.uint8)), (5, 5)) * 2, 1)
        surface = ((ids >= 0) & (top.kind[np.maximum(ids, 0)] == SURFACE)).astype(np.float32)
        box = (x0, y0, x0 + ids.shape[1], y0 + ids.shape[0])
        return box, face_map, wgt.astype(np.float32), surface, inside.astype(np.float32)

    @staticmethod
    def _hole_polys(pts: np.ndarray) -> list[np.ndarray]:
        """Polygons of the mouth's and both eyes' openings of one face (full-res pixel-index coordinates)."""
        return [pts[ring, :2] for ring in HOLE_RINGS]

    @staticmethod
    def _openings(pts: np.ndarray) -> list[float]:
        """How open (px) the mouth and both eyes of one face are."""
        return [float(np.mean([np.linalg.norm(pts[a, :2] - pts[b, :2]) for a, b in pairs])) for pairs in fp.OPENINGS]

    # ------------------------------------------------------------------ report
    def facts(self) -> dict:
        return {"frames": self.frames, "faces": len(self.tracks), "found": self.found, "seen": self.seen,
                "guided": self.guided, "lost": self.lost}
