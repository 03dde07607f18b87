"""UI logic, kept out of the layout: what each button does, in plain Python that tests call directly.

Like LivePortrait's `GradioPipeline`: the Blocks file only wires components to these methods. Every method takes
and returns plain values (paths, arrays, strings, `gr.update`s); every user mistake surfaces as `gr.Error` with one
sentence, never a traceback (`ui.common.user_errors`). Files are written only into the caller's session folder.

The behaviour lives in one module per step of the page — `clip`, `span`, `edit`, `propagate`, `report` (the keyframe
list and the last results have their own) — and `GradioPipeline` holds the state they share and composes them.
"""

from __future__ import annotations

import threading

import gradio as gr

from synclora import runtime
from synclora.config import PropagationSettings
from synclora.edit.instruct import InstructEditor
from synclora.ui import gpu
from synclora.ui.admission import MemoryGate
from synclora.ui.clip import ClipStep
from synclora.ui.common import Calls, _session
from synclora.ui.edit import EditStep
from synclora.ui.keyframes import KeyframeStep
from synclora.ui.propagate import PropagateStep, _run_chunk
from synclora.ui.report import ReportStep
from synclora.ui.session import SessionFiles
from synclora.ui.span import SpanStep


class GradioPipeline(Calls, ClipStep, SpanStep, EditStep, PropagateStep, ReportStep, KeyframeStep):
    """All the app's behaviour; one instance per process, state per session lives in its files and the page."""

    def __init__(
        self,
        files: SessionFiles | None = None,
        instruct: InstructEditor | None = None,
        defaults: PropagationSettings = PropagationSettings(),
        max_upload_mb: float | None = None,
        memory: MemoryGate | None = None,
    ) -> None:
        from synclora import limits

        self.files = files or SessionFiles()
        # propagations are admitted by their memory need
        self.memory = memory or MemoryGate(limits.memory_budget(runtime.current().memory_gb))
        self.instruct = instruct
        self.defaults = defaults
        self.max_upload_mb = runtime.current().max_upload_mb if max_upload_mb is None else max_upload_mb
        self._reports: dict[tuple, tuple] = {}  # (session, video, result, edited, edit index) -> (plot, verdict, view)
        # result path -> (keyframe plan, keyframe index -> image) of results made from several keyframes: their
        # sync report judges each frame against the keyframe that governs it
        self._keyframed: dict[str, tuple] = {}
        # session -> ((video, edited, span, result's digest), report measured as the propagation made the result)
        self._made: dict[str | None, tuple[tuple, object]] = {}
        self._sources: dict[str | None, tuple[str, object]] = {}  # session -> (clip, its cues measured ahead)
        self._sources_lock = threading.Lock()
        # Imported once here, before any event runs: Gradio sets matplotlib's backend around every event, and a first
        # import of pyplot on one event's thread (MediaPipe imports it, measuring a clip's source) would hand the
        # other events a half-initialised module.
        import matplotlib.pyplot  # noqa: F401
        self.startup_notes: list[str] = []  # what start-up did (prompt cache, model loading), for the backend panel
        self._gpu_propagate = gpu.gpu(duration=self._gpu_duration)(self._run_propagation)
        self._gpu_instruct = gpu.gpu(duration=gpu.INSTRUCT_SECONDS)(self._run_instruct)
        self._gpu_chunk = gpu.gpu(duration=lambda segment: gpu.chunk_seconds(segment.settings))(_run_chunk)
        self._active = 0  # calls in flight (see `user_errors`)
        self._active_lock = threading.Condition()
        self.stopping = False

    def run_example(self, video: str, edited: str, frame: float, edit_index: float | None = None,
                    progress=gr.Progress()):
        """Cached example runs: the same call as the button with default settings (no session needed)."""
        return self.edit_video(video, edited, frame, progress=progress)

    def end_session(self, request: gr.Request) -> None:
        """The browser tab closed: delete that session's files (and forget its reports)."""
        session = _session(request)
        known = self._sources.pop(session, None)
        if known is not None:
            known[1].close()
        self.files.remove(session)
        for key in [k for k in self._reports if k[0] == session]:
            del self._reports[key]
        self._made.pop(session, None)
