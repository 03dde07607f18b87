"""Stop signals at several moments leave nothing behind: SIGTERM, SIGHUP and SIGINT during reading, propagating,
writing the result and writing the side-by-side end the CLI with 128+N, one line, no result, no hidden `.part` file
and the inputs untouched; a served app stopped with SIGTERM deletes its session folders.

The in-process tests deliver the signal to this process at an exact moment (a hook at that step); the slow ones
send it from outside to a real `python -m synclora` and a real `python app.py`, as a Space or a queue worker does.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from synclora.cli import main
from synclora.signals import Terminated, stop_cleanly
from synclora.testing import media
from synclora.video import io

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]


def _digest(*paths: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _everything(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _send(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs at the next bytecode of the main thread


# ------------------------------------------------------------------------------------------------ in-process
def test_write_video_stopped_midway_removes_its_temp_file(tmp_path):
    frames = media.indexed_frames(20, size=(64, 48))

    def stream():
        for i, f in enumerate(frames):
            if i == 7:
                _send(signal.SIGTERM)
            yield f

    with pytest.raises(Terminated) as err:
        with stop_cleanly():
            io.write_video(tmp_path / "out.mp4", stream(), 25)
    assert err.value.exit_code == 128 + signal.SIGTERM
    assert _everything(tmp_path) == set()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


def test_a_second_signal_cannot_interrupt_the_clean_up(tmp_path):
    from synclora.paths import atomic_output

    with pytest.raises(Terminated):
        with stop_cleanly():
            with atomic_output(tmp_path / "r.json") as tmp:
                tmp.write_text("half")
                _send(signal.SIGTERM)
    # while unwinding the handlers ignored signals; afterwards they are back to what they were
    assert _everything(tmp_path) == set()


# Moments of a propagation, each reached through a hook that sends the signal there.
def _at_propagate(monkeypatch, sig):
    from synclora.propagate import flow

    real = flow.FlowPropagator.track

    def hooked(self, *a, **k):
        _send(sig)
        return real(self, *a, **k)

    monkeypatch.setattr(flow.FlowPropagator, "track", hooked)


def _at_frame(n: int):
    def hook(monkeypatch, sig):
        from synclora.video import encode

        real = encode.yuv420_frame
        calls = {"n": 0}

        def hooked(planes):
            calls["n"] += 1
            if calls["n"] == n:
                _send(sig)
            return real(planes)

        monkeypatch.setattr(encode, "yuv420_frame", hooked)

    return hook


def _at_reading(monkeypatch, sig):
    from synclora.video import lazy

    real = lazy.iter_lazy_frames  # what a propagation decodes its source with

    def hooked(*a, **k):
        _send(sig)
        return real(*a, **k)

    monkeypatch.setattr(lazy, "iter_lazy_frames", hooked)


MOMENTS = {"reading": _at_reading, "propagating": _at_propagate, "writing-result": _at_frame(3),
           "writing-side-by-side": _at_frame(8 + 3)}  # the base clip has 8 frames


@pytest.mark.parametrize("sig", SIGNALS, ids=[s.name for s in SIGNALS])
@pytest.mark.parametrize("moment", list(MOMENTS))
def test_cli_stopped_at_any_moment_leaves_nothing(moment, sig, base, tmp_path, monkeypatch, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = _digest(base["src"], base["edited"])
    MOMENTS[moment](monkeypatch, sig)
    rc = main(["propagate", str(base["src"]), "--edited", str(base["edited"]), "--out", str(out_dir / "r.mp4"),
               "--side-by-side", str(out_dir / "sbs.mp4"), "--backend", "flow", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 128 + sig, err
    assert len(err.splitlines()) == 1 and sig.name in err and "Traceback" not in err
    assert _everything(out_dir) == set(), "a stopped run left files behind"
    assert _digest(base["src"], base["edited"]) == before


def test_report_stopped_while_measuring_writes_no_json(base, tmp_path, monkeypatch, capfd):
    from synclora.metrics import landmarks

    real = landmarks.CueStream.add

    def hooked(self, frame):  # the signal lands while a frame is being measured
        _send(signal.SIGTERM)
        return real(self, frame)

    monkeypatch.setattr(landmarks.CueStream, "add", hooked)
    rc = main(["report", str(base["src"]), str(base["src"]), "--json", str(tmp_path / "r.json"),
               "--plot", str(tmp_path / "r.png")])
    err = capfd.readouterr().err.strip()  # file descriptor 2: the face landmarker's own log would land there
    assert rc == 143 and "Traceback" not in err and err.splitlines() == ["stopped by SIGTERM; nothing was left "
                                                                       "half-written"], err
    assert _everything(tmp_path) == set()


def test_curate_stopped_keeps_only_whole_lines_and_resumes(tmp_path, monkeypatch):
    import json

    from synclora.data import curate as cur

    pairs = tmp_path / "pairs"
    for name in "abc":
        (pairs / name).mkdir(parents=True)
        for f in ("source.mp4", "target.mp4"):
            (pairs / name / f).write_bytes(b"x")
    scores = {"pose": 0.9, "lag": 0, "source_faces": 10}

    def scorer(pair, th):
        if pair.name == "b":
            _send(signal.SIGTERM)
        return scores

    manifest = tmp_path / "m.jsonl"
    with pytest.raises(Terminated):
        with stop_cleanly():
            cur.curate(pairs, manifest, plot=None, scorer=scorer)
    lines = manifest.read_text().splitlines()
    assert [json.loads(x)["name"] for x in lines] == ["a"]  # whole lines only: the interrupted pair is absent
    assert {p.name for p in tmp_path.iterdir()} == {"pairs", "m.jsonl"}  # no temp file beside the manifest
    summary = cur.curate(pairs, manifest, plot=None, scorer=lambda p, th: scores)
    assert summary.measured == 2 and summary.total == 3


# ------------------------------------------------------------------------------------------------ real processes
def _clip(tmp_path: Path) -> tuple[Path, Path]:
    from PIL import Image

    frames, _ = media.talking_face_frames(120, size=(192, 144), seed=1)
    src = media.write_clip(tmp_path / "src.mp4", frames, 25, audio=media.tone(120 / 25))
    edited = tmp_path / "edited.png"
    Image.fromarray(io.read_frame(src, 0)).save(edited)
    return src, edited


def _wait_for(pred, proc, timeout=180.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if pred():
            return True
        time.sleep(0.005)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("sig,when", [(signal.SIGTERM, "result"), (signal.SIGHUP, "side-by-side")])
def test_real_process_stopped_while_writing(tmp_path, sig, when):
    src, edited = _clip(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = _digest(src, edited)
    cmd = [sys.executable, "-m", "synclora", "propagate", str(src), "--edited", str(edited), "--out",
           str(out_dir / "result.mp4"), "--side-by-side", str(out_dir / "sbs.mp4"), "--backend", "flow", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    prefix = ".result.mp4." if when == "result" else ".sbs.mp4."
    try:
        seen = _wait_for(lambda: any(p.name.startswith(prefix) for p in out_dir.iterdir()), proc)
        assert seen, "the run ended before the moment came; make the clip longer"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _everything(out_dir) == set()
    assert _digest(src, edited) == before


@pytest.mark.slow
@pytest.mark.server
def test_served_app_stopped_with_sigterm_deletes_its_session_folders(tmp_path):
    """`python app.py` as a Space runs it; SIGTERM arrives while a visitor's result is being written."""
    import socket

    from gradio_client import Client, handle_file

    src, edited = _clip(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), GRADIO_TEMP_DIR=str(tmp / "gradio"), SYNCLORA_BACKEND="flow",
               SYNCLORA_PRELOAD="0", SYNCLORA_CACHE_EXAMPLES="0", GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{port}/"
        assert _wait_for(lambda: any("Running on" in line for line in log), proc), "".join(log)
        roots = list(tmp.glob("synclora-app-*"))
        assert len(roots) == 1
        client = Client(url, verbose=False, download_files=str(tmp_path / "dl"))
        client.submit(handle_file(str(src)), handle_file(str(edited)), 0, api_name="/edit_video")
        writing = _wait_for(lambda: any(p.name.endswith(".part") for p in roots[0].rglob("*")), proc)
        assert writing, "".join(log)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(log)
    assert "Traceback" not in text, text
    assert proc.returncode == 0, text[-2000:]
    # The visitor's heartbeat stream is ended before the server closes: left open, the server waits 5 s for it.
    assert took < 5, f"the app took {took:.1f} s to stop"
    assert not list(tmp.glob("synclora-app-*")), "the session folders survived the shutdown"
    assert not [p for p in tmp.rglob("*.part")], "a half-written file survived the shutdown"
    left = {p.name for p in tmp.rglob("*") if p.is_file()}
    assert not left & {src.name, edited.name}, "the visitor's uploads survived the shutdown"  # (examples stay)


def test_a_signal_is_not_held_against_work_after_its_block(tmp_path):
    """A stop ends the block it landed in; a later call in the same process (a test run, a server) is not stopped by
    its record (`raise_if_stopped` within the block only)."""
    from synclora import paths, signals

    with pytest.raises(Terminated):
        with stop_cleanly():
            _send(signal.SIGTERM)
    assert signals.received() == signal.SIGTERM  # still said after the block (app.py reads it there)
    staged = tmp_path / ".out.txt.part"
    staged.write_text("done")
    paths.commit([(staged, tmp_path / "out.txt")])
    assert (tmp_path / "out.txt").read_text() == "done"
