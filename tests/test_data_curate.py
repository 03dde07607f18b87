"""Curation on real-face pairs MediaPipe detects: keeps a synced pair, rejects a lagged and a frozen-mouth one,
reports unreadable pairs without stopping, resumes without re-measuring, and re-decides under new thresholds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synclora.data.curate import CurationThresholds, curate, decide
from synclora.data.manifest import read_manifest
from synclora.face import parts as fp
from synclora.testing import faces
from synclora.video import io

N = 48  # frames: blinks at 12 and 40, talking throughout


def _recolour(frames: np.ndarray) -> np.ndarray:
    """An appearance edit that keeps the motion: warm colour shift (the target of a perfect pair)."""
    f = frames.astype(np.float32) * np.array([1.0, 0.85, 0.7]) + np.array([20, 0, 0])
    return np.clip(f, 0, 255).astype(np.uint8)


def _mouth_box(size: int = 256) -> tuple[int, int, int, int]:
    _, pts = faces.portrait("grace_hopper", size)
    x0, x1 = int(pts[fp.MOUTH_CORNERS[0], 0] - 12), int(pts[fp.MOUTH_CORNERS[1], 0] + 12)
    y0, y1 = int(pts[fp.LIP_TOP, 1] - 8), int(pts[fp.CHIN, 1] + 6)
    return x0, y0, x1, y1


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    clip = faces.talking_clip("grace_hopper", N, seed=0).frames
    targets = {
        "good": _recolour(clip),
        "lagged": _recolour(faces.delay(clip, 2)),
        "frozen_mouth": _recolour(faces.freeze_region(clip, _mouth_box())),
    }
    for name, target in targets.items():
        d = root / name
        d.mkdir()
        io.write_video(d / "source.mp4", clip, 25)
        io.write_video(d / "target.mp4", target, 25)
    (root / "broken").mkdir()
    io.write_video(root / "broken" / "source.mp4", clip[:10], 25)
    (root / "broken" / "target.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (root / "half").mkdir()
    io.write_video(root / "half" / "source.mp4", clip[:10], 25)
    return root


@pytest.fixture(scope="module")
def curated(pairs, tmp_path_factory):
    manifest = tmp_path_factory.mktemp("out") / "manifest.jsonl"
    calls = []

    def counting_scorer(pair, th):
        from synclora.data.curate import score_pair

        calls.append(pair.name)
        return score_pair(pair, th)

    summary = curate(pairs, manifest, scorer=counting_scorer)
    return manifest, summary, calls


@pytest.mark.slow
def test_keeps_synced_rejects_lagged_and_frozen_mouth(curated):
    manifest, summary, _ = curated
    recs = read_manifest(manifest)
    assert recs["good"]["keep"], recs["good"]
    assert not recs["lagged"]["keep"] and recs["lagged"]["scores"]["lag"] == 2
    assert any("lags by 2" in r for r in recs["lagged"]["reasons"])
    assert not recs["frozen_mouth"]["keep"]
    assert any(r.startswith("mouth") for r in recs["frozen_mouth"]["reasons"]), recs["frozen_mouth"]["reasons"]
    good = recs["good"]["scores"]
    assert good["mouth"] > 0.9 and good["lag"] == 0 and good["blinks_source"] == 2 == good["blinks_target"]
    assert (summary.kept, summary.rejected, summary.errors, summary.total) == (1, 2, 2, 5)


@pytest.mark.slow
def test_manifest_lines_and_plot(curated):
    manifest, summary, _ = curated
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert [r["name"] for r in lines] == ["broken", "frozen_mouth", "good", "half", "lagged"]  # one line per pair
    for r in lines:
        assert {"name", "keep", "reasons", "scores", "thresholds"} <= set(r)
    assert summary.plot is not None and summary.plot.stat().st_size > 10_000
    assert summary.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_unreadable_and_incomplete_pairs_are_reported_not_fatal(curated):
    manifest, _, _ = curated
    recs = read_manifest(manifest)
    assert recs["broken"]["keep"] is False and recs["broken"]["scores"] is None and recs["broken"]["error"]
    assert "target.mp4 is missing" in recs["half"]["error"]


@pytest.mark.slow
def test_resume_measures_nothing_again_and_new_thresholds_redecide(curated, pairs):
    manifest, _, calls = curated
    measured_once = sorted(calls)
    assert measured_once == ["broken", "frozen_mouth", "good", "lagged"]  # "half" fails before measuring
    again = []
    loose = CurationThresholds(max_abs_lag=2, min_mouth_corr=-1.0, min_eyes_corr=-1.0, min_motion_ratio=0.0)
    summary = curate(pairs, manifest, loose, scorer=lambda p, th: again.append(p.name) or {})
    # Scored pairs come from the manifest; only the unreadable ones are tried again.
    assert sorted(again) == ["broken"] and summary.measured == 1
    recs = read_manifest(manifest)
    assert recs["lagged"]["keep"] and recs["good"]["keep"]
    curate(pairs, manifest, plot=None, scorer=lambda p, th: {})  # defaults again: back to the strict decision
    assert not read_manifest(manifest)["lagged"]["keep"]


def test_decide_rules():
    th = CurationThresholds()
    ok = dict(pose=0.99, mouth=0.95, gaze=None, eyes=0.97, blink=1.0, lag=0, motion_ratio=0.9, identity=0.2,
              face_lost=0.0, source_faces=48)
    assert decide(ok, th) == (True, [])
    keep, why = decide({**ok, "gaze": None, "pose": None}, th)  # cues the source does not move never reject
    assert keep
    assert decide({**ok, "lag": -1}, th)[1] == ["target leads by 1 frame(s)"]
    assert not decide({**ok, "motion_ratio": 0.1, "motion_ratio_cue": "mouth"}, th)[0]
    assert not decide({**ok, "identity": 0.7}, th)[0]
    assert decide({**ok, "source_faces": 0}, th) == (False, ["no face in the source"])


@pytest.mark.slow
def test_cli_curate_with_threshold_override(pairs, tmp_path, curated, capsys):
    from synclora.cli import main

    manifest, _, _ = curated
    out = tmp_path / "m.jsonl"
    out.write_text(manifest.read_text())  # resume from the measured manifest: no MediaPipe run needed
    rc = main(["curate", str(pairs), "--out", str(out), "--quiet", "--no-plot", "--threshold", "max_abs_lag=3",
               "--threshold", "min_mouth_corr=-1", "--threshold", "min_eyes_corr=-1"])
    assert rc == 0
    assert "2 of 5 pairs kept" in capsys.readouterr().out
    assert main(["curate", str(pairs), "--out", str(out), "--threshold", "min_nothing=1"]) == 2


EDIT_N, EDIT_K = 40, 10


@pytest.fixture(scope="module")
def edit_pairs(tmp_path_factory):
    """Pairs whose edit hides cues (sunglasses, a mask over the mouth) or only recolours them (lipstick, eye shadow):
    a right target, one 3 frames late and one frozen on the edited frame each; a lipstick that fades for 8 frames;
    and a right sunglasses pair without edit.png (the target's frame 0 is then the edit)."""
    from PIL import Image

    from synclora.data.pairs import write_meta

    root = tmp_path_factory.mktemp("edit_pairs")
    src = faces.talking_clip("grace_hopper", EDIT_N).frames

    def add(name: str, target: np.ndarray, edited: np.ndarray | None) -> None:
        d = root / name
        d.mkdir()
        io.write_video(d / "source.mp4", src, 25)
        io.write_video(d / "target.mp4", target, 25)
        if edited is not None:
            Image.fromarray(edited).save(d / "edit.png")
            # eye-shadow folders carry the key generate wrote before the rename ("frame"): still read
            write_meta(d, {"frame" if name.startswith("eye_shadow") else "edit_index": EDIT_K})

    for edit in ("sunglasses", "mouth_mask", "lipstick", "eye_shadow"):
        good = faces.talking_clip("grace_hopper", EDIT_N, edit=edit).frames
        add(f"{edit}-right", good, good[EDIT_K])
        add(f"{edit}-late", faces.delay(good, 3), good[EDIT_K])
        add(f"{edit}-frozen", np.repeat(good[EDIT_K: EDIT_K + 1], EDIT_N, axis=0), good[EDIT_K])
        if edit == "lipstick":
            faded = good.copy()
            faded[24:32] = src[24:32]
            add("lipstick-faded", faded, good[EDIT_K])
        if edit == "sunglasses":
            add("sunglasses-no-edit-png", good, None)
    return root


@pytest.mark.slow
def test_curation_keeps_right_edit_pairs_and_rejects_late_frozen_and_faded(edit_pairs, tmp_path):
    summary = curate(edit_pairs, tmp_path / "m.jsonl", plot=tmp_path / "m.png")
    recs = read_manifest(tmp_path / "m.jsonl")
    for name, rec in recs.items():
        assert rec["keep"] == name.endswith(("-right", "-no-edit-png")), (name, rec["reasons"], rec["scores"])
    sg = recs["sunglasses-right"]["scores"]
    assert sg["hidden"] == ["left_eye", "right_eye"] and sg["edit_index"] == EDIT_K
    assert sg["eyes"] is None and sg["gaze"] is None and sg["blink"] is None  # not judged, not failed
    assert sg["mouth"] > 0.9 and sg["pose"] > 0.8 and sg["edit_kept"] > 0.8
    assert recs["mouth_mask-right"]["scores"]["hidden"] == ["mouth"]
    assert recs["mouth_mask-right"]["scores"]["mouth"] is None
    assert recs["lipstick-right"]["scores"]["hidden"] == [] and recs["lipstick-right"]["scores"]["mouth"] > 0.9
    assert recs["eye_shadow-right"]["scores"]["edit_index"] == EDIT_K  # from the old "frame" key
    no_png = recs["sunglasses-no-edit-png"]["scores"]
    assert no_png["hidden"] == ["left_eye", "right_eye"] and no_png["edit_index"] == 0 and no_png["identity"] is None
    # Each bad pair is rejected for what stays visible, never for what the edit hides.
    for edit in ("sunglasses", "mouth_mask", "lipstick", "eye_shadow"):
        assert any("lags by 3" in r for r in recs[f"{edit}-late"]["reasons"]), recs[f"{edit}-late"]["reasons"]
        hidden = recs[f"{edit}-right"]["scores"]["hidden"]
        for rec in (recs[f"{edit}-late"], recs[f"{edit}-frozen"]):
            for reason in rec["reasons"]:
                assert not (("eyes" in hidden or "left_eye" in hidden) and reason.startswith(("eyes", "gaze",
                                                                                              "blink"))), reason
                assert not ("mouth" in hidden and reason.startswith("mouth")), reason
    faded = recs["lipstick-faded"]
    assert len(faded["reasons"]) == 1 and faded["scores"]["edit_kept"] < 0.1, faded
    assert faded["reasons"][0].endswith("< 0.5 (the edit on the lips faded on frames 24–31)"), faded
    assert summary.reasons.get("edit", 0) >= 1  # frozen recolours also leave their place on the moving face
    assert summary.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
