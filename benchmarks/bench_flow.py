"""Speed, drift and make-up quality of the CPU flow backend, next to baselines measured in the same run.

Run: python -m benchmarks.bench_flow [--frames 200] [--size 512] [--threads 2] [--sizes]

The backend runs with face guidance (the default: inside faces the map follows the face mesh) and, as the baseline,
without it (`FlowConfig(face_guide=False)`, the flow-only backend as it was).

1. Speed: a drawn talking face (synclora.testing.media.talking_face_frames: mouth, blinks, head motion), 512x512,
   200 frames, with "glasses" (tinted lenses) painted on frame 0. Drift: the lenses' centroid against the true eyes.
2. Drift under large motion: a random texture under a known affine motion (rotation, zoom, +-20% translation),
   with a green patch painted on frame 0; drift is the changed pixels' centroid against the true patch centroid.
   (No face: both backends are the flow alone.)
3. Make-up on a real face (synclora.testing.expressive.expressive_clip: a photo whose mouth opens wide showing teeth,
   tongue and throat, whose lids blink shut, and which moves, rolls and turns), lipstick and eye shadow painted on
   frame 0: the share of frames where each stays on its part (covers >= 75 % of it, lands on <= 2 % of the teeth and
   inner mouth / eyeballs, spills little: `part_scores`), and the most it ever lands on teeth, inner mouth or eyeballs.
   Grace Hopper's photo is the main case; Eileen Collins' smile (teeth at rest, thin pale lips) is a hard case where
   the landmarker itself misplaces the opened lower lip by up to ~18 px.
4. Opaque edits on the same real face: a light-blue mask over nose, mouth and chin (the mouth opens wide beneath it)
   and dark sunglasses painted on a frame where the eyes are three-quarters shut (they open far wider later). The
   preview carries what hides as drawn: the median correlation of the mask's luminance with the source's over the
   mouth (0: nothing of the mouth shows through; the share of frames above 0.5), the share of the mouth under
   mask-blue, and the share of eye-white pixels that show bright through the lenses; speed against flow only.
5. `--sizes` (only this): the make-up of 3 on the same face in a 352x288 and a 1280x720 frame, the face's square as
   high as the frame, two thirds or half as high, next to what an edit painted on every frame's true parts scores
   (the measure's ceiling): the flow sized to the face (the default) against the flow at a fixed 256 px, in the
   streaming form the pipeline runs.

Baselines for 1-2, each a full propagation of the same change (flow + warp), per frame directly to frame 0 at full
resolution: OpenCV Farneback, and DIS-MEDIUM. Speed is end to end (`propagate`), after one short warm-up call.
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np

from synclora.config import PropagationSettings
from synclora.propagate.base import Segment
from synclora.propagate.flow import FlowConfig, FlowPropagator
from synclora.testing.media import noise_texture


def moving_clip(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames and their 2x3 frame-0 -> frame-t affines."""
    big = noise_texture(2 * size)
    frames, mats = np.empty((n, size, size, 3), np.uint8), []
    for t in range(n):
        u = t / max(1, n - 1)
        m = cv2.getRotationMatrix2D((size / 2, size / 2), 12 * np.sin(2 * np.pi * u), 1 + 0.1 * np.sin(np.pi * u))
        m[:, 2] += (0.2 * size * np.sin(2 * np.pi * u), 0.1 * size * np.sin(4 * np.pi * u))
        mb = m.copy()
        mb[:, 2] += m[:, :2] @ np.array([-size / 2, -size / 2])
        frames[t] = cv2.warpAffine(big, mb, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        mats.append(m)
    return frames, np.stack(mats)


def paint_patch(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    out = frame.copy()
    out[y0:y1, x0:x1] = (0.3 * out[y0:y1, x0:x1] + 0.7 * np.array([20, 200, 40])).astype(np.uint8)
    return out


def face_clip(n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Talking-face frames, the true lens masks per frame (for drift) and the glasses edit of frame 0."""
    from synclora.testing.media import talking_face_frames

    u = np.arange(n) / max(1, n - 1)
    wave = np.sin(2 * np.pi * u)
    head = np.stack([0.06 * size * wave, 0.03 * size * np.sin(4 * np.pi * u), 6 * wave], 1)
    frames, truth = talking_face_frames(n, size=(size, size), seed=1, head=head)
    lenses = np.zeros((n, size, size), bool)
    for t in range(n):
        m = np.zeros((size, size), np.uint8)
        for key in ("left_eye", "right_eye"):
            x, y = truth[key][t]
            cv2.ellipse(m, (int(round(x)), int(round(y))), (int(0.085 * size), int(0.06 * size)), 0, 0, 360, 255, -1)
        lenses[t] = m > 0
    edited = frames[0].copy()
    edited[lenses[0]] = (0.55 * edited[lenses[0]] + 0.45 * np.array([0, 40, 120])).astype(np.uint8)
    return frames, lenses, edited


def mask_drift(out: np.ndarray, frames: np.ndarray, masks: np.ndarray, thr: int = 20) -> tuple[float, float]:
    """Mean and max distance (px) between the changed pixels' centroid and the true edit mask's centroid."""
    errs = []
    for t in range(1, len(frames)):
        truth = masks[t]
        if truth.sum() < 50:
            continue
        got = np.abs(out[t].astype(np.int16) - frames[t].astype(np.int16)).max(axis=2) > thr
        if not got.any():
            errs.append(float("inf"))
            continue
        gy, gx = np.nonzero(got)
        ty, tx = np.nonzero(truth)
        errs.append(float(np.hypot(gx.mean() - tx.mean(), gy.mean() - ty.mean())))
    return float(np.mean(errs)), float(np.max(errs))


def direct_baseline(frames: np.ndarray, edited: np.ndarray, method: str) -> np.ndarray:
    """Naive propagation: per frame, full-resolution flow straight to frame 0, then warp the change."""
    n, h, w = frames.shape[:3]
    change = edited.astype(np.float32) - frames[0].astype(np.float32)
    g0 = cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY)
    ident = np.dstack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    out = np.empty_like(frames)
    out[0] = edited
    for t in range(1, n):
        g = cv2.cvtColor(frames[t], cv2.COLOR_RGB2GRAY)
        if method == "farneback":
            flow = cv2.calcOpticalFlowFarneback(g, g0, None, 0.5, 4, 15, 3, 5, 1.2, 0)
        else:
            flow = dis.calc(g, g0, None)
        warped = cv2.remap(change, ident + flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        out[t] = np.clip(frames[t] + warped, 0, 255).round().astype(np.uint8)
    return out


def box_masks(mats: np.ndarray, shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    m0 = np.zeros(shape, np.uint8)
    m0[y0:y1, x0:x1] = 1
    return np.stack([cv2.warpAffine(m0, m, shape[::-1], flags=cv2.INTER_NEAREST) > 0 for m in mats])


def timed(fn, *args):
    t0 = time.perf_counter()
    res = fn(*args)
    return res, time.perf_counter() - t0


BACKENDS = (("flow backend (face-guided)", True), ("flow only (baseline)", False))


def run_backend(frames: np.ndarray, edited: np.ndarray, guided: bool) -> tuple[np.ndarray, float, float, list[str]]:
    """(result, fps, CPU ms per frame, notices) of one end-to-end propagation, after a short warm-up call."""
    settings = PropagationSettings(backend="flow")
    prop = FlowPropagator(settings, FlowConfig(face_guide=guided))
    prop.propagate(Segment(frames[:4], edited, 25.0, settings))  # warm-up (allocations, OpenCV and MediaPipe init)
    seg = Segment(frames, edited, 25.0, settings)
    cpu0 = time.process_time()
    out, dt = timed(prop.propagate, seg)
    cpu = (time.process_time() - cpu0) / len(frames) * 1000
    return out, len(frames) / dt, cpu, prop.notices([seg.facts])


def compare(title: str, frames: np.ndarray, edited: np.ndarray, masks: np.ndarray, thr: int) -> float:
    n, size = len(frames), frames.shape[1]
    print(f"\n[{title}]")
    speeds = {}
    for label, guided in BACKENDS:
        out, fps, cpu, notes = run_backend(frames, edited, guided)
        speeds[guided] = fps
        d_mean, d_max = mask_drift(out, frames, masks, thr)
        print(f"{label}: {fps:.1f} fps ({size}x{size}, {n} frames), {cpu:.1f} ms CPU/frame "
              f"| drift mean {d_mean:.2f} px, max {d_max:.2f} px" + "".join(f"\n    note: {m}" for m in notes))
    fps = speeds[True]
    print(f"face-guided / flow-only speed: {fps / speeds[False]:.2f}x")
    for method in ("farneback", "dis-medium"):
        base_out, base_dt = timed(direct_baseline, frames, edited, method)
        b_fps = n / base_dt
        b_mean, b_max = mask_drift(base_out, frames, masks, thr)
        print(
            f"baseline {method}-direct: {b_fps:.1f} fps | drift mean {b_mean:.2f} px, max {b_max:.2f} px "
            f"| ratio {fps / b_fps:.1f}x"
        )
    return fps


def makeup(name: str, n: int, size: int) -> None:
    """Lipstick and eye shadow on a real face that opens its mouth wide, blinks and turns, both backends."""
    from synclora.testing import expressive as X
    from synclora.testing import face_edits as E

    clip = X.expressive_clip(name, n, size=size, mouth_px=0.09 * size)
    edited = E.eye_shadow(E.lipstick(clip.frames[0], clip.part(0, X.PART_LIPS)), clip.part(0, X.PART_LID))
    print(f"\n[{name}: mouth opens wide (jaw drop up to {clip.mouth.max():.0f} px), {len(clip.blinks)} blinks, turns "
          f"+-{np.abs(clip.turn).max():.0f} deg; lipstick and eye shadow, {size}x{size}, {n} frames]")
    for label, guided in BACKENDS:
        out, fps, _, notes = run_backend(clip.frames, edited, guided)
        lips = X.part_scores(out, clip, (X.PART_LIPS,), (X.PART_MOUTH, X.PART_TEETH), others=(X.PART_LID,))
        lids = X.part_scores(out, clip, (X.PART_LID,), (X.PART_EYEBALL,), others=(X.PART_LIPS,))
        print(f"{label}: {fps:.1f} fps | lipstick on the lips in {100 * lips.kept:.0f} % of frames (coverage mean "
              f"{lips.coverage[1:].mean():.2f}, min {lips.coverage[1:].min():.2f}), at most "
              f"{100 * lips.landed.max():.1f} % of teeth and inner mouth | eye shadow on the lids in "
              f"{100 * lids.kept:.0f} % (coverage mean {lids.coverage[1:].mean():.2f}, min "
              f"{lids.coverage[1:].min():.2f}), at most {100 * lids.landed.max():.1f} % of the eyeballs"
              + "".join(f"\n    note: {m}" for m in notes))


def run_stream(frames: np.ndarray, edited: np.ndarray, config: FlowConfig) -> tuple[np.ndarray, float, tuple]:
    """(result, fps, flow size) of the backend in its streaming form (as the pipeline runs it, any frame size)."""
    from synclora.propagate.flow import probe_indices

    prop = FlowPropagator(PropagationSettings(backend="flow"), config)
    out = np.empty_like(frames)
    out[0] = edited
    t0 = time.perf_counter()
    track = prop.track(frames[0], edited, frames[probe_indices(len(frames), config.face.probes)])
    walk = track.maps(frames[1:])
    try:
        for t, (frame, fmap) in enumerate(walk, start=1):
            out[t] = track.compose(frame, fmap)
    finally:
        walk.close()
        track.close()
    return out, len(frames) / (time.perf_counter() - t0), track.flow_size


def makeup_sizes(name: str, n: int) -> None:
    """Lipstick and eye shadow on the same face in a small (352x288) and a phone's (1280x720) frame, the face's square
    as high as the frame, two thirds or half as high: the face guidance with the flow sized to the face (the default)
    against the flow at its fixed 256 px (`face_side_max=256`, the baseline)."""
    from synclora.testing import expressive as X
    from synclora.testing import face_edits as E

    print(f"\n[{name}: make-up at the sizes people bring, {n} frames; face = the expressive clip's square, centred]")
    for width, height, face in ((352, 288, 288), (352, 288, 192), (352, 288, 144), (1280, 720, 720), (1280, 720, 480),
                               (1280, 720, 360)):
        clip = X.in_frame(X.expressive_clip(name, n, size=face, mouth_px=0.09 * face), width, height)
        edited = E.eye_shadow(E.lipstick(clip.frames[0], clip.part(0, X.PART_LIPS)), clip.part(0, X.PART_LID))
        perfect = np.stack([E.eye_shadow(E.lipstick(f, clip.part(t, X.PART_LIPS)), clip.part(t, X.PART_LID))
                            for t, f in enumerate(clip.frames)])
        ideal = X.part_scores(perfect, clip, (X.PART_LIPS,), (X.PART_MOUTH, X.PART_TEETH), others=(X.PART_LID,))
        print(f"{width}x{height}, face square {face} px: the edit painted on every frame's true lips scores "
              f"{100 * ideal.kept:.0f} %")
        for label, cfg in (("flow sized to the face", FlowConfig()),
                           ("flow at 256 px (baseline)", FlowConfig(face_side_max=256))):
            out, fps, flow = run_stream(clip.frames, edited, cfg)
            lips = X.part_scores(out, clip, (X.PART_LIPS,), (X.PART_MOUTH, X.PART_TEETH), others=(X.PART_LID,))
            lids = X.part_scores(out, clip, (X.PART_LID,), (X.PART_EYEBALL,), others=(X.PART_LIPS,))
            print(f"    {label}: flow {flow[0]}x{flow[1]}, {fps:.1f} fps | lipstick on the lips in "
                  f"{100 * lips.kept:.0f} % of frames (coverage min {lips.coverage[1:].min():.2f}), at most "
                  f"{100 * lips.landed.max():.1f} % of teeth and inner mouth | eye shadow on the lids in "
                  f"{100 * lids.kept:.0f} %")


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 1e-9 else 0.0


def opaque(name: str, n: int, size: int) -> None:
    """A mask over a mouth that opens wide and dark lenses over eyes that widen, both backends."""
    from synclora.face.mesh import FaceMeshTracker
    from synclora.testing import expressive as X
    from synclora.testing import face_edits as E

    clip = X.expressive_clip(name, n, size=size, mouth_px=0.12 * size, blinks=(6, n // 2))
    k = 5  # the lenses' edited frame: eyes three-quarters shut
    with FaceMeshTracker(static=True) as mesh:
        pts0, ptsk = mesh.landmarks(clip.frames[0]), mesh.landmarks(clip.frames[k])
    luma = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float64) for f in clip.frames]
    print(f"\n[{name}: opaque edits, {size}x{size}, {n} frames; jaw drop up to {clip.mouth.max():.0f} px]")
    speeds = {}
    for label, guided in BACKENDS:
        out, fps, _, notes = run_backend(clip.frames, E.mouth_mask(clip.frames[0], pts0), guided)
        speeds[guided] = fps
        r, blue = [], []
        for t in range(1, n):
            mouth = cv2.erode(clip.part(t, X.PART_LIPS, X.PART_MOUTH, X.PART_TEETH).astype(np.uint8),
                              np.ones((3, 3), np.uint8)) > 0
            r.append(_corr(cv2.cvtColor(out[t], cv2.COLOR_RGB2GRAY).astype(np.float64)[mouth], luma[t][mouth]))
            px = out[t][mouth].astype(int)
            blue.append(float(((px[:, 2] - px[:, 0]) > 30).mean()))
        r = np.array(r)
        lens_out, _, _, lens_notes = run_backend(clip.frames[k:], E.sunglasses(clip.frames[k], ptsk), guided)
        bright = np.array([float((cv2.cvtColor(lens_out[t], cv2.COLOR_RGB2GRAY)[clip.part(k + t, X.PART_EYEBALL)]
                                  > 90).mean()) if clip.part(k + t, X.PART_EYEBALL).sum() >= 4 else 0.0
                           for t in range(1, n - k)])
        print(f"{label}: mask {fps:.1f} fps | mask vs mouth luminance r median {np.median(r):.2f}, "
              f"{100 * (r > 0.5).mean():.0f} % of frames above 0.5, mouth under the mask {100 * np.mean(blue):.0f} % "
              f"(lowest frame {100 * min(blue):.0f} %) | lenses: bright eye-white pixels {100 * bright.mean():.2f} % "
              f"on average, {100 * (bright > 0.05).mean():.0f} % of frames above 5 %"
              + "".join(f"\n    note: {m}" for m in dict.fromkeys(notes + lens_notes)))
    print(f"face-guided / flow-only speed (mask): {speeds[True] / speeds[False]:.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2, help="OpenCV threads (the target machine has 2 cores)")
    ap.add_argument("--sizes", action="store_true",
                    help="only the make-up at 352x288 and 1280x720 (the same face small and large in the frame)")
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)
    n, size = args.frames, args.size
    print(f"opencv threads: {cv2.getNumThreads()}, cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    if args.sizes:
        makeup_sizes("grace_hopper", min(n, 120))
        return 0

    frames, lenses, edited = face_clip(n, size)
    fps = compare("talking face, glasses edit", frames, edited, lenses, 20)

    frames, mats = moving_clip(n, size)
    s = size / 512
    box = (int(200 * s), int(220 * s), int(290 * s), int(270 * s))
    compare(
        f"texture, large known motion (rotation +-12 deg, zoom, translation +-{0.2 * size:.0f} px), patch edit",
        frames, paint_patch(frames[0], box), box_masks(mats, (size, size), box), 30,
    )
    for name in ("grace_hopper", "astronaut"):
        makeup(name, min(n, 120), size)
    opaque("grace_hopper", min(n, 120), size)
    verdict = "met" if fps >= 50 else "NOT met"
    print(f"\nspeed goal >= 50 fps at 512x512 on 2 cores: {verdict} ({fps:.1f} fps, face clip, face-guided)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
