"""Faults and security: a run killed mid-write leaves no result, and the code has no unsafe loading, no shell, no
public share link by default, and an upload cap."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synclora.testing import media
from synclora.video import io

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.joinpath("synclora").rglob("*.py"), ROOT / "app.py",
                  *ROOT.joinpath("benchmarks").rglob("*.py")])


@pytest.mark.slow
def test_killed_run_leaves_no_result_and_a_rerun_works(tmp_path):
    frames, _ = media.talking_face_frames(100, size=(160, 120), seed=1)
    src = media.write_clip(tmp_path / "src.mp4", frames, 25)
    edited = tmp_path / "edited.png"
    from PIL import Image

    Image.fromarray(io.read_frame(src, 0)).save(edited)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "result.mp4"
    cmd = [sys.executable, "-m", "synclora", "propagate", str(src), "--edited", str(edited), "--out", str(out),
           "--backend", "flow", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if any(p.name.endswith(".part") for p in outdir.iterdir()):
                break  # the writer is mid-file
            time.sleep(0.005)
        assert proc.poll() is None, "the run finished before it could be killed; make the clip longer"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()  # the result only ever appears complete (written to a temp name, then renamed)
    leftovers = [p.name for p in outdir.iterdir()]
    # SIGKILL allows no cleanup: a hidden, uniquely named .part may stay, never under the result's name.
    assert all(n.startswith(".result.mp4.") and n.endswith(".part") for n in leftovers), leftovers
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    assert io.probe(out).n_frames == 100
    # The rerun wrote its own temp name: the stale one was neither reused nor renamed into place.
    assert set(leftovers) <= {p.name for p in outdir.iterdir()}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _name(func: ast.expr) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def test_no_pickle_no_shell_no_remote_code():
    problems = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(m in ("pickle", "cPickle", "dill", "joblib", "shelve", "marshal") for m in mods if m):
                    problems.append(f"{rel}:{node.lineno} imports a pickle-like module")
        for call in _calls(tree):
            name = _name(call.func)
            kw = {k.arg: k.value for k in call.keywords}
            where = f"{rel}:{call.lineno} {name}"
            bare = isinstance(call.func, ast.Name)  # eval(...) the builtin, not model.eval()
            shell = name in ("os.system", "os.popen", "os.execl", "os.execv", "os.spawnl")
            if shell or bare and name in ("eval", "exec"):
                problems.append(f"{where}: runs code/shell")
            if "shell" in kw and not (isinstance(kw["shell"], ast.Constant) and kw["shell"].value is False):
                problems.append(f"{where}: shell=")
            if name.endswith("torch.load") or name == "load" and "weights_only" in kw:
                wo = kw.get("weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
            tr = kw.get("trust_remote_code")
            if tr is not None and not (isinstance(tr, ast.Constant) and tr.value is False):
                problems.append(f"{where}: trust_remote_code")
            if name.endswith("from_pretrained") and kw.get("use_safetensors") is not None:
                us = kw["use_safetensors"]
                if isinstance(us, ast.Constant) and us.value is False:
                    problems.append(f"{where}: use_safetensors=False")
            if name.startswith("subprocess.") and call.args and isinstance(call.args[0], (ast.Constant, ast.JoinedStr)):
                problems.append(f"{where}: subprocess with a command string (use an argument list)")
    assert not problems, "\n".join(problems)


def test_weights_are_read_with_safetensors_only():
    text = "\n".join(p.read_text(encoding="utf-8") for p in SOURCES)
    assert not re.search(r"\.(bin|pt|pth|ckpt|pkl)\b[\"']", text), "a pickle-format weight file is referenced"


def test_launch_defaults_are_safe():
    import inspect

    from synclora.ui import server

    sig = inspect.signature(server.launch)
    assert sig.parameters["share"].default is False
    src = inspect.getsource(server.launch)
    assert "max_file_size=" in src and "allowed_paths=[]" in src and "show_error=False" in src
    assert "share=True" not in "\n".join(p.read_text(encoding="utf-8") for p in SOURCES)
    cli = inspect.getsource(server.launch_from_cli)
    assert 'action="store_true"' in cli  # --share is opt-in


def test_upload_cap_and_queue_bound_are_configured():
    import inspect

    from synclora import runtime
    from synclora.ui import server

    src = inspect.getsource(server.create_app)
    assert "max_upload_mb=rt.max_upload_mb" in src
    assert re.search(r"\.queue\(max_size=rt\.queue_size", src)
    assert 0 < runtime.Runtime().queue_size <= 64 and 0 < runtime.Runtime().max_upload_mb <= 1000


def test_session_end_removes_the_visitors_files(tmp_path):
    from synclora.config import PropagationSettings
    from synclora.ui.glue import GradioPipeline
    from synclora.ui.session import SessionFiles

    class Req:
        session_hash = "tab1"

    app = GradioPipeline(files=SessionFiles(tmp_path / "root"), instruct=None,
                         defaults=PropagationSettings(backend="flow"))
    p = app.files.new_file("tab1", "x", ".mp4")
    p.write_bytes(b"1")
    other = app.files.new_file("tab2", "x", ".mp4")
    other.write_bytes(b"2")
    app.end_session(Req())
    assert not p.exists() and other.exists()


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX file modes")
def test_app_temp_root_is_private(tmp_path):
    from synclora.ui.session import SessionFiles

    files = SessionFiles()
    try:
        assert files.root.stat().st_mode & 0o077 == 0  # mkdtemp: only this user can list or read results
    finally:
        files.close()
