"""Every path a command writes is checked before any work, in one place (`synclora.paths`): never the source, never
another input, never another output of the same call (whatever the spelling: `..`, symlinks, hard links), the right
type, a folder that exists and can be written, not an existing folder, not a pipe or device. Failures of the disk
itself (full, read-only, permission) become one sentence through `errors.user_error`, and leave nothing behind.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from synclora.cli import main
from synclora.errors import InputError
from synclora.paths import Output, atomic_output, check_input, check_outputs

from support import hostile
from support.privileges import as_plain_user, obeys_permission_bits


def _digest(*paths: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


def _listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.fixture()
def work(base, tmp_path) -> dict:
    """Copies of the base clip and edit in their own folder (so links and collisions can be made to them)."""
    d = tmp_path / "w"
    d.mkdir()
    src, ed = d / "src.mp4", d / "edited.png"
    shutil.copyfile(base["src"], src)
    shutil.copyfile(base["edited"], ed)
    return {"dir": d, "src": src, "edited": ed}


def _propagate(w: dict, capsys, *extra: str, out: Path | None = None, edited: Path | None = None):
    argv = ["propagate", str(w["src"]), "--edited", str(edited or w["edited"]), "--out",
            str(out if out is not None else w["dir"] / "out.mp4"), "--backend", "flow", "--quiet", *extra]
    before = _digest(w["src"], w["edited"])
    listing = _listing(w["dir"])
    rc = main(argv)
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    return rc, cap.err.strip(), before == _digest(w["src"], w["edited"]), listing


def _refused(w, capsys, says: str, *extra: str, **kw) -> None:
    rc, err, same, listing = _propagate(w, capsys, *extra, **kw)
    assert rc == 2 and len(err.splitlines()) == 1 and says in err, err
    assert same, "an input changed"
    assert _listing(w["dir"]) == listing, "a refused run wrote something"


# ------------------------------------------------------------------------------------------------ propagate
def test_side_by_side_onto_the_source_is_refused(work, capsys):
    _refused(work, capsys, "is the source video itself", "--side-by-side", str(work["src"]))


def test_side_by_side_onto_the_result_is_refused(work, capsys):
    _refused(work, capsys, "are the same file", "--side-by-side", str(work["dir"] / "out.mp4"))


def test_same_output_spelled_differently_is_refused(work, capsys):
    other = work["dir"] / "sub"
    other.mkdir()
    _refused(work, capsys, "are the same file", "--side-by-side", str(other / ".." / "out.mp4"))


def test_result_onto_the_edited_image_is_refused(work, capsys):
    ed = work["dir"] / "edit.mp4"  # a PNG under an .mp4 name: readable as an image, a valid result name
    shutil.copyfile(work["edited"], ed)
    _refused(work, capsys, "is the edited image itself", edited=ed, out=ed)


def test_result_onto_a_hard_link_or_symlink_of_the_source_is_refused(work, capsys):
    hard, soft = work["dir"] / "hard.mp4", work["dir"] / "soft.mp4"
    os.link(work["src"], hard)
    soft.symlink_to(work["src"])
    _refused(work, capsys, "is the source video itself", out=hard)
    _refused(work, capsys, "is the source video itself", out=soft)
    _refused(work, capsys, "is the source video itself", "--side-by-side", str(soft))


def test_side_by_side_path_is_checked_like_the_result(work, capsys):
    _refused(work, capsys, ".mp4", "--side-by-side", str(work["dir"] / "sbs.avi"))
    _refused(work, capsys, "does not exist", "--side-by-side", str(work["dir"] / "no" / "sbs.mp4"))


def test_existing_folder_named_mp4_is_refused_before_the_run(work, capsys, monkeypatch):
    (work["dir"] / "out.mp4").mkdir()
    (work["dir"] / "sbs.mp4").mkdir()
    from synclora.propagate import flow

    monkeypatch.setattr(flow.FlowPropagator, "track", lambda *a, **k: pytest.fail("the run started"))
    _refused(work, capsys, "existing folder")
    _refused(work, capsys, "existing folder", "--side-by-side", str(work["dir"] / "sbs.mp4"),
             out=work["dir"] / "o2.mp4")


def test_fifo_as_result_is_refused_and_nothing_blocks(work, capsys):
    os.mkfifo(work["dir"] / "out.mp4")
    _refused(work, capsys, "named pipe")


def test_source_that_is_a_fifo_or_folder_says_what_it_is_not_not_found(work, capsys):
    os.mkfifo(work["dir"] / "pipe.mp4")
    (work["dir"] / "folder.mp4").mkdir()
    for path, says in ((work["dir"] / "pipe.mp4", "named pipe"), (work["dir"] / "folder.mp4", "is a folder")):
        rc = main(["propagate", str(path), "--edited", str(work["edited"]), "--out", str(work["dir"] / "o.mp4"),
                   "--backend", "flow", "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and says in err and "not found" not in err


def test_read_only_folder_is_refused_before_the_run(work, capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with as_plain_user():  # root (CI) would write into it anyway
            assert obeys_permission_bits(ro)
            _refused(work, capsys, "cannot write", out=ro / "out.mp4")
    finally:
        ro.chmod(0o700)


def test_full_disk_mid_write_is_one_sentence_and_leaves_nothing(work):
    """A disk that fills up while the result is written (RLIMIT_FSIZE: the write fails with EFBIG after 1 KB)."""
    out = work["dir"] / "out.mp4"
    before = _digest(work["src"], work["edited"])
    listing = _listing(work["dir"])
    r = hostile.run_bounded(main, ["propagate", str(work["src"]), "--edited", str(work["edited"]), "--out", str(out),
                                   "--side-by-side", str(work["dir"] / "sbs.mp4"), "--backend", "flow", "--quiet"],
                            limit_mb=2048, file_limit=1024)
    assert r.rc == 2 and "Traceback" not in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1 and "larger than this file system" in r.err, r.err
    assert _listing(work["dir"]) == listing and _digest(work["src"], work["edited"]) == before


@pytest.mark.parametrize("code,says", [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only file system"),
                                       (errno.EACCES, "permission denied"), (errno.EIO, "input/output error")])
def test_disk_failures_while_writing_are_sentences(work, capsys, monkeypatch, code, says):
    """The OS refuses a write midway (what a full, read-only or failing disk does): one line, nothing left."""
    from synclora.video import encode

    real = encode.yuv420_frame
    calls = {"n": 0}

    def failing(planes):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(code, os.strerror(code), str(work["dir"] / "out.mp4"))
        return real(planes)

    monkeypatch.setattr(encode, "yuv420_frame", failing)
    rc, err, same, listing = _propagate(work, capsys, "--side-by-side", str(work["dir"] / "sbs.mp4"))
    assert rc == 2 and len(err.splitlines()) == 1 and says in err and "out.mp4" in err, err
    assert same and _listing(work["dir"]) == listing


# ------------------------------------------------------------------------------------------------ other commands
def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    return rc, cap.out, cap.err.strip()


def test_report_outputs_are_checked_before_measuring(work, capsys, monkeypatch):
    import synclora.metrics.compare as report

    monkeypatch.setattr(report, "compare_videos", lambda *a, **k: pytest.fail("measured before the paths were"))
    d, src = work["dir"], str(work["src"])
    (d / "plots").mkdir()
    os.mkfifo(d / "r.json")
    for extra, says in ((["--plot", str(d / "plots")], "existing folder"),  # never prints a path it did not write
                        (["--plot", str(d / "r.txt")], ".png"),
                        (["--json", str(d / "plots")], "existing folder"),
                        (["--json", str(d / "r.json")], "named pipe"),
                        (["--landmarks", str(d / "view.avi")], ".mp4"),
                        (["--landmarks", str(work["src"])], "is the source video itself"),
                        (["--json", str(d / "x.json"), "--plot", str(d / "x.png"), "--edited", str(d / "x.png")],
                         "not found")):
        rc, out, err = _cli(["report", src, src, *extra], capsys)
        assert rc == 2 and says in err and out == "", err
    # --edited may not be overwritten by --plot
    rc, out, err = _cli(["report", src, src, "--edited", str(work["edited"]), "--plot", str(work["edited"])], capsys)
    assert rc == 2 and "is the edited image itself" in err


def test_report_writes_what_it_prints_and_nothing_else(work, capsys):
    d, src = work["dir"], str(work["src"])
    rc, out, _ = _cli(["report", src, src, "--json", str(d / "new" / "r.json"), "--plot", str(d / "new" / "r.png")],
                      capsys)
    assert rc == 0
    printed = {line.split(": ", 1)[1] for line in out.splitlines() if line.startswith(("json: ", "plot: "))}
    assert printed == {str(d / "new" / "r.json"), str(d / "new" / "r.png")}
    assert all(Path(p).is_file() for p in printed) and _listing(d / "new") == {"r.json", "r.png"}


def test_curate_outputs_never_overwrite_a_pair(tmp_path, capsys):
    pairs = tmp_path / "pairs"
    (pairs / "a").mkdir(parents=True)
    for f in ("source.mp4", "target.mp4", "edit.png"):
        (pairs / "a" / f).write_bytes(b"x")
    before = _digest(*(pairs / "a").iterdir())
    for extra, says in ((["--out", str(pairs / "a" / "edit.jsonl")], "is a file of pair a itself"),  # its plot
                        (["--out", str(tmp_path / "m.jsonl"), "--plot", str(pairs / "a" / "edit.png")],
                         "is a file of pair a itself"),
                        (["--out", str(tmp_path / "m.txt")], ".jsonl"),
                        (["--out", str(pairs)], ".jsonl")):
        rc, _, err = _cli(["curate", str(pairs), "--quiet", *extra], capsys)
        assert rc == 2 and says in err, err
    assert _digest(*(pairs / "a").iterdir()) == before


def test_generate_and_train_and_fetch_check_their_folders_first(work, tmp_path, capsys):
    src = str(work["src"])
    rc, _, err = _cli(["generate", "--sources", src, "--edits", str(work["edited"]), "--out", src], capsys)
    assert rc == 2 and "existing file, not a folder" in err
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    rc, _, err = _cli(["train", "--data", str(pairs), "--out", f"{pairs}/./", "--model", "tiny"], capsys)
    assert rc == 2 and "is the pairs folder (--data) itself" in err
    rc, _, err = _cli(["fetch-weights", "--to", src], capsys)
    assert rc == 2 and "existing file, not a folder" in err
    rc, _, err = _cli(["cache-prompt", "--out", str(tmp_path)], capsys)
    assert rc == 2 and ".safetensors" in err
    assert _digest(work["src"]) == _digest(work["src"])


def test_generate_never_turns_an_input_into_a_pair_file(work, tmp_path, capsys):
    """A source clip that is already PAIRS/<name>/target.mp4 would be replaced by the new target."""
    pairs = tmp_path / "pairs"
    (pairs / "target").mkdir(parents=True)
    clip = pairs / "target" / "target.mp4"
    shutil.copyfile(work["src"], clip)
    before = _digest(clip)
    rc, out, err = _cli(["generate", "--sources", str(clip), "--edits", str(work["edited"]), "--out", str(pairs),
                         "--overwrite", "--backend", "flow"], capsys)
    assert rc == 2 and "is the source clip itself" in out, out
    assert _digest(clip) == before


# ------------------------------------------------------------------------------------------------ the one place
def test_check_outputs_unit(tmp_path):
    a = tmp_path / "a.mp4"
    a.write_bytes(b"1")
    (tmp_path / "x").mkdir()
    with pytest.raises(InputError, match="is the input itself"):
        check_outputs([Output(tmp_path / "x" / ".." / "a.mp4", "--out", (".mp4",))], [(a, "the input")])
    with pytest.raises(InputError, match="needs a file name"):
        check_outputs([Output(Path(""), "--out", (".mp4",))])
    with pytest.raises(InputError, match="is a device"):
        check_outputs([Output(Path("/dev/null"), "--out")])
    check_outputs([Output(tmp_path / "new" / "deeper" / "r.json", "--json", (".json",), make_parents=True)])
    check_outputs([Output(tmp_path / "run", "--out", folder=True)], [(a, "the input")])
    assert _listing(tmp_path) == {"a.mp4", "x"}  # checking writes nothing that stays
    with pytest.raises(InputError, match="is a folder"):
        check_input(tmp_path, "source video")


def test_atomic_output_leaves_nothing_on_failure_or_signal(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    for exc in (ValueError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with atomic_output(target) as tmp:
                tmp.write_text("half")
                raise exc
        assert target.read_text() == "old" and _listing(tmp_path) == {"r.json"}
    with atomic_output(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and _listing(tmp_path) == {"r.json"}


def test_symlink_loops_are_sentences_as_input_and_as_output(work, capsys):
    loop = work["dir"] / "loop.mp4"
    loop.symlink_to(loop)
    _refused(work, capsys, "loop of symbolic links", out=loop)
    rc = main(["propagate", str(loop), "--edited", str(work["edited"]), "--out", str(work["dir"] / "o.mp4"),
               "--backend", "flow", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "loop of symbolic links" in err and "Traceback" not in err


def test_unreadable_edited_image_says_permission_denied(work, capsys):
    work["edited"].chmod(0)
    try:
        with as_plain_user():  # root (CI) reads any file otherwise
            assert obeys_permission_bits(work["edited"])
            rc = main(["propagate", str(work["src"]), "--edited", str(work["edited"]), "--out",
                       str(work["dir"] / "o.mp4"), "--backend", "flow", "--quiet"])
    finally:
        work["edited"].chmod(0o600)
    err = capsys.readouterr().err
    assert rc == 2 and "permission denied" in err and not (work["dir"] / "o.mp4").exists()
