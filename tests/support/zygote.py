"""The children of `hostile.run_bounded`, forked from one warm process instead of started afresh.

A fresh interpreter spends 1.5-2 s importing NumPy, PyAV, OpenCV, MediaPipe and Matplotlib before a CLI run even
starts, and the hardening tests start dozens of them. A fork server (`multiprocessing`'s "forkserver") imports those
once and forks a child per run; it never uses them (MediaPipe's and OpenCV's native state does not survive a fork once
used), so each child starts them as a fresh process would, only without the import. The child takes the caller's
environment and working folder before importing anything of synclora, writes its output to the files it is given and
exits with the run's code (`hostile._bounded_child`).
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import sys

PRELOAD = ["numpy", "av", "cv2", "PIL.Image", "mediapipe", "matplotlib.pyplot"]

_context = None


def context():
    global _context
    if _context is None:
        os.environ.setdefault("GLOG_minloglevel", "2")  # as synclora sets it before it imports MediaPipe
        os.environ.setdefault("MPLBACKEND", "Agg")
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _context = ctx
    return _context


def run(spec: dict, env: dict, cwd: str, out: str, err: str) -> None:
    """The child: the caller's environment and folder, output to `out`/`err`, then `spec["main"](spec["argv"])` under
    the limits (never returns)."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    mod, _, attr = spec["main"].partition(":")
    main = getattr(importlib.import_module(mod), attr)
    from support.hostile import _bounded_child

    _bounded_child(main, spec["argv"], spec["limit_mb"], spec["file_limit"], spec["mem"])
