"""The app's keyframe list: several edited frames for one propagation, kept on the page and sent with it.

The list lives in two page values that are also the `/edit_keyframes` API's parameters: `keyframe_images` (the edited
images) and `keyframes` (one line per image, `INDEX` or `INDEX SPAN`, as `--keyframe INDEX IMAGE [SPAN]` takes them).
The edit being made (the edited frame and its index) joins the list when the page propagates, so one keyframe needs
no list at all, and re-editing a listed frame replaces it. Plain functions: `ui.glue` and tests call them.
"""

from __future__ import annotations

from pathlib import Path

from synclora.config import Keyframe
from synclora.errors import InputError
from synclora.limits import MAX_KEYFRAMES


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
