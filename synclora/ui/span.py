"""Step 2 of the app: the edited span, next to the frame picker.

Two sliders (first and last edited frame), the span as text (frames or seconds, what the API and `--span` take) and
the fade. They are kept consistent with each other and with the frame slider: the chosen frame always lies inside the
span (moving the frame outside widens the span; a span slider stops at the frame). The handlers return (start slider,
end slider, span text, caption).
"""

from __future__ import annotations

import gradio as gr

from synclora.config import PropagationSettings
from synclora.ui.common import user_errors


class SpanStep:
    """The edited span's sliders, text and fade."""

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

    def _typed_span(self, video: str, frame: float | None, text: str | None, fade: float | None):
        from synclora.video import io, timing

        info = io.probe(video)
        k = int(min(max(0, int(frame or 0)), info.n_frames - 1))
        return timing.resolve_span(PropagationSettings.from_values({"span": text}).span, info,
                                   fade=self._fade(fade), edit_index=k)

    @user_errors
    def span_from_text(self, video: str | None, frame: float | None, start: float | None = None,
                       end: float | None = None, text: str | None = None, fade: float | None = None):
        """The span typed (frames or seconds) or the fade changed: the sliders follow; a bad span is one sentence."""
        if not video:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return self._span_outputs(self._typed_span(video, frame, text, fade), text=(text or "").strip())

    @user_errors
    def span_text_left(self, video: str | None, frame: float | None, start: float | None = None,
                       end: float | None = None, text: str | None = None, fade: float | None = None):
        """The span box lost focus: apply what is typed there unless the sliders already show that span. A box left
        right after Enter (or for a slider) holds the span the sliders were just set to; applied again, its event,
        sent beside the slider's and arriving after it on a busy server, undid the slider's move."""
        if not video:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        span = self._typed_span(video, frame, text, fade)
        if start is not None and end is not None and (span.start, span.end) == (int(start), int(end)):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return self._span_outputs(span, text=(text or "").strip())

    @user_errors
    def span_follow_frame(self, video: str | None, frame: float | None, start: float | None = None,
                          end: float | None = None, text: str | None = None, fade: float | None = None):
        """The frame picker moved: widen the span to keep the chosen frame inside it (nothing changes otherwise)."""
        if not video or start is None or end is None or frame is None or start <= frame <= end:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return self.span_from_sliders(video, frame, start, end, text, fade)
