"""Face-guided propagation (synclora.propagate.face_guide) on real faces with per-pixel ground truth.

The clips (`testing.expressive.expressive_clip`) warp a real photo smoothly (not with the face mesh's own map): the
mouth opens wide showing teeth, tongue and throat, the lids blink shut, the head moves, rolls and turns. Make-up
painted on frame 0 must follow its part in every frame and never land on teeth, inner mouth or eyeballs; the flow-only
backend, measured in the same test, shows what the guidance adds.
"""

from __future__ import annotations

import numpy as np
import pytest

from synclora.config import PropagationSettings
from synclora.face import topology as mesh_topology
from synclora.propagate import face_content, face_guide, schedule
from synclora.propagate.base import Segment
from synclora.propagate.flow import FlowConfig, FlowPropagator
from synclora.testing import expressive as X
from synclora.testing import face_edits as E
from synclora.testing import faces as F
from synclora.testing.media import noise_texture

SIZE, N = 256, 40
SETTINGS = PropagationSettings(backend="flow")


def _run(frames: np.ndarray, anchor: np.ndarray, guided: bool = True) -> tuple[np.ndarray, dict, list[str]]:
    prop = FlowPropagator(SETTINGS, FlowConfig(face_guide=guided))
    seg = Segment(frames, anchor, 25.0, SETTINGS)
    out = prop.propagate(seg)
    return out, seg.facts, prop.notices([seg.facts])


def _with(clip: X.ExpressiveClip, frames: np.ndarray, labels: np.ndarray) -> X.ExpressiveClip:
    """`clip` with other frames and labels (a cut, a side-by-side); part_scores reads only these two."""
    n = len(frames)
    return X.ExpressiveClip(frames=np.ascontiguousarray(frames), labels=np.ascontiguousarray(labels),
                            mouth=clip.mouth[:n], stretch=clip.stretch[:n], eyes_closed=clip.eyes_closed[:n],
                            turn=clip.turn[:n], roll=clip.roll[:n], blinks=clip.blinks)


@pytest.fixture(scope="module")
def grace():
    return X.expressive_clip("grace_hopper", N, size=SIZE, mouth_px=0.09 * SIZE)


@pytest.fixture(scope="module")
def makeup(grace):
    anchor = E.eye_shadow(E.lipstick(grace.frames[0], grace.part(0, X.PART_LIPS)), grace.part(0, X.PART_LID))
    return {guided: _run(grace.frames, anchor, guided) for guided in (True, False)}


def _scores(out, clip):
    lips = X.part_scores(out, clip, (X.PART_LIPS,), (X.PART_MOUTH, X.PART_TEETH), others=(X.PART_LID,))
    lids = X.part_scores(out, clip, (X.PART_LID,), (X.PART_EYEBALL,), others=(X.PART_LIPS,))
    return lips, lids


def test_topology_is_a_consistent_mesh_with_three_holes():
    top = mesh_topology.topology()
    surface = top.tris[top.kind == mesh_topology.SURFACE]
    holes = top.tris[top.kind == mesh_topology.HOLE]
    assert len(surface) == 852 and len(holes) == 18 + 14 + 14  # mouth strip, two eye strips
    edges: dict[tuple[int, int], int] = {}
    for a, b, c in surface:  # consistently oriented: every inner edge is run once each way
        for e in ((a, b), (b, c), (c, a)):
            edges[e] = edges.get(e, 0) + 1
    assert max(edges.values()) == 1
    _, pts = F.portrait("grace_hopper", SIZE)
    p = pts[surface, :2]
    area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 1, 1] - p[:, 0, 1]) * (p[:, 2, 0] - p[:, 0, 0])
    assert (area > 0).mean() > 0.99 or (area < 0).mean() > 0.99  # a frontal face shows one side of the mesh


def test_makeup_follows_lips_and_lids_and_stays_off_teeth_and_eyeballs(grace, makeup):
    out, facts, notices = makeup[True]
    lips, lids = _scores(out, grace)
    assert grace.mouth.max() > 0.08 * SIZE and grace.eyes_closed.max() == 1.0 and np.abs(grace.turn).max() > 10
    # measured: lipstick 0.96, eye shadow 1.0 of frames; at most ~3 % of the teeth and throat (a pixel of their rim
    # at this size), nothing on eyeballs
    assert lips.kept >= 0.85, np.round(lips.coverage, 2)
    assert lids.kept >= 0.9, np.round(lids.coverage, 2)
    assert lips.landed.max() <= 0.05 and lids.landed.max() <= 0.01, (lips.landed.max(), lids.landed.max())
    # on the open-mouth and blink frames themselves
    wide = grace.mouth > 0.6 * grace.mouth.max()
    shut = grace.eyes_closed >= 0.75
    assert wide.any() and shut.any()
    assert lips.coverage[wide].min() >= 0.6 and lids.coverage[shut].min() >= 0.6
    assert facts["faces"] == 1 and facts["guided"] == N - 1 and facts["lost"] == 0 and notices == []


def test_the_guidance_is_what_keeps_the_lipstick(grace, makeup):
    guided, _ = _scores(makeup[True][0], grace)
    flow, _ = _scores(makeup[False][0], grace)
    # measured: flow alone keeps the lipstick on the lips in about 0.1 of these frames
    assert flow.kept < 0.5 and guided.kept > flow.kept + 0.4, (flow.kept, guided.kept)


def test_off_the_face_the_source_comes_through(grace, makeup):
    out, _, _ = makeup[True]
    far = grace.labels[0] == X.PART_OTHER
    for t in range(1, N):
        outside = far & (grace.labels[t] == X.PART_OTHER)
        assert np.array_equal(out[t][outside], grace.frames[t][outside])


def test_the_mesh_map_fades_into_the_flow_map_without_a_jump(grace):
    """Where the flow's map disagrees with the mesh's, the blend ramps over the face's border: no seam."""
    guide = face_guide.FaceGuide.start(grace.frames[:3], (SIZE, SIZE))
    seen = guide.track(grace.frames[1], grace.frames[1].mean(axis=2).astype(np.uint8),
                       grace.frames[0].mean(axis=2).astype(np.uint8))[0]
    ident = np.dstack(np.meshgrid(np.arange(SIZE, dtype=np.float32), np.arange(SIZE, dtype=np.float32)))
    off = np.float32([16.0, -12.0])
    mapping = ident + off  # a flow that is 20 px off the mesh everywhere (beyond the reach where it could win)
    conf = np.ones((SIZE, SIZE), np.float32)
    g = grace.frames[1].mean(axis=2).astype(np.uint8)
    guide.steer([seen], mapping, conf, g, grace.frames[0].mean(axis=2).astype(np.uint8))
    x0, y0, x1, y1 = seen.box
    inner = seen.weight > 0.999
    assert inner.mean() > 0.2  # the mesh's map rules the inside of the face
    np.testing.assert_allclose(mapping[y0:y1, x0:x1][inner], seen.face_map[inner], atol=0.05)
    step = np.abs(np.diff(mapping - ident, axis=0)).max(), np.abs(np.diff(mapping - ident, axis=1)).max()
    jump = np.abs(seen.face_map - (ident[y0:y1, x0:x1] + off))[inner].max()
    assert jump > 10 and max(step) < 0.25 * jump, (step, jump)  # measured: ~0.1 of the jump per pixel
    guide.close()


def test_a_tint_over_the_eyes_stays_on_open_eyeballs():
    """An edit that covers the eye openings (tinted lenses) travels inside them: the eyeballs keep it."""
    clip = X.expressive_clip("astronaut", 24, size=SIZE, mouth_px=0.05 * SIZE, blinks=(12,))
    eyes = clip.part(0, X.PART_EYEBALL, X.PART_LID)
    anchor = E.eye_shadow(clip.frames[0], eyes, strength=0.8)
    out, _, _ = _run(clip.frames, anchor)
    balls = X.part_scores(out, clip, (X.PART_EYEBALL,), (X.PART_MOUTH, X.PART_TEETH), others=(X.PART_LID,))
    lids = X.part_scores(out, clip, (X.PART_LID,), (X.PART_MOUTH, X.PART_TEETH), others=(X.PART_EYEBALL,))
    open_ = clip.eyes_closed == 0
    assert balls.coverage[open_].min() >= 0.8, np.round(balls.coverage, 2)
    assert lids.coverage.min() >= 0.8, np.round(lids.coverage, 2)


def test_face_lost_falls_back_to_flow_and_is_counted(grace):
    frames = grace.frames[:30].copy()
    ys, xs = np.nonzero(grace.labels[0] != X.PART_OTHER)
    y0, y1, x0, x1 = ys.min() - 10, ys.max() + 10, xs.min() - 10, xs.max() + 10
    hand = noise_texture(SIZE, 5)
    for t in range(12, 17):  # a textured hand hides the whole face for 5 frames
        frames[t, y0:y1, x0:x1] = hand[y0:y1, x0:x1]
    clip = _with(grace, frames, grace.labels[:30])
    out, facts, notices = _run(frames, E.lipstick(frames[0], clip.part(0, X.PART_LIPS)))
    assert facts["lost"] == 5 and facts["guided"] == 24
    assert notices == ["The face tracker lost the face in 5 of 29 frames; optical flow alone carried the edit there."]
    changed = np.abs(out.astype(np.int16) - frames.astype(np.int16)).max(axis=3) > 16
    assert changed[12:17, y0:y1, x0:x1].mean() < 0.002  # nothing smeared onto the hand
    lips = X.part_scores(out, clip, (X.PART_LIPS,), (X.PART_MOUTH, X.PART_TEETH))
    assert lips.coverage[18:].min() >= 0.6 and lips.coverage[18:].mean() >= 0.75  # found again, lipstick back


def test_several_faces_are_each_guided():
    a = X.expressive_clip("grace_hopper", 24, size=SIZE, mouth_px=0.09 * SIZE, seed=1)
    b = X.expressive_clip("grace_hopper", 24, size=SIZE, mouth_px=0.09 * SIZE, seed=2)
    two = _with(a, np.concatenate([a.frames, b.frames[:, :, ::-1]], axis=2),
                np.concatenate([a.labels, b.labels[:, :, ::-1]], axis=2))
    anchor = E.lipstick(two.frames[0], two.part(0, X.PART_LIPS))
    out, facts, notices = _run(two.frames, anchor)
    assert facts["faces"] == 2 and facts["lost"] == 0
    assert notices == ["2 faces are followed by their landmarks."]
    for half in (slice(0, SIZE), slice(SIZE, 2 * SIZE)):
        side = _with(two, two.frames[:, :, half], two.labels[:, :, half])
        lips = X.part_scores(np.ascontiguousarray(out[:, :, half]), side, (X.PART_LIPS,), (X.PART_MOUTH, X.PART_TEETH))
        assert lips.kept >= 0.6 and lips.landed.max() <= 0.05, (lips.kept, lips.landed.max())  # measured 0.7-0.9


def test_only_the_edited_face_of_two_is_tracked_and_the_other_stays_the_source(monkeypatch):
    """MediaPipe's tracker runs its detector on every frame while it follows fewer faces than it may: after the edit
    picks its face, the tracker is narrowed to that face when on frame 0 it finds just that one, and kept otherwise."""
    narrowed, capacities = [], []
    narrow = face_guide.FaceGuide._narrow

    def spy(self, frame0):
        narrow(self, frame0)
        narrowed.append((self._tracker.max_faces, [tr.last[0] for tr in self.tracks]))

    monkeypatch.setattr(face_guide.FaceGuide, "_narrow", spy)
    a = X.expressive_clip("grace_hopper", 24, size=SIZE, mouth_px=0.09 * SIZE, seed=1)
    b = X.expressive_clip("grace_hopper", 24, size=SIZE, mouth_px=0.09 * SIZE, seed=2)
    two = _with(a, np.concatenate([a.frames, b.frames[:, :, ::-1]], axis=2),
                np.concatenate([a.labels, b.labels[:, :, ::-1]], axis=2))
    for half, other in ((slice(0, SIZE), slice(SIZE, None)), (slice(SIZE, None), slice(0, SIZE))):
        lips = two.part(0, X.PART_LIPS).copy()
        lips[:, other] = False
        narrowed.clear()
        out, facts, _ = _run(two.frames, E.lipstick(two.frames[0], lips))
        assert facts["found"] == 2 and facts["faces"] == 1 and facts["lost"] == 0
        (capacity, xs), = narrowed
        assert capacity in (1, 2) and half.start <= xs[0] < (half.stop or 2 * SIZE)
        side = _with(two, two.frames[:, :, half], two.labels[:, :, half])
        kept = X.part_scores(np.ascontiguousarray(out[:, :, half]), side, (X.PART_LIPS,), (X.PART_MOUTH, X.PART_TEETH))
        assert kept.kept >= 0.8 and kept.landed.max() <= 0.05, (kept.kept, kept.landed.max())  # measured 0.96-1.0
        np.testing.assert_array_equal(out[:, :, other], two.frames[:, :, other])
        capacities.append(capacity)
    assert 1 in capacities  # the right-hand face is the detector's first pick: its tracker follows it alone


def test_a_face_counted_but_not_found_in_frame_0_costs_no_detection_a_frame(grace, makeup, monkeypatch):
    """A face the probes count but frame 0 lacks (one entering later, or the detector's false find): the followed
    face alone is tracked, with the same result."""
    monkeypatch.setattr(face_guide, "count_faces", lambda frames, picks, conf: [1] * (len(picks) - 1) + [2])
    followed = []
    narrow = face_guide.FaceGuide._narrow

    def spy(self, frame0):
        narrow(self, frame0)
        followed.append((self.seen, self._tracker.max_faces))

    monkeypatch.setattr(face_guide.FaceGuide, "_narrow", spy)
    anchor = E.eye_shadow(E.lipstick(grace.frames[0], grace.part(0, X.PART_LIPS)), grace.part(0, X.PART_LID))
    out, facts, _ = _run(grace.frames, anchor)
    assert followed == [(2, 1)] and facts["faces"] == 1
    np.testing.assert_array_equal(out, makeup[True][0])


def test_no_face_gets_a_notice_and_the_flow(tmp_path):
    big = noise_texture(2 * 128, 3)
    frames = np.stack([big[t: t + 128, 2 * t: 2 * t + 128] for t in range(12)])
    anchor = frames[0].copy()
    anchor[40:70, 40:80] = (0.4 * anchor[40:70, 40:80] + [120, 20, 20]).astype(np.uint8)
    guided, facts, notices = _run(frames, anchor)
    assert facts["seen"] == 0 and len(notices) == 1
    assert "No face was found in the clip" in notices[0] and "lip sync cannot be judged" in notices[0]
    np.testing.assert_array_equal(guided, _run(frames, anchor, guided=False)[0])  # the flow, unchanged
    # through the scheduler (edit in the middle: two segments), the notice comes once
    _, clip_notices = schedule.propagate_clip(frames, 6, anchor, FlowPropagator(SETTINGS), SETTINGS, 25.0)
    assert [m for m in clip_notices if "face" in m] == notices


def test_an_edit_away_from_the_face_is_the_flow_alone(grace):
    anchor = grace.frames[0].copy()
    anchor[220:250, 6:40] = (0.5 * anchor[220:250, 6:40] + [0, 90, 0]).astype(np.uint8)  # a badge in the corner
    out, facts, notices = _run(grace.frames[:16], anchor)
    assert facts["found"] == 1 and facts["faces"] == 0 and notices == []  # nothing to follow, nothing tracked
    np.testing.assert_array_equal(out, _run(grace.frames[:16], anchor, guided=False)[0])


def test_notices_sum_over_segments():
    facts = [{"frames": 20, "faces": 1, "found": 1, "seen": 1, "guided": 17, "lost": 3},
             {"frames": 9, "faces": 1, "found": 1, "seen": 1, "guided": 8, "lost": 1}]
    assert face_content.notices(facts) == [
        "The face tracker lost the face in 4 of 29 frames; optical flow alone carried the edit there."]
    assert face_content.notices([{"frames": 0, "faces": 0, "found": 0, "seen": 2, "guided": 0, "lost": 0}]) == [
        ("No face was found in the edited frame, so the preview cannot follow the face seen elsewhere in the clip: "
         "optical flow alone carries the edit.")]
    assert face_content.notices([{}]) == []


def test_the_no_face_notice_reaches_the_cli_on_stderr(tmp_path, capsys):
    from synclora.cli import main
    from synclora.testing.media import write_clip

    big = noise_texture(2 * 96, 4)
    frames = np.stack([big[t: t + 96, t: t + 128] for t in range(16)])
    src = write_clip(tmp_path / "src.mp4", frames, 25)
    edited = frames[5].copy()
    edited[30:60, 40:90] = (0.4 * edited[30:60, 40:90] + [150, 0, 0]).astype(np.uint8)
    import cv2

    cv2.imwrite(str(tmp_path / "edited.png"), edited[:, :, ::-1])
    assert main(["propagate", str(src), "--edited", str(tmp_path / "edited.png"), "--edit-index", "5",
                 "--out", str(tmp_path / "out.mp4"), "--backend", "flow", "--quiet"]) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith("result: ") and "note:" not in cap.out  # stdout: the summary alone
    notes = cap.err.splitlines()
    assert all(line.startswith("note: ") for line in notes), cap.err  # stderr: the notices, nothing else
    assert sum("No face was found in the clip" in n and "lip sync cannot be judged" in n for n in notes) == 1, notes
