"""UI logic, kept out of the layout: what each button does, in plain Python that tests call directly.

Like LivePortrait's `GradioPipeline`: the Blocks file only wires components to these methods. Every method takes
and returns plain values (paths, arrays, strings, `gr.update`s); every user mistake surfaces as `gr.Error` with one
sentence, never a traceback. Files are written only into the caller's session folder.
"""

from __future__ import annotations

import functools
import json
import logging
import shlex
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from synclora import config, runtime
from synclora.config import Keyframe, PropagationRequest, PropagationSettings
from synclora.edit import editor as editor_mod
from synclora.edit import upload as upload_mod
from synclora.edit.instruct import InstructEditor, InstructSettings
from synclora.errors import SyncloraError, brief, shown, user_error
from synclora.limits import MAX_KEYFRAMES
from synclora.ui import gpu
from synclora.ui import keyframes as keyframe_list
from synclora.ui.admission import MemoryGate
from synclora.ui.session import SessionEnded, SessionFiles
from synclora.video.io import format_fps

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[2] / "assets"
# Sources whose cues are kept measured ahead (one per session; the oldest go first).
MAX_SOURCES_KEPT = 64
# Containers/codecs every browser plays with exact frame timing; anything else gets a CFR H.264 copy for the player.
_BROWSER_CODECS = {"h264"}
_BROWSER_CONTAINERS = {"mp4", "mov"}


def asset(name: str) -> str:
    """UI copy from assets/ (kept out of code so wording can change without touching logic)."""
    return (ASSETS / name).read_text(encoding="utf-8").strip()


class ServerStopping(SyncloraError):
    """The server is shutting down (SIGTERM): running jobs stop at their next step, new ones are turned away."""


def user_errors(fn: Callable) -> Callable:
    """Show our errors — and disk, permission, codec and image-library failures, through `errors.user_error`, the
    same place the CLI uses — as `gr.Error` with their sentence; show bugs as one neutral sentence (traceback to the
    log). Also counts the calls in flight, so a shutdown can wait for them to clean up."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        app = args[0] if args and isinstance(args[0], GradioPipeline) else None
        try:
            if app is not None:
                app._enter()
                request = next((a for a in args if isinstance(a, gr.Request)), kwargs.get("request"))
                if request is not None:  # the visit's uploads, removed from Gradio's cache when it ends
                    app.files.note(_session(request), [a for a in (*args, *kwargs.values()) if isinstance(a, str)])
            try:
                return fn(*args, **kwargs)
            finally:
                if app is not None:
                    app._leave()
        except gr.Error:
            raise
        except Exception as exc:
            error = user_error(exc)
            if error is None:
                log.exception("unexpected error in %s", fn.__name__)
                raise gr.Error(
                    f"Something went wrong on the server ({type(exc).__name__}); the details are in its log.",
                    print_exception=False,
                ) from None
            raise gr.Error(sentence(shown(str(error))), print_exception=False) from None

    return wrapper


def _error(message: str) -> gr.Error:
    """A user error for the page: shown as a toast, not printed as a traceback in the server log."""
    return gr.Error(message, print_exception=False)


def sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return "Something went wrong."
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _whole_number(value) -> bool:
    """True for 3, 3.0 or "3"; False for None, 2.5, "abc", NaN and infinities (API callers send anything)."""
    try:
        return value is not None and not isinstance(value, bool) and float(value) == int(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def _index(value, what: str = "frame index", default: int = 0) -> int:
    """A whole number from a widget or an API caller (None: `default`), else a sentence."""
    if value is None or value == "":
        return default
    if not _whole_number(value):
        raise _error(f"The {what} must be a whole number, got {brief(value)}.")
    return int(float(value))


def _edit_index(value) -> int:
    """The hidden "edit made on frame" number: -1 (no edit yet) for anything that is not a frame index."""
    return int(float(value)) if _whole_number(value) else -1


def _session(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None) if request is not None else None


def _digest(path: str | Path) -> str:
    """The file's content hash: a result is known by its bytes (the server may hand the page a copy of it)."""
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _run_chunk(segment):
    """One model chunk, inside its own GPU call (see `GradioPipeline._propagate_on_gpu`)."""
    from synclora.propagate.registry import run_segment

    return run_segment(segment)


class GradioPipeline:
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
        self.memory = memory or MemoryGate(limits.memory_budget())  # propagations admitted by their memory need
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
        self.startup_notes: list[str] = []  # what start-up did (prompt cache, model loading), for the backend panel
        self._gpu_propagate = gpu.gpu(duration=self._gpu_duration)(self._run_propagation)
        self._gpu_instruct = gpu.gpu(duration=gpu.INSTRUCT_SECONDS)(self._run_instruct)
        self._gpu_chunk = gpu.gpu(duration=lambda segment: gpu.chunk_seconds(segment.settings))(_run_chunk)
        self._active = 0  # calls in flight (see `user_errors`)
        self._active_lock = threading.Condition()
        self.stopping = False

    # ------------------------------------------------------------------------------------------------- shutdown
    def _enter(self) -> None:
        with self._active_lock:
            if self.stopping:
                raise ServerStopping("the server is restarting; try again in a minute")
            self._active += 1

    def _leave(self) -> None:
        with self._active_lock:
            self._active -= 1
            self._active_lock.notify_all()

    def check_running(self, out: str | Path | None = None) -> None:
        """Called between steps of long jobs: a stopping server ends them (their clean-up removes partial files), and
        so does a visitor who left (the session folder of the job's output `out` is gone)."""
        if self.stopping:
            raise ServerStopping("the server is restarting; try again in a minute")
        if out is not None and not Path(out).parent.is_dir():
            raise SessionEnded("this visit has ended; the job was stopped")

    def _after_job(self, session: str | None) -> None:
        """A visitor who left while their job ran: what the job wrote since goes too, and the job ends."""
        if self.files.ended(session):
            self.files.remove(session)
            raise SessionEnded("this visit has ended; the job was stopped")

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stop taking calls, let the ones in flight end (up to `timeout` s; long jobs stop at their next step),
        then delete every session's files. True when nothing was still running."""
        with self._active_lock:
            self.stopping = True
            idle = self._active_lock.wait_for(lambda: self._active == 0, timeout)
        self.files.close()
        return idle

    # ---------------------------------------------------------------------------------------------------------- 1
    def check_clip(self, path: str | Path):
        """An uploaded clip within the upload cap and the pipeline's limits (length, duration, frame size); its facts.
        Every endpoint that takes a clip says this at once, not after minutes of work."""
        from synclora.limits import check_clip
        from synclora.video import io

        self._check_size(path)
        info = io.probe(path)
        check_clip(info)
        return info

    def _check_size(self, path: str | Path) -> None:
        from synclora.paths import check_input

        if not Path(path).exists():
            raise _error("The video file was not found on the server; upload it again.")
        check_input(path, "the video")  # a folder, pipe or device: said as what it is
        mb = Path(path).stat().st_size / 1e6
        if mb > self.max_upload_mb:
            raise _error(f"The video is {mb:.0f} MB; this server accepts up to {self.max_upload_mb:.0f} MB.")

    @user_errors
    def load_video(self, video: str | None, frame: float | None = 0, edit_frame: float | None = None,
                   edited: str | None = None, request: gr.Request | None = None):
        """Video changed (upload, example, clear): facts, slider range, frame preview, editor, before/after, status."""
        if not video:
            return (
                asset("help_video.md"),
                gr.update(value=0, interactive=False),
                None,
                "No video yet.",
                0.0,
                None,
                None,
                gr.skip(),
            )
        info = self.check_clip(video)  # the CLI's limits, said right after the upload, not at the end
        self._measure_source(_session(request), video)
        k = int(min(max(0, _index(frame)), info.n_frames - 1))
        img, caption, editor_value, before_after, status = self.pick_frame(video, k, edit_frame, edited)
        return (
            self.facts_markdown(info),
            gr.update(maximum=info.n_frames - 1, value=k, interactive=True),
            img,
            caption,
            float(info.fps),
            editor_value,
            before_after,
            status,
        )

    def facts_markdown(self, info) -> str:
        """The clip's facts and, in one line each, what will happen to it (nothing silent)."""
        s = self.defaults
        lines = [
            f"**{info.width}×{info.height}** · **{info.n_frames} frames** at **{format_fps(info.fps)} fps** · "
            f"{info.duration:.2f} s · " + (f"audio: {info.audio_codec}" if info.has_audio else "no audio"),
            "",
            f"- Kept exactly: frame count ({info.n_frames}), frame rate, "
            + ("and the audio track." if info.has_audio else "size."),
        ]
        try:
            from synclora.pipeline import working_plan
            from synclora.propagate import registry

            name = registry.resolve(s)
            title = config.BACKEND_TITLES.get(name, name)
            lines.append(f"- {title} ({s.fit}): {working_plan(info, s).notice}")
        except (SyncloraError, ValueError, ImportError) as exc:
            log.info("no working-size plan for the facts panel: %s", exc)
        lines += [f"- {n}" for n in info.notices]
        return "\n".join(lines)

    @staticmethod
    def frame_caption(k: int, n: int, fps: float | Fraction) -> str:
        t = k / float(fps) if fps else 0.0
        return f"### Frame **{k}** of 0–{n - 1} · {t:.3f} s"

    @user_errors
    def prepare_upload(self, video: str | None, request: gr.Request | None = None):
        """After an upload: make a CFR H.264 copy when the browser could not show exact frames (VFR, HEVC, rotation).

        Returns the new value for the video component (or `gr.skip()` when the file plays as is), so the player
        and the frame index always agree.
        """
        if not video:
            return gr.skip()
        from synclora.video import io

        info = self.check_clip(video)
        if not self.needs_player_copy(info):
            return gr.skip()
        out = self.files.new_file(_session(request), Path(video).stem, ".mp4")
        io.write_video(out, io.iter_frames(video), info.fps, audio_from=video if info.has_audio else None)
        gr.Info(f"Converted to a constant {format_fps(info.fps)} fps H.264 copy so every frame can be picked exactly "
                f"({info.n_frames} frames kept).")
        return str(out)

    @staticmethod
    def needs_player_copy(info) -> bool:
        return (
            info.vfr
            or info.rotation != 0
            or info.codec not in _BROWSER_CODECS
            or not (set(str(info.container).split(",")) & _BROWSER_CONTAINERS)
        )

    # ---------------------------------------------------------------------------------------------------------- 2
    @user_errors
    def pick_frame(self, video: str | None, frame: float | None, edit_frame: float | None = None,
                   edited: str | None = None):
        """Slider moved: preview, caption, editor background, before/after (against the edit if it is this frame)."""
        if not video:
            return None, "No video yet.", None, None, gr.skip()
        from synclora.edit.image import load_image
        from synclora.video import io

        info = io.probe(video)
        k = int(min(max(0, _index(frame)), info.n_frames - 1))
        img = io.read_frame(video, k)
        e = _edit_index(edit_frame)
        has_edit = e >= 0 and edited
        after = img
        status = gr.skip()
        if has_edit and e == k:
            after = load_image(edited)[0]
            status = f"Edited frame **{k}** is ready to propagate."
        elif has_edit:
            status = (f"**Note:** your edit was made on frame **{e}**; you are now on frame **{k}**. "
                      "Go back to that frame or edit this one.")
        caption = self.frame_caption(k, info.n_frames, info.fps)
        return img, caption, editor_mod.editor_value(img), (img, after), status

    # ------------------------------------------------------------------------------------------ 2 · the edited span
    # The range next to the frame picker: two sliders (first and last edited frame), the span as text (frames or
    # seconds, what the API and `--span` take) and the fade. They are kept consistent with each other and with the
    # frame slider: the chosen frame always lies inside the span (moving the frame outside widens the span; a span
    # slider stops at the frame). All return (start slider, end slider, span text, caption).
    @staticmethod
    def span_caption(span) -> str:
        """The span in frames and seconds, with its fades."""
        if span.whole:
            return (f"**Edited span:** the whole clip (all {span.n_frames} frames, 0–{span.seconds(span.n_frames):.3f}"
                    " s). Narrow it with the two sliders or type a span such as `2s:5.5s`.")
        count = f"{span.length} frame{'s' if span.length != 1 else ''}"
        return f"**Edited span ({count}):** {span.describe()}."

    def _span_outputs(self, span, text: str | None = None):
        text = ("" if span.whole else span.text) if text is None else text
        return gr.update(value=span.start), gr.update(value=span.end), text, self.span_caption(span)

    @staticmethod
    def _fade(fade) -> int | None:
        return PropagationSettings.from_values({"fade": fade}).fade

    @user_errors
    def span_reset(self, video: str | None):
        """A new clip (or none): the span is the whole clip, the sliders cover its frames, and the fade box shows
        this clip's default fade (about a third of a second at its fps). Returns the four span outputs + the fade."""
        if not video:
            off = gr.update(value=0, maximum=1, interactive=False)
            return off, off, "", "No video yet.", gr.skip()
        from synclora.video import io, timing

        info = io.probe(video)
        span = timing.resolve_span(None, info, fade=self.defaults.fade)
        last = max(1, info.n_frames - 1)
        return (gr.update(value=0, maximum=last, interactive=True),
                gr.update(value=info.n_frames - 1, maximum=last, interactive=True), "", self.span_caption(span),
                span.fade)

    @user_errors
    def span_from_sliders(self, video: str | None, frame: float | None, start: float | None, end: float | None,
                          text: str | None = None, fade: float | None = None):
        """A span slider moved: keep start ≤ frame ≤ end (the slider stops at the chosen frame)."""
        if not video:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        from synclora.video import io, timing

        info = io.probe(video)
        k = int(min(max(0, int(frame or 0)), info.n_frames - 1))
        a = min(int(start if start is not None else 0), k)
        b = max(int(end if end is not None else info.n_frames - 1), k)
        span = timing.resolve_span((max(0, a), min(b, info.n_frames - 1)), info, fade=self._fade(fade))
        return self._span_outputs(span)

    @user_errors
    def span_from_text(self, video: str | None, frame: float | None, start: float | None = None,
                       end: float | None = None, text: str | None = None, fade: float | None = None):
        """The span typed (frames or seconds) or the fade changed: the sliders follow; a bad span is one sentence."""
        if not video:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        from synclora.video import io, timing

        info = io.probe(video)
        k = int(min(max(0, int(frame or 0)), info.n_frames - 1))
        span = timing.resolve_span(PropagationSettings.from_values({"span": text}).span, info,
                                   fade=self._fade(fade), edit_index=k)
        return self._span_outputs(span, text=(text or "").strip())

    @user_errors
    def span_follow_frame(self, video: str | None, frame: float | None, start: float | None = None,
                          end: float | None = None, text: str | None = None, fade: float | None = None):
        """The frame picker moved: widen the span to keep the chosen frame inside it (nothing changes otherwise)."""
        if not video or start is None or end is None or frame is None or start <= frame <= end:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return self.span_from_sliders(video, frame, start, end, text, fade)

    # ---------------------------------------------------------------------------------------------------------- 3
    def _source_frame(self, video: str | None, frame: float | None) -> tuple[np.ndarray, int]:
        if not video:
            raise _error("Upload a video or pick an example first.")
        from synclora.video import io

        k = _index(frame)
        return io.read_frame(video, k), k

    def _save_edit(self, img: np.ndarray, frame_img: np.ndarray, k: int, how: str, notices: list[str],
                   request: gr.Request | None):
        editor_mod.require_change(img, frame_img)
        path = self.files.new_file(_session(request), f"edited-frame{k}-{how}", ".png")
        Image.fromarray(img).save(path)
        for n in notices:
            gr.Warning(sentence(n))
        note = f"Edited frame **{k}** ({how}). " + " ".join(sentence(n) for n in notices)
        return str(path), (frame_img, img), k, note.strip()

    @user_errors
    def use_drawing(self, value: dict | None, video: str | None, frame: float | None,
                    request: gr.Request | None = None):
        """The in-app editor's layers → the edited frame."""
        frame_img, k = self._source_frame(video, frame)
        img, notices = editor_mod.compose(value, frame_img)
        return self._save_edit(img, frame_img, k, "drawn", notices, request)

    @user_errors
    def use_upload(self, image: str | None, video: str | None, frame: float | None,
                   request: gr.Request | None = None):
        """An uploaded edit → checked and fitted to the frame (with a notice saying what was done)."""
        if not image:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        frame_img, k = self._source_frame(video, frame)
        img, notices = upload_mod.fit_upload(image, frame_img)
        return self._save_edit(img, frame_img, k, "uploaded", notices, request)

    def instruct_status(self) -> tuple[bool, str]:
        """(usable, Markdown line) for the instruction tab."""
        from synclora.edit import instruct

        if self.instruct is not None and self.instruct.loaded:
            return True, f"Model: **{instruct.model_id()}** (Apache-2.0), 4 steps, loaded."
        ok, why = instruct.availability()
        if ok:
            return True, f"Model: **{instruct.model_id()}** (Apache-2.0), 4 steps."
        return False, f"Instruction editing is not available here because {why}. Use the editor or upload instead."

    def _run_instruct(self, frame_img: np.ndarray, text: str, seed: int) -> np.ndarray:
        if self.instruct is None:
            from synclora.errors import ModelUnavailableError

            raise ModelUnavailableError("instruction editing is not available in this app")
        return self.instruct.edit(frame_img, text, InstructSettings(seed=int(seed)))

    @user_errors
    def use_instruction(self, text: str, seed: float | None, video: str | None, frame: float | None,
                        request: gr.Request | None = None, progress=gr.Progress()):
        """A text instruction → the frame edited by FLUX.2 [klein]."""
        from synclora.edit.instruct import check_instruction

        text = check_instruction(text)
        seed = _index(seed, "seed")
        lo, hi = config.SEED_RANGE
        if not lo <= seed <= hi:
            raise _error(f"The seed must be a whole number from {lo} to {hi}, got {seed}.")
        ok, why = self.instruct_status()
        if not ok:
            raise _error(why)
        frame_img, k = self._source_frame(video, frame)
        progress(0.1, desc="editing the frame")
        t0 = time.perf_counter()
        img = self._gpu_instruct(frame_img, text, seed)
        dt = time.perf_counter() - t0
        return self._save_edit(img, frame_img, k, "instruction", [f"edited in {dt:.1f} s, seed {seed}"],
                               request)

    # ---------------------------------------------------------------------------------------------------------- 4
    def backend_markdown(self) -> str:
        """The backend panel: each backend, then the same report as `python -m synclora doctor` (what each needs,
        what is here, how to fix it) and what start-up did."""
        from synclora import doctor
        from synclora.propagate import registry

        lines = []
        for b in registry.backends(self.defaults):
            state = "available" if b.available else "*not available here*"
            lines.append(f"- **{b.name}** ({state}): {b.label}")
        try:
            auto = registry.resolve(PropagationSettings(backend="auto", model=self.defaults.model))
            lines.append(f"- **auto** uses **{auto}** on this server.")
        except SyncloraError:
            pass
        try:
            report = doctor.diagnose(self.defaults).to_markdown()
        except Exception as exc:  # the panel must render whatever the disk holds
            log.exception("the doctor report failed")
            report = f"The status report failed ({type(exc).__name__}); the server log has the details."
        lines += ["", "#### What this server has (`python -m synclora doctor`)", "", report]
        if self.startup_notes:
            lines += ["", "#### Start-up", ""] + [f"- {sentence(n)}" for n in self.startup_notes]
        return "\n".join(lines)

    def backend_summary(self) -> str:
        """One visible line under the button: what "auto" runs here, and why Sync-LoRA is off if it is."""
        from synclora.propagate import registry

        infos = {b.name: b for b in registry.backends(self.defaults)}
        try:
            auto = registry.resolve(PropagationSettings(backend="auto", model=self.defaults.model))
        except SyncloraError as exc:
            return f"No backend can run on this server: {exc}"
        title = config.BACKEND_TITLES.get(auto, auto)
        line = f"On this server **auto** runs **{'the ' if auto == 'flow' else ''}{title}**."
        ltx = infos.get("synclora")
        if ltx is not None and not ltx.available:
            line += f" Sync-LoRA is off here: {ltx.why}."
        return line

    @staticmethod
    def check_ready(video: str | None, edited: str | None, frame: float | None, edit_frame: float | None,
                    keyframes: str | None = None) -> None:
        """Before propagating from the page: a clip, an edit (or listed keyframes), and the edit belongs to the
        chosen frame."""
        if not video:
            raise _error("Upload a video or pick an example first.")
        if not edited and (keyframes or "").strip():
            return
        if not edited:
            raise _error("Edit the frame first: draw on it, give an instruction, or upload an edited image.")
        e, k = _edit_index(edit_frame), _index(frame)
        if e >= 0 and e != k:
            raise _error(
                f"Your edit was made on frame {e} but frame {k} is selected; move the slider back to {e} or edit "
                f"frame {k}."
            )

    def settings_from(self, values: dict) -> PropagationSettings:
        """The page's (or an API caller's) setting values → settings; None keeps the app's default."""
        return PropagationSettings.from_values(values, self.defaults)

    def _gpu_duration(self, req: PropagationRequest, progress=None) -> int:
        return gpu.gpu_seconds(self._gpu_frames(req), req.settings)

    @staticmethod
    def _gpu_frames(req: PropagationRequest) -> int:
        """Frames the model propagates (the spans and their fades; 0 when the request is bad — it fails on its own)."""
        from synclora.pipeline import check_keyframes
        from synclora.video import io

        try:
            return check_keyframes(req, io.probe(req.source)).frames
        except SyncloraError:
            return 0

    def _propagate_on_gpu(self, req: PropagationRequest, progress, session: str | None = None):
        """(result, report tap or None). One GPU call for the whole clip when it fits the longest call (the report
        is measured from the files after it); otherwise the clip streams here, the report measured as it passes,
        and each model chunk is a GPU call of its own (each asking for what its chunk needs, the progress bar going
        on across them)."""
        if not gpu.split_calls(self._gpu_frames(req), req.settings):
            return self._gpu_propagate(req, progress), None
        gpu.check_chunk_fits(req.settings)
        from synclora.propagate import registry

        tap = self._report_tap(req, session)
        with registry.calls_through(self._gpu_chunk):
            return self._run_propagation(req, progress, [tap] if tap is not None else []), tap

    def _run_propagation(self, req: PropagationRequest, progress=None, taps=()):
        from synclora.pipeline import run_propagation

        def report(f: float, label: str) -> None:
            self.check_running(req.out)  # a stopping server or a visitor who left ends the job; nothing stays
            if progress is not None:
                progress(float(min(max(f, 0.0), 1.0)), desc=label)

        return run_propagation(req, report, taps=taps)

    def _report_tap(self, req: PropagationRequest, session: str | None):
        """The sync report measured as the propagation runs here (the source's half already, when it was measured
        while the visitor edited); None when it cannot be (then the report panel measures the files)."""
        from synclora.metrics.tap import tap_for

        if len(req.keyframes) > 1:  # judged part by part after the run (`_keyframe_report`)
            return None
        known = self._sources.get(session)
        try:
            return tap_for(req, source_cues=known[1] if known and known[0] == str(req.source) else None)
        except Exception:  # the propagation goes on; the report panel measures the files instead
            log.exception("the sync report could not watch this propagation")
            return None

    def _measure_source(self, session: str | None, video: str) -> None:
        """Start measuring the source's half of the sync report in the background, right after the upload (while the
        visitor edits a frame); kept for this clip of this session."""
        from synclora.metrics.source_cues import SourceCues

        with self._sources_lock:
            old = self._sources.get(session)
            if old is not None and old[0] == str(video):
                return
            stale = [self._sources.pop(session)[1]] if old is not None else []
            while len(self._sources) >= MAX_SOURCES_KEPT:  # sessions that never said goodbye
                stale.append(self._sources.pop(next(iter(self._sources)))[1])
        for cues in stale:
            cues.close()
        try:
            cues = SourceCues(video, self.files.dir_for(session))
            with self._sources_lock:
                self._sources[session] = (str(video), cues)
        except Exception:  # only a head start: the report measures the source itself then
            log.exception("could not start measuring the source's cues")
            self._sources.pop(session, None)

    @user_errors
    def edit_video(
        self,
        video: str | None,
        edited: str | None,
        frame: float | None,
        backend: str | None = None,
        quality: str | None = None,
        seed: float | None = None,
        fit: str | None = None,
        resolution: float | None = None,
        time_mode: str | None = None,
        chunk_overlap: float | None = None,
        model: str | None = None,
        memory: str | None = None,
        span: str | None = None,
        fade: float | None = None,
        request: gr.Request | None = None,
        progress=gr.Progress(),
    ):
        """Propagate the edited frame through the clip (or its `span`, fading in and out over `fade` frames)
        → (result video, side-by-side video, settings Markdown)."""
        if not video:
            raise _error("Give a source video.")
        if not edited:
            raise _error("Give the edited frame (an image file).")
        if not _whole_number(frame):
            raise _error(f"The frame index must be a whole number, got {brief(frame)}.")
        given = locals()  # the API's parameters are the settings fields, by name (a test holds the two together)
        settings = self.settings_from({f.name: given[f.name] for f in config.setting_fields(ui_only=True)})
        return self._propagate(video, (Keyframe(int(float(frame)), Path(edited)),), settings, request, progress)

    @user_errors
    def edit_keyframes(
        self,
        video: str | None,
        edited: str | None,
        frame: float | None,
        keyframe_images: list | None,
        keyframes: str | None,
        backend: str | None = None,
        quality: str | None = None,
        seed: float | None = None,
        fit: str | None = None,
        resolution: float | None = None,
        time_mode: str | None = None,
        chunk_overlap: float | None = None,
        model: str | None = None,
        memory: str | None = None,
        span: str | None = None,
        fade: float | None = None,
        request: gr.Request | None = None,
        progress=gr.Progress(),
    ):
        """Propagate several keyframes at once: `keyframe_images` with `keyframes` (one line per image, `INDEX` or
        `INDEX SPAN`), and the edit being made (`edited`, an edit of frame `frame`; optional when the list has
        keyframes) → (result video, side-by-side video, settings Markdown). Without spans the keyframes are one look
        pinned at several frames (`span` holds for all); with a span on each, one look per span (the edit being made
        takes `span` as its own)."""
        if not video:
            raise _error("Give a source video.")
        listed = keyframe_list.parse(keyframe_images, keyframes)
        if edited and not _whole_number(frame):
            raise _error(f"The frame index must be a whole number, got {brief(frame)}.")
        keys, span = keyframe_list.merged(listed, edited, int(float(frame)) if edited else None, span)
        if not keys:
            raise _error("Give the edited frame (an image file), or a list of keyframes.")
        given = locals()
        settings = self.settings_from({f.name: given[f.name] for f in config.setting_fields(ui_only=True)})
        return self._propagate(video, keys, settings, request, progress)

    def _propagate(self, video: str, keys: tuple[Keyframe, ...], settings: PropagationSettings,
                   request: gr.Request | None, progress):
        """One propagation from the page or the API: checked before waiting for memory or a GPU, run, described."""
        self._check_size(video)
        from synclora.propagate import registry

        name = registry.resolve(settings)
        session = _session(request)
        out = self.files.new_file(session, f"{Path(video).stem}-edited", ".mp4")
        sbs = out.with_name(out.stem + "-side-by-side.mp4")
        req = PropagationRequest(source=Path(video), edited=None, out=out, side_by_side=sbs, settings=settings,
                                 keyframes=keys)
        if settings.span or len(keys) > 1:  # a bad span or keyframe is said now, before waiting for a GPU
            from synclora.pipeline import check_keyframes
            from synclora.video import io

            check_keyframes(req, io.probe(video))
        from synclora.metrics import tap as report_tap
        from synclora.pipeline import memory_need
        from synclora.video import io

        info = io.probe(video)
        # refused now if it can never fit; waits if others hold memory (the report measured alongside included)
        need = memory_need(info, settings) + report_tap.memory_need(info.width, info.height)
        try:
            with self.memory.admit(need, waiting=lambda: (self.check_running(), progress(
                    0.0, desc="waiting for memory (other clips running)"))):
                on_gpu = config.backend_record(name).gpu
                progress(0.0, desc="queued for the GPU" if on_gpu else "starting")
                if not on_gpu:  # the report is measured as the frames pass, so it is ready with the result
                    # (with one keyframe; several are judged part by part, each against its own: `_keyframe_report`)
                    tap = self._report_tap(req, session) if len(keys) == 1 else None
                    result = self._run_propagation(req, progress, [tap] if tap is not None else [])
                else:
                    result, tap = self._propagate_on_gpu(req, progress, session)
        finally:
            self._after_job(session)  # a visitor who left: what the job wrote goes too
        # its notices are listed under the result (a toast would cover the page)
        if tap is not None:
            self._keep_report(session, (str(video), str(keys[0].image), str(settings.span or ""),
                                        _digest(result.out)), tap)
        if len(result.keyframes) > 1 and result.plan is not None:
            self._keyframed[str(result.out)] = (result.plan, {k.index: str(k.image) for k in result.keyframes})
            while len(self._keyframed) > 256:
                self._keyframed.pop(next(iter(self._keyframed)))
        return str(result.out), str(result.side_by_side), self.result_markdown(result, video)

    def _keep_report(self, session: str | None, key: tuple, tap) -> None:
        try:
            self._made[session] = (key, tap.report())
        except Exception:  # the report panel measures the files instead
            log.exception("the sync report measured with the propagation failed")
            self._made.pop(session, None)

    def result_markdown(self, result, video: str, edited: str | None = None) -> str:
        """What was done, with everything needed to reproduce it (settings, seed, every keyframe, CLI line)."""
        s = result.settings
        keys = result.keyframes
        if len(keys) > 1:
            edits = [a for k in keys for a in ("--keyframe", str(k.index), Path(k.image).name, *([k.span] if k.span
                                                                                                 else []))]
            what = "Keyframes " + ", ".join(f"**{k.index}**" for k in keys)
            span = "; ".join(result.plan.describe()) if result.plan is not None else "the whole clip"
        else:
            name = Path(edited or keys[0].image).name if keys else Path(edited).name
            edits = ["--edited", name, "--edit-index", str(result.edit_index)]
            what = f"Edited frame {result.edit_index}"
            span = result.span.describe() if result.span else "the whole clip"
        cmd = ["python", "-m", "synclora", "propagate", Path(video).name, *edits, "--out", "result.mp4",
               *config.cli_args(s, result.backend)]
        info = result.source_info
        head = (
            f"**{what}** · edited {span} · seed **{s.seed}** · **{result.backend}** "
            f"({s.quality}) · "
            f"fit {s.fit} · working size {result.working_size[0]}×{result.working_size[1]} · {info.n_frames} frames at "
            f"{format_fps(info.fps)} fps · took {result.seconds:.1f} s"
        )
        values = dict(s.to_dict(), backend=result.backend, edit_index=result.edit_index)
        if len(keys) > 1:
            values["keyframes"] = [{"index": k.index, "span": k.span} for k in keys]
        settings = json.dumps(values)
        notes = "".join(f"\n- {sentence(n)}" for n in result.notices)
        return f"{head}{notes}\n\nReproduce:\n```\n{shlex.join(cmd)}\n```\nSettings: `{settings}`"

    # ---------------------------------------------------------------------------------------------------- keyframes
    @user_errors
    def add_keyframe(self, video: str | None, edited: str | None, edit_frame: float | None, span: str | None,
                     own_span: bool, images: list | None, text: str | None):
        """The edit on screen joins the keyframe list (replacing one on the same frame) → (images, lines, gallery,
        status). With `own_span`, it keeps the span box's span as its own look's."""
        if not video:
            raise _error("Upload a video or pick an example first.")
        k = _edit_index(edit_frame)
        if not edited or k < 0:
            raise _error("Edit a frame first: draw on it, give an instruction, or upload an edited image.")
        keys = keyframe_list.parse(images, text)
        if own_span and not (span or "").strip():
            raise _error("Give this keyframe's span (Edit from frame … to frame) before adding it as a look of its "
                         "own, or untick the box to pin the same look at several frames.")
        if keys and bool(own_span) != any(key.span for key in keys):
            raise _error("The listed keyframes " + ("each have a span of their own" if any(key.span for key in keys)
                                                    else "are one look without spans") +
                         "; tick or untick “Each keyframe its own span” to match them, or remove them first.")
        if own_span:
            PropagationSettings.from_values({"span": span})  # its one sentence when malformed
        keys = keyframe_list.put(keys, Keyframe(k, Path(edited), span.strip() if own_span else None))
        if len(keys) > MAX_KEYFRAMES:
            raise _error(f"A propagation takes at most {MAX_KEYFRAMES} keyframes.")
        return self._keyframe_outputs(keys)

    @user_errors
    def remove_keyframe(self, selected: float | None, images: list | None, text: str | None):
        """Remove the keyframe selected in the list → (images, lines, gallery, status)."""
        keys = keyframe_list.parse(images, text)
        i = _index(selected, "keyframe", -1)
        if not 0 <= i < len(keys):
            raise _error("Select a keyframe in the list first (click its picture).")
        return self._keyframe_outputs(keys[:i] + keys[i + 1:])

    @user_errors
    def reedit_keyframe(self, selected: float | None, images: list | None, text: str | None):
        """Go to the selected keyframe's frame (and span) to edit it again; the new edit replaces it → (frame,
        span box)."""
        keys = keyframe_list.parse(images, text)
        i = _index(selected, "keyframe", -1)
        if not 0 <= i < len(keys):
            raise _error("Select a keyframe in the list first (click its picture).")
        key = keys[i]
        return key.index, (key.span if key.span else gr.skip())

    @staticmethod
    def select_keyframe(evt: gr.SelectData) -> int:
        return int(evt.index)

    @staticmethod
    def _keyframe_outputs(keys: list[Keyframe]):
        images, text = keyframe_list.format_list(keys)
        return images or None, text, keyframe_list.gallery(keys), keyframe_list.status(keys), -1

    def add_keyframe_and_clear(self, *args):
        """`add_keyframe`, then the edit on screen is cleared (it is in the list now): the page's button."""
        images, text, items, note, selected = self.add_keyframe(*args)
        k = _edit_index(args[2])
        return (images, text, items, note, selected, None, -1,
                f"Frame **{k}** is keyframe {len(items)}. Pick another frame and edit it to add one more.")

    # ---------------------------------------------------------------------------------------------------------- 5
    @user_errors
    def sync_report(self, video: str | None, result: str | None, edited: str | None, edit_frame: float | None = None,
                    span: str | None = None, request: gr.Request | None = None, progress=gr.Progress()):
        """Measure how well the result follows the source over the edited `span` (default: the whole clip) →
        (plot PNG, verdict Markdown, None: the landmark view is made by `landmark_view` when asked for).

        `edit_frame`: the source frame the edit was made on (what the edit hides and keeps is measured from it; when
        unknown, the best-matching source frame is used). A result this app just made comes with its report, measured
        while it was made: then this only draws it.
        """
        if not video or not result:
            return None, "*Run a propagation to see its sync report.*", None
        args = self._report_args(video, result, edited, edit_frame, span)
        if isinstance(args, str):
            return None, args, None
        k, judged = args
        # The result player re-sends "change" when its tab is first shown; measure each result once per session.
        key = (_session(request), str(video), str(result), str(edited), k, str(span or ""))
        if key in self._reports and all(p is None or Path(p).is_file() for p in self._reports[key][::2]):
            return self._reports[key]
        png = self.files.new_file(_session(request), "sync-report", ".png")
        if str(result) in self._keyframed:
            try:
                self._reports[key] = self._keyframe_report(video, result, png, self._report_progress(progress, png))
            finally:
                self._after_job(_session(request))
            return self._reports[key]
        try:
            rep = self._ready_report(_session(request), video, result, edited, span)
            if rep is None:
                from synclora.metrics.compare import compare_videos

                known = self._sources.get(_session(request))
                rep = compare_videos(video, result, edited_frame=edited or None, edit_index=k if edited else None,
                                     frame_range=self._judged_range(judged),
                                     progress=self._report_progress(progress, png),
                                     source_cues=known[1] if known and known[0] == str(video) else None)
            rep.plot(png)
        finally:
            self._after_job(_session(request))
        md = self.report_markdown(rep)
        if judged is not None and not judged.whole:
            md += (f"\n- Judged the edited span, frames {judged.start}–{judged.end}; the other frames are the "
                   "source's own.")
        self._reports[key] = (str(png), md, None)
        while len(self._reports) > 256:
            self._reports.pop(next(iter(self._reports)))
        return self._reports[key]

    @user_errors
    def landmark_view(self, video: str | None, result: str | None, edited: str | None,
                      edit_frame: float | None = None, span: str | None = None, request: gr.Request | None = None,
                      progress=gr.Progress()):
        """The landmark view (source | result with the face landmarks the report read, mp4), made when asked for:
        it reads both videos again."""
        if not video or not result:
            raise _error("Run a propagation first.")
        args = self._report_args(video, result, edited, edit_frame, span)
        if isinstance(args, str):
            raise _error(args.strip("*"))
        k, judged = args
        from synclora.metrics.compare import compare_videos

        view = self.files.new_file(_session(request), "landmarks", ".mp4")
        try:
            rep = compare_videos(video, result, edited_frame=edited or None, edit_index=k if edited else None,
                                 landmarks_video=view, identity_frames=0, frame_range=self._judged_range(judged),
                                 progress=self._report_progress(progress, view))
        finally:
            self._after_job(_session(request))
        return str(rep.landmarks_video)

    def _report_args(self, video: str, result: str, edited: str | None, edit_frame, span: str | None):
        """(edit index or None, the judged span or None) for a report, or the sentence saying why there is none."""
        from synclora.video import io, timing

        for clip in (video, result):  # an API caller may send any clip: the app's limits hold here too
            self.check_clip(clip)
        k = int(float(edit_frame)) if _whole_number(edit_frame) and float(edit_frame) >= 0 else None
        span = PropagationSettings.from_values({"span": span}).span
        info = io.probe(video) if k is not None or span else None
        if k is not None and k >= info.n_frames:
            k = None
        judged = timing.resolve_span(span, info) if span else None
        if judged is not None and judged.length < 2:
            return (f"*Only frame {judged.start} was edited: one frame has no motion to judge. The other frames are "
                    "the source's own.*")
        return k, judged

    @staticmethod
    def _judged_range(judged) -> tuple[int, int] | None:
        return None if judged is None or judged.whole else (judged.start, judged.end + 1)

    def _report_progress(self, progress, out: str | Path | None = None):
        def report(f: float, label: str) -> None:
            self.check_running(out)  # a stopping server or a visitor who left ends the measuring here
            progress(float(min(max(f, 0.0), 1.0)), desc=label)

        return report

    def _ready_report(self, session, video, result, edited, span):
        """The report measured while this session's propagation made `result` (same clip, edit and span), if any."""
        ready = self._made.get(session)
        if ready is None:
            return None
        made_key, rep = ready
        try:
            same = made_key == (str(video), str(edited), str(span or ""), _digest(result))
        except OSError:
            return None
        return rep if same else None

    def _keyframe_report(self, video: str, result: str, png: Path, progress) -> tuple:
        """The report of a result made from several keyframes: each keyframe's part judged against it."""
        from synclora.metrics.keyframes import compare_keyframes, verdict
        from synclora.video import io

        plan, images = self._keyframed[str(result)]
        parts = compare_keyframes(video, result, images, plan.governing, (0, io.probe(video).n_frames),
                                  progress=progress)
        head, lines = verdict(parts)
        judged = [p for p in parts if p.report is not None]
        md = [f"#### {sentence(head)}", ""] + [f"- {sentence(line)}" for line in lines]
        if judged:
            longest = max(judged, key=lambda p: p.stop - p.start)
            longest.report.plot(png)
            md += ["", f"The plot shows keyframe {longest.index}'s part ({longest.frames}); each part is judged "
                       "against its own keyframe, the frames outside every span are the source's own."]
        return (str(png) if judged else None), "\n".join(md), None

    @staticmethod
    def report_markdown(rep) -> str:
        """The verdict first, then the numbers and what the edit did, in words."""
        corr = "n/a" if rep.corr is None else f"{rep.corr:.2f}"
        head = f"Overall lag **{rep.lag:+d}** frames · mean r **{corr}**"
        if rep.kept is not None:
            worst = rep.kept.worst(rep.thresholds.edit_min_run)
            if worst is not None:
                head += f" · edit kept **{min(max(worst, 0.0), 1.0):.0%}** at its lowest"
        md = [f"#### {sentence(rep.verdict)}", head, ""]
        if rep.edit is not None:
            from synclora.face.parts import REGION_LABEL

            e = rep.edit
            parts = [f"{REGION_LABEL[n]} **{r.state}**" for n, r in e.regions.items()]
            line = f"The edit on frame {e.edit_index}: " + ", ".join(parts) + "."
            if e.hidden:
                line += (" Cues behind the edit are still measured and drawn in grey, but not judged: a result cannot "
                         "follow what it no longer shows.")
            md += [line, ""]
        md += [f"- {sentence(p)}" for p in rep.problems]
        md += [f"- {sentence(n)}" for n in rep.notes]
        if rep.landmarks_video is not None:
            md += ["", "Below: the curves (source blue, result red), then the face landmarks the report read on both "
                       "videos (source | result)."]
        return "\n".join(md)

    # -------------------------------------------------------------------------------------------------- examples
    def run_example(self, video: str, edited: str, frame: float, edit_frame: float | None = None,
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
