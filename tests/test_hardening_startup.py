"""A stop signal lands anywhere — also in the first tenths of a second, while modules still import, and inside a
library that swallows it. Wherever it lands the run ends cleanly: exit 128+N, one line, no traceback, nothing written.

The real-process tests start `python -m synclora` and `python app.py` behind a one-line prelude that says "ready"
once the interpreter's own start-up is over and `synclora.signals` (the entry points' first line) is loaded — before
that the interpreter alone decides: a SIGINT there is Python's own KeyboardInterrupt, before any of synclora has
run (docs/LIMITS.md) — then send the signal after a sweep of delays that covers the imports, argument parsing and
the start of the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synclora import signals
from synclora.cli import main

ROOT = Path(__file__).resolve().parents[1]
PRELUDE = ("import runpy, sys, synclora.signals; print('ready', flush=True); sys.argv = [sys.argv[1]] + sys.argv[2:]; "
           "runpy.run_path(sys.argv[0], run_name='__main__') if sys.argv[0].endswith('.py') else "
           "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")


def _start(args: list[str], env: dict | None = None) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", PRELUDE, *args], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    assert p.stdout.readline().strip() == "ready"
    return p


def _signal_state(pid: int) -> str:
    """The process's blocked, ignored, caught and pending signals as the kernel has them (what a failure shows)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return "gone"
    return " ".join(x for x in lines if x.startswith(("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_stopped_while_importing_or_starting(base, tmp_path, sig):
    results = []
    for delay in (0.01, 0.03, 0.06, 0.1, 0.15, 0.25, 0.4, 0.7):
        out = tmp_path / f"r-{delay}.mp4"
        p = _start(["synclora", "propagate", str(base["src"]), "--edited", str(base["edited"]), "--out", str(out),
                    "--backend", "flow", "--quiet"])
        time.sleep(delay)
        p.send_signal(sig)
        state = _signal_state(p.pid)
        _, err = p.communicate(timeout=120)
        results.append((delay, p.returncode, err.strip()))
        if p.returncode == -sig and not err:  # it landed before the entry point's first line: the default action
            continue  # ended the process there, before anything ran — also a clean end
        assert p.returncode == 128 + sig, (delay, p.returncode, err, state)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (delay, err)
        assert f"stopped by {sig.name}" in err
        assert not list(tmp_path.iterdir()), f"a run stopped after {delay} s wrote {list(tmp_path.iterdir())}"
    # the sweep reached both sides: still importing, and inside the run
    assert any("while starting" in e for _, _, e in results), results
    assert any("half-written" in e for _, _, e in results), results


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.05, 1.0, 3.0])
def test_app_stopped_while_starting(tmp_path, delay):
    """`python app.py` stopped while gradio imports or while the app is built: one line, 143, and the session root
    it had made is gone."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(TMPDIR=str(tmp), GRADIO_TEMP_DIR=str(tmp / "gradio"), SYNCLORA_BACKEND="flow", SYNCLORA_PRELOAD="0",
               SYNCLORA_CACHE_EXAMPLES="0", GRADIO_ANALYTICS_ENABLED="False")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = _start(["app.py", "--host", "127.0.0.1", "--port", str(port)], env)
    time.sleep(delay)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    if "Running on" in out + err:
        pytest.skip("the app was up before the signal (a fast machine): the shutdown test covers that")
    assert p.returncode == 143, (p.returncode, err[-2000:])
    assert "Traceback" not in err and "stopped by SIGTERM while starting the app" in err, err[-2000:]
    assert not list(tmp.glob("synclora-app-*"))


# ------------------------------------------------------------------------------------------------ in-process
def test_a_signal_inside_an_import_is_said_as_the_signal(monkeypatch, base, capsys):
    """numpy and MediaPipe turn an exception raised inside their import into an ImportError: the stop behind it is
    found (`signals.stop_of`)."""
    from synclora import cli

    def import_hit(args):
        try:
            raise signals.Terminated(signal.SIGTERM)
        except KeyboardInterrupt as exc:
            raise ImportError("numpy.core.multiarray failed to import") from exc

    monkeypatch.setattr(cli, "_run_info", import_hit)
    assert main(["info", str(base["src"])]) == 143
    err = capsys.readouterr().err
    assert err == "stopped by SIGTERM; nothing was left half-written\n"


def test_a_swallowed_signal_still_stops_the_run_before_anything_is_written(monkeypatch, base, tmp_path, capsys):
    """A library's bare `except:` eats the signal's exception: the run goes on, but nothing is committed."""
    from synclora.video import lazy

    real = lazy.iter_lazy_frames  # what a propagation decodes its source with

    def swallowing(*a, **k):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        except BaseException:  # noqa: BLE001 - what a careless library does
            pass
        return real(*a, **k)

    monkeypatch.setattr(lazy, "iter_lazy_frames", swallowing)
    (tmp_path / "r.mp4").write_bytes(b"earlier")
    rc = main(["propagate", str(base["src"]), "--edited", str(base["edited"]), "--out", str(tmp_path / "r.mp4"),
               "--side-by-side", str(tmp_path / "s.mp4"), "--backend", "flow", "--quiet"])
    assert rc == 143
    assert capsys.readouterr().err.strip().endswith("stopped by SIGTERM; nothing was left half-written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.mp4"] and (tmp_path / "r.mp4").read_bytes() == b"earlier"


def test_stop_of_walks_the_chain():
    try:
        try:
            raise signals.Terminated(signal.SIGHUP)
        except KeyboardInterrupt:
            raise ImportError("x")  # noqa: B904 - an implicit chain, as an import machinery makes
    except ImportError as exc:
        assert isinstance(signals.stop_of(exc), signals.Terminated)
    assert signals.stop_of(ValueError("plain")) is None


def test_a_signal_inside_a_lazy_import_waits_for_the_import(tmp_path, monkeypatch):
    """A backend imported in the middle of a run: the signal's exception is raised once that import is done, never
    inside it, where C import code would print it as a traceback of its own."""
    (tmp_path / "slow_backend_mod.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "for _ in range(20):\n"
        "    time.sleep(0.005)\n"
        "FINISHED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reached = []
    with pytest.raises(signals.Terminated) as err:
        with signals.stop_cleanly():
            import slow_backend_mod  # noqa: F401

            reached.append("after the import")
            time.sleep(1.0)
            reached.append("too far")
    assert err.value.signum == signal.SIGTERM
    assert sys.modules["slow_backend_mod"].FINISHED and reached == ["after the import"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    del sys.modules["slow_backend_mod"]


def test_a_stopped_cli_run_hushes_native_chatter_until_its_last_line(capfd):
    """MediaPipe's C++ threads log straight to fd 2 as their graphs start; after a stop only the CLI's line shows."""
    from synclora.face.mesh import quiet_native_stderr

    os.write(2, b"before\n")
    with signals.stop_cleanly(hush_stderr=True):
        try:
            with quiet_native_stderr():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
        except signals.Terminated:
            assert signals.stderr_hushed()
            os.write(2, b"W0000 a graph starting on another thread\n")  # the run still unwinding
            signals.speak()
            os.write(2, b"stopped by SIGTERM\n")
    assert not signals.stderr_hushed()
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "before\nstopped by SIGTERM\nafter\n"


def test_native_chatter_windows_on_two_threads_share_fd_2_and_keep_everything_else(capfd):
    """The report's landmarkers start on a thread of their own while the face guide's start on the main one: windows
    that overlap out of order must still give fd 2 back, drop only MediaPipe's lines, and keep everything else."""
    import threading

    from synclora.face.mesh import quiet_native_stderr

    opened, release = threading.Event(), threading.Event()

    def other():
        with quiet_native_stderr():
            opened.set()
            os.write(2, b"W0000 00:00:1796673301.721903   14147 inference_feedback_manager.cc:114] Feedback\n")
            release.wait(5)

    with quiet_native_stderr():
        thread = threading.Thread(target=other)
        thread.start()
        opened.wait(5)
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n 40%|bar| frame 7/9")
        os.write(2, b"I0000 00:00:1796673302.1   14150 gl_context.cc:369] GL version: 3.2\n")
    os.write(2, b" 50%|bar| frame 8/9\n")  # the first window closed, the other still holds fd 2
    release.set()
    thread.join()
    os.write(2, b"after\n")
    assert capfd.readouterr().err == " 40%|bar| frame 7/9 50%|bar| frame 8/9\nafter\n"

    with pytest.raises(RuntimeError), quiet_native_stderr():  # a failed window shows all it held
        os.write(2, b"W0000 00:00:1.2   1 graph.cc:1] the native log that explains the failure\n")
        raise RuntimeError("graph failed")
    assert "the native log that explains" in capfd.readouterr().err


def test_only_mediapipes_lines_are_held_back():
    from synclora.face.mesh import _NATIVE_LINE

    said = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
            b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            b"INFO:     127.0.0.1:5000 - \"GET / HTTP/1.1\" 200 OK\n"
            b"note: Audio trimmed\n"
            b"\r 10%|bar| frame 3/9W0000 00:00:1796673505.470854   15117 inference_feedback_manager.cc:114] Feedback\n"
            b"ERROR:root:something of ours\n")
    kept = (b"INFO:     127.0.0.1:5000 - \"GET / HTTP/1.1\" 200 OK\nnote: Audio trimmed\n"
            b"\r 10%|bar| frame 3/9ERROR:root:something of ours\n")
    assert _NATIVE_LINE.sub(b"", said) == kept
