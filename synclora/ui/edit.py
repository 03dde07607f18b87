"""Step 3 of the app: the edited frame — drawn in the in-app editor, uploaded, or made from a text instruction — saved
in the visit's folder with what was done to it."""

from __future__ import annotations

import time

import gradio as gr
import numpy as np
from PIL import Image

from synclora import config
from synclora.edit import editor as editor_mod
from synclora.edit import upload as upload_mod
from synclora.edit.instruct import InstructSettings
from synclora.ui.common import _error, _index, _session, sentence, user_errors


class EditStep:
    """The three ways to edit the picked frame."""

    def _source_frame(self, video: str | None, edit_index: float | None) -> tuple[np.ndarray, int]:
        if not video:
            raise _error("Upload a video or pick an example first.")
        from synclora.video import io

        k = _index(edit_index, "edit index")
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
    def use_drawing(self, value: dict | None, video: str | None, edit_index: float | None,
                    request: gr.Request | None = None):
        """The in-app editor's layers → the edited frame."""
        frame_img, k = self._source_frame(video, edit_index)
        img, notices = editor_mod.compose(value, frame_img)
        return self._save_edit(img, frame_img, k, "drawn", notices, request)

    @user_errors
    def use_upload(self, image: str | None, video: str | None, edit_index: float | None,
                   request: gr.Request | None = None):
        """An uploaded edit → checked and fitted to the frame (with a notice saying what was done)."""
        if not image:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        frame_img, k = self._source_frame(video, edit_index)
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
    def use_instruction(self, text: str, seed: float | None, video: str | None, edit_index: float | None,
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
        frame_img, k = self._source_frame(video, edit_index)
        progress(0.1, desc="editing the frame")
        t0 = time.perf_counter()
        img = self._gpu_instruct(frame_img, text, seed)
        dt = time.perf_counter() - t0
        return self._save_edit(img, frame_img, k, "instruction", [f"edited in {dt:.1f} s, seed {seed}"],
                               request)
