"""A failed run leaves what the user had exactly as it was, and its sentence is one honest line.

- All or nothing (`paths.staged_outputs`): a run's outputs are written under hidden names and moved into place
  together at the end; a file already at an output path is replaced only by a complete new one, never deleted.
- Sentences: a file name with a newline or terminal escape sequences is printed escaped (it cannot add lines or
  retitle the terminal); a full disk is said naming the user's file, not the hidden temp file, and `report` prints
  nothing of MediaPipe's start-up before it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from synclora import paths
from synclora.cli import main
from synclora.errors import brief, shown, user_name
from synclora.testing import media
from synclora.video import io

from support import hostile


def _digest(folder: Path) -> dict[str, str]:
    """Every file in `folder` (hidden ones included) and its content."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture()
def work(base, tmp_path) -> dict:
    d = tmp_path / "w"
    d.mkdir()
    shutil.copyfile(base["src"], d / "src.mp4")
    shutil.copyfile(base["edited"], d / "edited.png")
    (d / "old.mp4").write_bytes(b"the user's earlier result")
    (d / "old-sbs.mp4").write_bytes(b"the user's earlier side by side")
    return {"dir": d, "src": d / "src.mp4", "edited": d / "edited.png", "out": d / "old.mp4",
            "sbs": d / "old-sbs.mp4"}


def _argv(w: dict, *extra: str) -> list[str]:
    return ["propagate", str(w["src"]), "--edited", str(w["edited"]), "--out", str(w["out"]), "--side-by-side",
            str(w["sbs"]), "--backend", "flow", "--quiet", *extra]


# ------------------------------------------------------------------------------------------------ all or nothing
def test_a_failed_side_by_side_keeps_the_files_that_were_there(work, monkeypatch, capsys):
    """The side-by-side fails after the result was written: both paths keep the user's earlier files."""
    from synclora.video import encode

    before = _digest(work["dir"])
    real = encode.write_video
    calls = {"n": 0}

    def second_fails(path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(encode, "write_video", second_fails)
    monkeypatch.setattr(io, "write_video", second_fails)
    assert main(_argv(work)) == 2
    err = capsys.readouterr().err
    assert "no space left on the disk to write old-sbs.mp4" in err and ".part" not in err
    assert _digest(work["dir"]) == before  # nothing new, nothing lost, no hidden file left


def test_a_full_disk_in_a_real_process_keeps_the_files_that_were_there(work):
    """A real process whose files may not grow past 3.5 KB: the tiny result fits, its side-by-side (4 KB) does not."""
    before = _digest(work["dir"])
    r = hostile.run_bounded(main, _argv(work), limit_mb=4096, file_limit=3500, timeout=300)
    assert r.rc == 2 and "Traceback" not in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1 and "old-sbs.mp4" in r.err and ".part" not in r.err, r.err
    assert _digest(work["dir"]) == before


def test_a_successful_run_replaces_both_files(work, capsys):
    assert main(_argv(work)) == 0
    assert io.probe(work["out"]).n_frames == io.probe(work["src"]).n_frames
    assert io.probe(work["sbs"]).width >= 2 * io.probe(work["src"]).width
    assert not [p for p in work["dir"].iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("fail_at", [0, 1, 2])
def test_commit_puts_back_what_it_replaced_when_a_move_fails(tmp_path, monkeypatch, fail_at):
    """Three outputs moved into place; the move number `fail_at` fails: the ones before it get their old file back,
    the one that had none is removed, nothing hidden is left."""
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    a.write_text("old a")
    c.write_text("old c")  # b is new
    real, calls = os.replace, {"n": 0}

    def flaky(src, dst):
        if Path(dst).name in ("a.txt", "b.txt", "c.txt") and Path(src).name.endswith(".part"):
            calls["n"] += 1
            if calls["n"] == fail_at + 1:
                raise OSError(5, "Input/output error", str(src))
        return real(src, dst)

    monkeypatch.setattr(paths.os, "replace", flaky)
    with pytest.raises(OSError):
        with paths.staged_outputs(a, b, c) as staged:
            for s, text in zip(staged, ("new a", "new b", "new c")):
                s.write_text(text)
    assert a.read_text() == "old a" and c.read_text() == "old c" and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "c.txt"]


def test_staged_outputs_on_a_stop_signal_leaves_everything_as_it_was(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with paths.staged_outputs(a, None) as (s, none):
            assert none is None and s.parent == tmp_path and s.name.startswith(".a.txt.")
            s.write_text("half")
            raise KeyboardInterrupt
    assert a.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


@pytest.mark.parametrize("flag,name,limit", [("--plot", "plot.png", 6000), ("--landmarks", "lm.mp4", 1024)])
def test_report_keeps_an_earlier_json_when_the_disk_fills_up(base, tmp_path, flag, name, limit):
    """`report --json` with a plot or a landmark view on a disk that fills up while writing it (the landmark view
    while the faces are still being measured): the JSON that was there stays, and the one line said is the sentence,
    naming the file (no MediaPipe start-up lines before it)."""
    d = tmp_path / "r"
    d.mkdir()
    (d / "old.json").write_text('{"earlier": true}')
    before = _digest(d)
    r = hostile.run_bounded(main, ["report", str(base["src"]), str(base["src"]), "--json", str(d / "old.json"),
                                   flag, str(d / name)], limit_mb=4096, file_limit=limit, timeout=300)
    assert r.rc == 2 and "Traceback" not in r.err, r.err
    assert r.err.strip().splitlines() == [r.err.strip()] and r.err.startswith("error: "), r.err
    assert name in r.err and ".part" not in r.err
    assert _digest(d) == before


# ------------------------------------------------------------------------------------------------------ sentences
HOSTILE_NAMES = [
    "line\nerror: all is fine.mp4",  # a second line that looks like ours
    "title\x1b]0;owned\x07.mp4",  # retitles a terminal
    "red\x1b[31mtext\x1b[0m.mp4",  # colours it
    "back\rspace.mp4",
    "rtl\u202egnp.mp4",  # a bidi override that shows the name reversed
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=["newline", "osc-title", "sgr-colour", "carriage", "bidi"])
def test_file_names_in_sentences_are_escaped(tmp_path, base, name, capsys):
    bad = tmp_path / name
    bad.write_bytes(b"not a video at all")
    for argv in (["info", str(bad)],
                 ["propagate", str(bad), "--edited", str(base["edited"]), "--out", str(tmp_path / "r.mp4"),
                  "--backend", "flow", "--quiet"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.endswith("\n"), repr(err)
        assert not any(c in err[:-1] for c in "\x1b\x07\r\n\u202e"), repr(err)
        assert shown(name) in err  # the name is still there, escaped, so the user can find the file


def test_a_valid_file_with_a_hostile_name_is_summarised_escaped(tmp_path, base, capsys):
    clip = tmp_path / "clip\x1b]0;owned\x07.mp4"
    shutil.copyfile(base["src"], clip)
    assert main(["info", str(clip)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b]0;owned\\x07" in out


def test_shown_and_brief_bound_what_is_echoed():
    assert len(shown("x" * 10**6)) < 2100
    assert len(brief("y" * 10**7)) < 70 and len(brief(list(range(10**5)))) < 70
    assert shown("plain é 名 text") == "plain é 名 text"


@pytest.mark.parametrize("temp,user", [(".r.mp4.0a1b2c3d.part", "r.mp4"), ("..r.mp4.0a1b2c3d.part.9f8e7d6c.part",
                                                                             "r.mp4"), ("r.mp4", "r.mp4"),
                                       (".hidden.mp4", ".hidden.mp4")])
def test_temp_names_are_said_as_the_users_file(temp, user):
    assert user_name(temp) == user


def test_a_full_disk_sentence_names_the_users_file(base, tmp_path):
    """A real process whose files may not grow past 1 KB: the sentence names r.mp4, not its hidden temp file."""
    r = hostile.run_bounded(main, ["propagate", str(base["src"]), "--edited", str(base["edited"]), "--out",
                                   str(tmp_path / "r.mp4"), "--backend", "flow", "--quiet"],
                            limit_mb=4096, file_limit=1024, timeout=300)
    assert r.rc == 2 and "r.mp4" in r.err and ".part" not in r.err, r.err
    assert list(tmp_path.iterdir()) == []


def test_media_of_the_tables_still_work(tmp_path):
    """The audio writer the tables use (packed frames) still makes the stereo clips every other test reads."""
    p = media.write_clip(tmp_path / "a.mp4", media.indexed_frames(5, size=(32, 32)), 25, audio=media.tone(0.2))
    assert io.probe(p).channels == 2
