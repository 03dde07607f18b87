"""Pair folder layout, discovery, dataset import, and `generate` with the CPU backend."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synclora.data.pairs import Pair, check_name, discover_pairs, import_dataset, read_meta, safe_name, write_meta
from synclora.errors import InputError
from synclora.video import io


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_discovery_sorted_complete_only_and_meta(tmp_path):
    _touch(tmp_path / "b" / "source.mp4")
    _touch(tmp_path / "b" / "target.mp4")
    _touch(tmp_path / "a" / "source.mp4")
    _touch(tmp_path / "a" / "target.mp4")
    _touch(tmp_path / "a" / "edit.png")
    write_meta(tmp_path / "a", {"backend": "flow", "frame": 0})
    _touch(tmp_path / "c" / "source.mp4")  # incomplete: no target yet
    _touch(tmp_path / "d" / "source.mp4")
    _touch(tmp_path / "d" / "target.mp4")
    (tmp_path / "d" / "meta.json").write_text("{not json")
    _touch(tmp_path / ".hidden" / "source.mp4")
    _touch(tmp_path / "notes" / "readme.txt")

    pairs = discover_pairs(tmp_path)
    assert [p.name for p in pairs] == ["a", "b", "d"]
    a, b, d = pairs
    assert a.meta == {"backend": "flow", "frame": 0} and a.edit == tmp_path / "a" / "edit.png"
    assert b.edit is None and b.meta == {}
    assert "not valid JSON" in d.meta["meta_error"]
    assert [p.name for p in discover_pairs(tmp_path, include_incomplete=True)] == ["a", "b", "c", "d"]
    with pytest.raises(InputError, match="not found"):
        discover_pairs(tmp_path / "missing")


def test_names():
    assert check_name("clip_01__glasses") == "clip_01__glasses"
    for bad in ("", "../x", "a/b", ".hidden", "with space"):
        with pytest.raises(InputError):
            check_name(bad)
    assert safe_name("my clip (1)") == "my_clip_1"
    assert check_name(safe_name("..//weird")) == safe_name("..//weird")


def test_meta_roundtrip(tmp_path):
    write_meta(tmp_path, {"settings": {"seed": 3}})
    assert read_meta(tmp_path) == {"settings": {"seed": 3}}
    (tmp_path / "meta.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="object"):
        read_meta(tmp_path)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_import_ltx_trainer_style_dataset(tmp_path, fmt):
    data = tmp_path / "ds"
    for i in range(2):
        _touch(data / "videos" / f"clip{i}.mp4", b"target%d" % i)
        _touch(data / "references" / f"clip{i}.mp4", b"ref%d" % i)
    rows = [{"caption": "3d1t", "media_path": f"videos/clip{i}.mp4", "reference_path": f"references/clip{i}.mp4"}
            for i in range(2)]
    meta = data / f"dataset.{fmt}"
    if fmt == "json":
        meta.write_text(json.dumps(rows))
    elif fmt == "jsonl":
        meta.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        meta.write_text("caption,media_path,reference_path\n" + "".join(
            f"{r['caption']},{r['media_path']},{r['reference_path']}\n" for r in rows))
    pairs = import_dataset(meta, tmp_path / "PAIRS")
    assert [p.name for p in pairs] == ["clip0", "clip1"]
    p = discover_pairs(tmp_path / "PAIRS")[1]
    assert p.source.read_bytes() == b"ref1" and p.target.read_bytes() == b"target1"  # reference → source
    assert p.source.is_symlink() and p.meta["caption"] == "3d1t" and p.meta["origin"] == "import"
    with pytest.raises(InputError, match="no column 'video'"):
        import_dataset(meta, tmp_path / "P2", target_column="video")


def test_plan_jobs_matches_edits_to_clips(tmp_path):
    from synclora.data.generate import plan_jobs

    for name in ("talk.mp4", "walk.mov"):
        _touch(tmp_path / "clips" / name)
    for name in ("talk.png", "talk__glasses.png", "walk__hat.jpg"):
        _touch(tmp_path / "edits" / name)
    jobs = plan_jobs([tmp_path / "clips"], [tmp_path / "edits"])
    assert sorted((j.name, j.source.name, j.edit.name) for j in jobs) == [
        ("talk", "talk.mp4", "talk.png"), ("talk__glasses", "talk.mp4", "talk__glasses.png"),
        ("walk__hat", "walk.mov", "walk__hat.jpg")]
    _touch(tmp_path / "edits" / "nobody.png")
    with pytest.raises(InputError, match="match no source clip"):
        plan_jobs([tmp_path / "clips"], [tmp_path / "edits"])
    single = plan_jobs([tmp_path / "clips" / "talk.mp4"], [tmp_path / "edits" / "nobody.png"])
    assert [j.name for j in single] == ["talk"]


def test_generate_makes_pair_folders_with_the_cpu_backend_and_resumes(tmp_path):
    import cv2

    from synclora.config import PropagationSettings
    from synclora.data.generate import GenerateJob, generate_pairs
    from synclora.testing import faces

    clip = faces.talking_clip("grace_hopper", 9, size=64, blinks=()).frames
    io.write_video(tmp_path / "talk.mp4", clip, 25)
    edit = clip[0].copy()
    edit[40:50, 20:44] = (200, 30, 40)  # lipstick-ish patch
    cv2.imwrite(str(tmp_path / "talk.png"), cv2.cvtColor(edit, cv2.COLOR_RGB2BGR))
    settings = PropagationSettings(backend="flow", quality="preview")
    jobs = [GenerateJob("talk", tmp_path / "talk.mp4", tmp_path / "talk.png")]
    summary = generate_pairs(jobs, tmp_path / "PAIRS", settings)
    assert summary.made == ["talk"] and not summary.failed
    (pair,) = discover_pairs(tmp_path / "PAIRS")
    assert isinstance(pair, Pair) and pair.edit is not None
    src, tgt = io.probe(pair.source), io.probe(pair.target)
    assert src.n_frames == tgt.n_frames == 9 and src.fps == tgt.fps and tgt.size == (64, 64)
    assert pair.meta["backend"] == "flow" and pair.meta["settings"]["backend"] == "flow"
    target0 = io.read_frame(pair.target, 0).astype(int)
    assert np.abs(target0[42:48, 24:40] - np.array([200, 30, 40])).mean() < 40  # the edit is in the target
    again = generate_pairs(jobs, tmp_path / "PAIRS", settings)
    assert again.skipped == ["talk"] and not again.made
    bad = generate_pairs([GenerateJob("bad", tmp_path / "talk.mp4", tmp_path / "missing.png")],
                         tmp_path / "PAIRS", settings)
    assert [n for n, _ in bad.failed] == ["bad"] and "not found" in bad.failed[0][1]
    assert not (tmp_path / "PAIRS" / "bad").exists()


def test_cli_generate_from_dataset_and_missing_inputs(tmp_path, capsys):
    from synclora.cli import main

    _touch(tmp_path / "ds" / "t.mp4", b"t")
    _touch(tmp_path / "ds" / "r.mp4", b"r")
    (tmp_path / "ds" / "rows.jsonl").write_text(json.dumps({"video": "t.mp4", "ref": "r.mp4"}) + "\n")
    args = ["generate", "--from-dataset", str(tmp_path / "ds" / "rows.jsonl"), "--out", str(tmp_path / "P"),
            "--target-column", "video", "--reference-column", "ref", "--copy"]
    assert main(args) == 0
    assert "1 pairs laid out" in capsys.readouterr().out
    copied = tmp_path / "P" / "t" / "source.mp4"
    assert copied.read_bytes() == b"r" and not copied.is_symlink()
    assert main(["generate", "--out", str(tmp_path / "P2")]) == 2
    assert "--sources and --edits" in capsys.readouterr().err
