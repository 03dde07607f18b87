"""The app's keyframe list: several edited frames for one propagation, kept on the page and sent with it.

The list lives in two page values that are also the `/edit_keyframes` API's parameters: `keyframe_images` (the edited
images) and `keyframes` (one line per image, `INDEX` or `INDEX SPAN`, as `--keyframe INDEX IMAGE [SPAN]` takes them).
The edit being made (the edited frame and its index) joins the list when the page propagates, so one keyframe needs
no list at all, and re-editing a listed frame replaces it. Plain functions for the list itself, and the page's
handlers of it (`KeyframeStep`, composed into `ui.glue.GradioPipeline`).
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from synclora.config import Keyframe, PropagationSettings
from synclora.errors import InputError
from synclora.limits import MAX_KEYFRAMES
from synclora.ui.common import _edit_index, _error, _index, user_errors


def _path(item) -> Path:
    """A file as Gradio hands it over: a path, or a dict/FileData with one."""
    if isinstance(item, (str, Path)):
        return Path(item)
    if isinstance(item, dict) and item.get("path"):
        return Path(item["path"])
    path = getattr(item, "path", None)
    if path:
        return Path(path)
    raise InputError(f"a keyframe image must be an image file, got {item!r}")


def parse(images, text: str | None) -> list[Keyframe]:
    """The list from its two page values; a mismatch or a malformed line is one sentence."""
    files = [] if images is None else list(images) if isinstance(images, (list, tuple)) else [images]
    lines = [line.strip() for line in (text or "").replace(";", "\n").splitlines() if line.strip()]
    if len(lines) > MAX_KEYFRAMES or len(files) > MAX_KEYFRAMES:
        raise InputError(f"{max(len(lines), len(files))} keyframes were given; a propagation takes at most "
                         f"{MAX_KEYFRAMES}")
    if len(lines) != len(files):
        raise InputError(f"{len(files)} keyframe images but {len(lines)} keyframe lines were given; give one line "
                         "(INDEX or INDEX SPAN) per image")
    out = []
    for line, item in zip(lines, files):
        parts = line.split()
        if not 1 <= len(parts) <= 2:
            raise InputError(f"the keyframe line {line!r} is not INDEX or INDEX SPAN (e.g. 40 or 40 0:99)")
        try:
            index = int(parts[0])
        except ValueError:
            raise InputError(f"the keyframe line {line!r} must start with a frame index (a whole number)") from None
        out.append(Keyframe(index, _path(item), parts[1] if len(parts) == 2 else None))
    return out


def format_list(keys: list[Keyframe]) -> tuple[list[str], str]:
    """The two page values of a list."""
    return [str(k.image) for k in keys], "\n".join(f"{k.index} {k.span}" if k.span else str(k.index) for k in keys)


def put(keys: list[Keyframe], key: Keyframe) -> list[Keyframe]:
    """The list with `key` in it (replacing a keyframe on the same frame: a re-edit), in frame order."""
    return sorted([k for k in keys if k.index != key.index] + [key], key=lambda k: k.index)


def merged(keys: list[Keyframe], edited: str | None, frame: int | None, span: str | None) -> tuple[tuple[Keyframe, ...],
                                                                                              str | None]:
    """(every keyframe, the edited span left for them) from the list and the edit being made: the edit joins the
    list (replacing a listed keyframe on its frame). Where listed keyframes have spans of their own (one look each),
    the edit takes the span box's span as its own; otherwise the span box holds for all of them."""
    own = any(k.span for k in keys)
    if edited and frame is not None and frame >= 0:
        keys = put(keys, Keyframe(int(frame), Path(edited), (span or None) if own else None))
    return tuple(keys), (None if own else span)


def caption(key: Keyframe, n_frames: int | None = None) -> str:
    where = f"frames {key.span.replace(':', '–')}" if key.span else "same look"
    return f"frame {key.index} · {where}"


def gallery(keys: list[Keyframe]) -> list[tuple[str, str]]:
    """(thumbnail, caption) per keyframe, for the page's list."""
    return [(str(k.image), caption(k)) for k in keys]


def status(keys: list[Keyframe]) -> str:
    if not keys:
        return ("*No keyframes listed: the edit above drives the whole propagation. Add it to the list to edit "
                "another frame as well.*")
    frames = ", ".join(str(k.index) for k in keys)
    own = any(k.span for k in keys)
    how = ("each drives its own span, with fades between them" if own else
           "the same look: every frame follows its nearest keyframes")
    return (f"**{len(keys)} keyframe{'s' if len(keys) != 1 else ''}** (frame{'s' if len(keys) != 1 else ''} "
            f"{frames}): {how}. Pick another frame and edit it to add one more; the edit on screen joins them when "
            "you propagate.")


class KeyframeStep:
    """The keyframe list's handlers: add the edit on screen, remove, re-edit, select."""

    @user_errors
    def add_keyframe(self, video: str | None, edited: str | None, edit_index: float | None, span: str | None,
                     own_span: bool, images: list | None, text: str | None):
        """The edit on screen joins the keyframe list (replacing one on the same frame) → (images, lines, gallery,
        status). With `own_span`, it keeps the span box's span as its own look's."""
        if not video:
            raise _error("Upload a video or pick an example first.")
        k = _edit_index(edit_index)
        if not edited or k < 0:
            raise _error("Edit a frame first: draw on it, give an instruction, or upload an edited image.")
        keys = parse(images, text)
        if own_span and not (span or "").strip():
            raise _error("Give this keyframe's span (Edit from frame … to frame) before adding it as a look of its "
                         "own, or untick the box to pin the same look at several frames.")
        if keys and bool(own_span) != any(key.span for key in keys):
            raise _error("The listed keyframes " + ("each have a span of their own" if any(key.span for key in keys)
                                                    else "are one look without spans") +
                         "; tick or untick “Each keyframe its own span” to match them, or remove them first.")
        if own_span:
            PropagationSettings.from_values({"span": span})  # its one sentence when malformed
        keys = put(keys, Keyframe(k, Path(edited), span.strip() if own_span else None))
        if len(keys) > MAX_KEYFRAMES:
            raise _error(f"A propagation takes at most {MAX_KEYFRAMES} keyframes.")
        return self._keyframe_outputs(keys)

    @user_errors
    def remove_keyframe(self, selected: float | None, images: list | None, text: str | None):
        """Remove the keyframe selected in the list → (images, lines, gallery, status)."""
        keys = parse(images, text)
        i = _index(selected, "keyframe", -1)
        if not 0 <= i < len(keys):
            raise _error("Select a keyframe in the list first (click its picture).")
        return self._keyframe_outputs(keys[:i] + keys[i + 1:])

    @user_errors
    def reedit_keyframe(self, selected: float | None, images: list | None, text: str | None):
        """Go to the selected keyframe's frame (and span) to edit it again; the new edit replaces it → (frame,
        span box)."""
        keys = parse(images, text)
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
        images, text = format_list(keys)
        return images or None, text, gallery(keys), status(keys), -1

    def add_keyframe_and_clear(self, *args):
        """`add_keyframe`, then the edit on screen is cleared (it is in the list now): the page's button."""
        images, text, items, note, selected = self.add_keyframe(*args)
        k = _edit_index(args[2])
        return (images, text, items, note, selected, None, -1,
                f"Frame **{k}** is keyframe {len(items)}. Pick another frame and edit it to add one more.")
