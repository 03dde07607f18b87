"""Step 5 of the app: the sync report of a result — drawn from the report measured while the result was made when
there is one, measured from the files otherwise (once per result and visit) — and the landmark view on request."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from synclora.config import PropagationSettings
from synclora.ui.common import _digest, _error, _session, _whole_number, sentence, user_errors


class ReportStep:
    """The sync report panel and the landmark view."""

    @user_errors
    def sync_report(self, video: str | None, result: str | None, edited: str | None, edit_index: float | None = None,
                    span: str | None = None, request: gr.Request | None = None, progress=gr.Progress()):
        """Measure how well the result follows the source over the edited `span` (default: the whole clip) →
        (plot PNG, verdict Markdown, None: the landmark view is made by `landmark_view` when asked for).

        `edit_index`: the source frame the edit was made on (what the edit hides and keeps is measured from it; when
        unknown, the best-matching source frame is used). A result this app just made comes with its report, measured
        while it was made: then this only draws it.
        """
        if not video or not result:
            return None, "*Run a propagation to see its sync report.*", None
        args = self._report_args(video, result, edited, edit_index, span)
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
                      edit_index: float | None = None, span: str | None = None, request: gr.Request | None = None,
                      progress=gr.Progress()):
        """The landmark view (source | result with the face landmarks the report read, mp4), made when asked for:
        it reads both videos again."""
        if not video or not result:
            raise _error("Run a propagation first.")
        args = self._report_args(video, result, edited, edit_index, span)
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

    def _report_args(self, video: str, result: str, edited: str | None, edit_index, span: str | None):
        """(edit index or None, the judged span or None) for a report, or the sentence saying why there is none."""
        from synclora.video import io, timing

        for clip in (video, result):  # an API caller may send any clip: the app's limits hold here too
            self.check_clip(clip)
        k = int(float(edit_index)) if _whole_number(edit_index) and float(edit_index) >= 0 else None
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
