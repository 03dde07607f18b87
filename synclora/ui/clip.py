"""Step 1 of the app: the clip — checked against the app's limits as it arrives, its facts said, a player copy made
when a browser could not show exact frames, and the frame to edit picked."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import gradio as gr

from synclora import config
from synclora.edit import editor as editor_mod
from synclora.errors import SyncloraError
from synclora.ui.common import _edit_index, _error, _index, _session, asset, user_errors
from synclora.video.io import format_fps

log = logging.getLogger(__name__)

# Containers/codecs every browser plays with exact frame timing; anything else gets a CFR H.264 copy for the player.
_BROWSER_CODECS = {"h264"}
_BROWSER_CONTAINERS = {"mp4", "mov"}


class ClipStep:
    """The clip and the frame picked in it."""

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
    def load_video(self, video: str | None, frame: float | None = 0, edit_index: float | None = None,
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
        img, caption, editor_value, before_after, status = self.pick_frame(video, k, edit_index, edited)
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

    @user_errors
    def pick_frame(self, video: str | None, frame: float | None, edit_index: float | None = None,
                   edited: str | None = None):
        """Slider moved: preview, caption, editor background, before/after (against the edit if it is this frame)."""
        if not video:
            return None, "No video yet.", None, None, gr.skip()
        from synclora.edit.image import load_image
        from synclora.video import io

        info = io.probe(video)
        k = int(min(max(0, _index(frame)), info.n_frames - 1))
        img = io.read_frame(video, k)
        e = _edit_index(edit_index)
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
