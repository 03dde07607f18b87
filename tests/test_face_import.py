"""MediaPipe is imported without the matplotlib it loads for a plotting helper nothing here calls, and matplotlib
still works for whoever wants it afterwards, or during. Each check runs in a fresh interpreter: what is imported
belongs to the process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"})
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def test_mediapipe_comes_without_matplotlib_and_matplotlib_still_works_after():
    out = _run("""
import sys
import numpy as np
from synclora.face.mesh import FaceMeshTracker, count_faces, mediapipe
from synclora.testing import media
mp = mediapipe()
print('loaded', 'matplotlib' in sys.modules, 'matplotlib.pyplot' in sys.modules)
frames, _ = media.talking_face_frames(2, size=(128, 128), seed=1)
with FaceMeshTracker() as mesh:
    print('face', mesh.landmarks(frames[0]) is not None, count_faces(frames, [0], 0.5))
import matplotlib
import matplotlib.pyplot as plt
print('real', type(plt).__name__, type(matplotlib).__name__, plt.__name__, hasattr(matplotlib, '__version__'))
fig = plt.figure(); fig.savefig('/dev/null', format='png'); plt.close(fig)
from mediapipe.python.solutions import drawing_utils
print('helper', drawing_utils.plt.figure is plt.figure)
""")
    assert "loaded False False" in out
    assert "face True [1]" in out
    assert "real module module matplotlib.pyplot True" in out
    assert "helper True" in out


def test_matplotlib_loaded_first_is_what_mediapipe_gets():
    out = _run("""
import matplotlib.pyplot as plt
from synclora.face.mesh import mediapipe
mediapipe()
from mediapipe.python.solutions import drawing_utils
print('same', drawing_utils.plt is plt)
""")
    assert "same True" in out


def test_a_stand_in_handed_out_during_the_import_loads_the_real_module_when_used():
    """A thread that imports matplotlib.pyplot while MediaPipe is being imported gets a stand-in: its first use
    waits for the import to end and then works on the real module."""
    out = _run("""
import sys, threading
from synclora.face import mesh
seen = {}
real_import = mesh.importlib.import_module

def slow_import(name):
    if name == 'mediapipe' and 'mediapipe' not in sys.modules:
        t = threading.Thread(target=lambda: seen.setdefault('plt', __import__('matplotlib.pyplot').pyplot))
        t.start(); t.join()
    return real_import(name)

mesh.importlib.import_module = slow_import
mesh.mediapipe()
mesh.importlib.import_module = real_import
plt = seen['plt']
print('stand-in', type(plt).__name__)
fig = plt.figure(); print('works', type(fig).__name__, 'matplotlib.pyplot' in sys.modules,
                           type(sys.modules['matplotlib.pyplot']).__name__)
""")
    assert "stand-in _Deferred" in out
    assert "works Figure True module" in out


def test_callers_on_several_threads_at_once_each_get_the_whole_module():
    out = _run("""
import threading
from synclora.face.mesh import mediapipe
got, start = [], threading.Barrier(4)

def call():
    start.wait()
    got.append(hasattr(mediapipe().solutions.face_mesh, 'FaceMesh'))

threads = [threading.Thread(target=call) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print('whole', got)
""")
    assert "whole [True, True, True, True]" in out
