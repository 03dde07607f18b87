"""The sync report of a result made from several keyframes: each frame judged against the keyframe governing it,
and the verdict names whose part faded."""

from __future__ import annotations

import pytest
from PIL import Image

from synclora import pipeline
from synclora.config import Keyframe, PropagationRequest, PropagationSettings
from synclora.metrics.keyframes import compare_keyframes, governed_parts, verdict
from synclora.propagate import registry
from synclora.testing import media
from synclora.video import io
from tests.test_keyframes import Ideal

N, FPS = 96, 25


def test_governed_parts_follow_the_plan():
    gov = {**{i: 10 for i in range(0, 30)}, **{i: 60 for i in range(40, 80)}}
    assert governed_parts(gov.get, 0, 96) == [(10, 0, 30), (60, 40, 80)]
    assert governed_parts(gov.get, 20, 50) == [(10, 20, 30), (60, 40, 50)]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two looks (red on frames 0–47 from keyframe 20, blue on 48–95 from keyframe 70) by the ideal propagator."""
    d = tmp_path_factory.mktemp("kfreport")
    frames, _ = media.talking_face_frames(N, size=(96, 96), fps=FPS, seed=7, head="still")
    src = media.write_clip(d / "src.mp4", frames, FPS)
    decoded = io.read_frames(src)
    keys = []
    for k, colour, span in ((20, (255, 0, 0), "0:47"), (70, (0, 0, 255), "48:95")):
        img = decoded[k].copy()
        img[30:42, 20:40] = colour
        Image.fromarray(img).save(d / f"k{k}.png")
        keys.append(Keyframe(k, d / f"k{k}.png", span))
    mp = pytest.MonkeyPatch()
    mp.setattr(registry, "get", lambda s: Ideal())
    req = PropagationRequest(source=src, edited=None, out=d / "out.mp4", keyframes=tuple(keys),
                             settings=PropagationSettings(backend="flow", fade=0))
    result = pipeline.run_propagation(req)
    mp.undo()
    return {"src": src, "decoded": decoded, "result": result, "keys": keys, "dir": d}


def test_each_part_is_judged_against_its_own_keyframe(made):
    result = made["result"]
    images = {k.index: str(k.image) for k in made["keys"]}
    parts = compare_keyframes(str(made["src"]), str(result.out), images, result.plan.governing, (0, N))
    assert [(p.index, p.start, p.stop) for p in parts] == [(20, 0, 48), (70, 48, 96)]
    for p in parts:
        assert p.report.lag == 0 and p.report.kept is not None
        assert not p.report.edit_problems, p.report.edit_problems  # the look of its own keyframe, all along
    head, lines = verdict(parts)
    assert head.startswith("lag +0 on every keyframe's part") and len(lines) == 2
    assert lines[1].startswith("keyframe 70 (frames 48–95): lag +0, edit kept")
    assert not any(w in head for w in ("faded", "slid off", "missing")), head


@pytest.mark.slow
def test_the_verdict_names_the_keyframe_whose_part_faded(made):
    out = io.read_frames(made["result"].out)
    out[72:] = made["decoded"][72:]  # keyframe 70's look gone after frame 71: faded
    faded = io.write_video(made["dir"] / "faded.mp4", list(out), FPS)
    images = {k.index: str(k.image) for k in made["keys"]}
    parts = compare_keyframes(str(made["src"]), str(faded), images, made["result"].plan.governing, (0, N))
    head, _ = verdict(parts)
    assert "keyframe 70's part: the edit" in head and "faded" in head, head
    assert "keyframe 20's part" not in head, head
