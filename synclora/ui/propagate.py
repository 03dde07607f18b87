"""Step 4 of the app: propagating the edit through the clip — the backend panel, the settings, admission by memory,
one GPU call or one per model chunk, the sync report measured as the frames pass, and the reproduce line."""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path

import gradio as gr

from synclora import config
from synclora.config import Keyframe, PropagationRequest, PropagationSettings
from synclora.errors import SyncloraError, brief
from synclora.ui import gpu
from synclora.ui import keyframes as keyframe_list
from synclora.ui.common import (
    _digest,
    _edit_index,
    _error,
    _index,
    _session,
    _whole_number,
    sentence,
    takes_settings,
    user_errors,
)
from synclora.video.io import format_fps

log = logging.getLogger(__name__)

# Sources whose cues are kept measured ahead (one per session; the oldest go first).
MAX_SOURCES_KEPT = 64


def _run_chunk(segment):
    """One model chunk, inside its own GPU call (see `GradioPipeline._propagate_on_gpu`)."""
    from synclora.propagate.registry import run_segment

    return run_segment(segment)


class PropagateStep:
    """The propagation and what the page says about it."""

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
    def check_ready(video: str | None, edited: str | None, frame: float | None, edit_index: float | None,
                    keyframes: str | None = None) -> None:
        """Before propagating from the page: a clip, an edit (or listed keyframes), and the edit belongs to the
        chosen frame."""
        if not video:
            raise _error("Upload a video or pick an example first.")
        if not edited and (keyframes or "").strip():
            return
        if not edited:
            raise _error("Edit the frame first: draw on it, give an instruction, or upload an edited image.")
        e, k = _edit_index(edit_index), _index(frame)
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
    @takes_settings
    def edit_video(self, video: str | None, edited: str | None, edit_index: float | None, setting_values: dict,
                   request: gr.Request | None = None, progress=gr.Progress()):
        """Propagate the edited frame (an edit of frame `edit_index`) through the clip (or its `span`, fading in and
        out over `fade` frames) → (result video, side-by-side video, settings Markdown)."""
        if not video:
            raise _error("Give a source video.")
        if not edited:
            raise _error("Give the edited frame (an image file).")
        if not _whole_number(edit_index):
            raise _error(f"The edit index must be a whole number, got {brief(edit_index)}.")
        settings = self.settings_from(setting_values)
        return self._propagate(video, (Keyframe(int(float(edit_index)), Path(edited)),), settings, request, progress)

    @user_errors
    @takes_settings
    def edit_keyframes(self, video: str | None, edited: str | None, edit_index: float | None,
                       keyframe_images: list | None, keyframes: str | None, setting_values: dict,
                       request: gr.Request | None = None, progress=gr.Progress()):
        """Propagate several keyframes at once: `keyframe_images` with `keyframes` (one line per image, `INDEX` or
        `INDEX SPAN`), and the edit being made (`edited`, an edit of frame `edit_index`; optional when the list has
        keyframes) → (result video, side-by-side video, settings Markdown). Without spans the keyframes are one look
        pinned at several frames (`span` holds for all); with a span on each, one look per span (the edit being made
        takes `span` as its own)."""
        if not video:
            raise _error("Give a source video.")
        listed = keyframe_list.parse(keyframe_images, keyframes)
        if edited and not _whole_number(edit_index):
            raise _error(f"The edit index must be a whole number, got {brief(edit_index)}.")
        keys, span = keyframe_list.merged(listed, edited, int(float(edit_index)) if edited else None,
                                          setting_values["span"])
        if not keys:
            raise _error("Give the edited frame (an image file), or a list of keyframes.")
        settings = self.settings_from(dict(setting_values, span=span))
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
