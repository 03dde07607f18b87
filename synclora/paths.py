"""Every path a command reads or writes, checked in one place before any work, and every file written so that a
failure or a signal leaves nothing behind.

Why one place: a command that writes must never destroy what the user gave it (the source video, the edited image, a
LoRA, a manifest) nor overwrite one of its own outputs with another, and a mistake in a path (a folder where a file
was meant, a read-only disk, a pipe) must be said before minutes of work, not found after them. So every command
states its inputs and outputs and calls `check_outputs`; files are written through `atomic_output` (a hidden temp
file renamed into place when complete) so a reader never sees half a file and an interrupted run leaves nothing.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from synclora.errors import InputError, user_error


@dataclass(frozen=True)
class Output:
    """One path a command will write. `suffixes` (lower case) are the file types it may have; `folder=True` means a
    folder the command fills (created when missing). A file's folder must exist unless `make_parents`."""

    path: Path
    what: str  # how the user named it, for messages: "--out", "--side-by-side", "the JSON report", ...
    suffixes: tuple[str, ...] = ()
    folder: bool = False
    make_parents: bool = False


_NAME_MAX = 230  # bytes of a file name we write: 255 (what file systems allow) less room for the temp name


def _kind(mode: int) -> str | None:
    """What a non-regular, non-folder file is, in words (None for a regular file or a folder)."""
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def check_input(path: str | os.PathLike, what: str) -> Path:
    """An existing regular file, or one sentence saying what it is instead. Folders, pipes and devices are refused
    before anything opens them (opening a FIFO waits for a writer forever; /dev/zero never ends)."""
    path = Path(path)
    name = path.name or str(path)  # the name only: in the app, a server's paths are not the visitor's business
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{what} not found: {name}") from None
    except OSError as exc:
        raise user_error(exc) or InputError(f"{what} {name} cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} {name} is a folder, not a file")
    kind = _kind(st.st_mode)
    if kind:
        raise InputError(f"{what} {name} is {kind}, not a regular file")
    return path


def _identity(path: Path) -> tuple[str, tuple[int, int] | None]:
    """(resolved path, (device, inode) when the file exists): two paths are the same file when either matches, which
    catches `..` spellings, symlinks and hard links alike."""
    try:
        resolved = os.path.normcase(str(path.resolve()))
    except (OSError, RuntimeError):  # a symlink loop (Python 3.11 raises RuntimeError): compare the spelling
        resolved = os.path.normcase(os.path.abspath(path))
    try:
        st = path.stat()
        return resolved, (st.st_dev, st.st_ino)
    except OSError:
        return resolved, None


def _same(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] or (a[1] is not None and a[1] == b[1])


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_writable(folder: Path, what: str) -> None:
    """Write (and remove) a hidden file in `folder`: the only honest test of a read-only mount, a full quota or
    permissions (root passes `os.access` everywhere)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".synclora-write-check-", dir=folder)
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise InputError(f"cannot write {what} into {folder} ({reason})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def _check_one(out: Output) -> None:
    p = Path(out.path)
    if not str(p) or p.name in ("", ".", ".."):
        raise InputError(f"{out.what} needs a {'folder' if out.folder else 'file'} name, got {str(p)!r}")
    if len(os.fsencode(p.name)) > _NAME_MAX:  # the temp name adds ~16 bytes; file systems allow 255
        raise InputError(f"the name given for {out.what} is {len(os.fsencode(p.name))} bytes long; file names of at "
                         f"most {_NAME_MAX} bytes can be written")
    try:
        st: os.stat_result | None = p.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise user_error(exc) or InputError(f"{out.what} {p} cannot be used ({exc.strerror})") from None
    if st is not None and _kind(st.st_mode):
        raise InputError(f"{out.what} {p} is {_kind(st.st_mode)}; give the path of a regular "
                         f"{'folder' if out.folder else 'file'}")
    if out.folder:
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise InputError(f"{out.what} {p} is an existing file, not a folder")
        target = p if st is not None else _nearest_existing(p)
        if not target.is_dir():
            raise InputError(f"{out.what} {p} cannot be created: {target} is not a folder")
        _check_writable(target, out.what)
        return
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise InputError(f"{out.what} {p} is an existing folder; give a file name"
                         + (f" ending in {out.suffixes[0]}" if out.suffixes else ""))
    if out.suffixes and p.suffix.lower() not in out.suffixes:
        raise InputError(f"{out.what} must be a {' or '.join(out.suffixes)} file, got {p.name}")
    parent = p.absolute().parent
    if not parent.exists():
        if not out.make_parents:
            raise InputError(f"output folder does not exist: {p.parent}")
        parent = _nearest_existing(parent)
    if not parent.is_dir():
        raise InputError(f"{out.what} {p} cannot be written: {parent} is not a folder")
    _check_writable(parent, out.what)


def check_outputs(outputs: Sequence[Output], inputs: Sequence[tuple[str | os.PathLike | None, str]] = ()) -> None:
    """Check every path a command will write, before any work: the right type, a folder that exists and can be
    written, not a pipe or device, never one of the `inputs` ((path, what) pairs; None entries are skipped) and never
    another of the outputs. One `InputError` sentence for the first problem found."""
    seen_inputs = [(_identity(Path(p)), what) for p, what in inputs if p is not None and str(p)]
    seen_outputs: list[tuple[tuple, Output]] = []
    for out in outputs:
        _check_one(out)
        ident = _identity(Path(out.path))
        for other, what in seen_inputs:
            if _same(ident, other):
                raise InputError(f"{out.what} {Path(out.path).name} is {what} itself; choose another name so "
                                 f"{what} is kept")
        for other, prev in seen_outputs:
            if _same(ident, other):
                raise InputError(f"{prev.what} and {out.what} are the same file ({Path(out.path).name}); give them "
                                 "different names")
        seen_outputs.append((ident, out))


def temp_path(path: str | os.PathLike) -> Path:
    """A hidden, unique name next to `path` for writing it: `.<name>.<random>.part` (never served, never reused).
    A temp name of a temp name (an atomic writer filling a staged output) keeps the output's own prefix,
    `.<name>.<random>.<random>.part`, so whatever a killed run leaves is still named after the output."""
    path = Path(path)
    name = path.name
    if name.startswith(".") and name.endswith(".part"):
        name = name[1: -len(".part")]
    return path.parent / f".{name}.{uuid.uuid4().hex[:8]}.part"


def save_figure(fig, path: str | os.PathLike, dpi: int = 80) -> Path:
    """Write a matplotlib figure as PNG at `path`, atomically (never half a picture), and release it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path` to write; when the block ends normally it replaces `path` in one step, on any
    exception (a signal included, see `synclora.signals`) it is removed. Writers that infer a format from the file
    name (matplotlib, Pillow) must be told the format: the temp name ends in `.part`."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not exc.filename:  # e.g. a full disk under a writer that does not say where
            exc.filename = str(path)
        raise


@contextlib.contextmanager
def staged_outputs(*paths: str | os.PathLike | None) -> Iterator[tuple[Path | None, ...]]:
    """All of a call's outputs, or none of them, and never a loss: yield a hidden staging path next to each output
    (None stays None) for the block to write; when the block ends normally, every staged file is moved into place
    (`commit`), else every staged file is removed. Either way a file that was at an output path before the call is
    replaced only by a complete new one, and never deleted: a failed or stopped run leaves what the user had exactly
    as it was. A staging path the block did not write is skipped."""
    targets = [Path(p) if p is not None else None for p in paths]
    staged = tuple(temp_path(t) if t is not None else None for t in targets)
    try:
        yield staged
        commit([(s, t) for s, t in zip(staged, targets) if s is not None and t is not None and s.exists()])
    except BaseException:
        for s in staged:
            if s is not None:
                with contextlib.suppress(OSError):
                    s.unlink()
        raise


def commit(moves: Sequence[tuple[Path, Path]]) -> None:
    """Move each complete (staged, target) file into place, together: if one move fails (or a signal lands between
    them), the targets already replaced get back the file they had (kept as a hard link until the end) and the
    ones that had none are removed, so the outputs are all new or all as they were."""
    from synclora.signals import raise_if_stopped

    raise_if_stopped()  # a stopped run commits nothing, even if a library swallowed the signal's exception
    done: list[tuple[Path, Path | None, bool]] = []  # (target, its old file's backup, whether it had one)
    try:
        for staged, target in moves:
            backup = None
            existed = target.exists()
            if existed:
                backup = temp_path(target)
                try:
                    os.link(target, backup)
                except OSError:  # a file system without hard links: the old file is replaced without a way back
                    backup = None
            done.append((target, backup, existed))
            os.replace(staged, target)
    except BaseException:
        for target, backup, existed in reversed(done):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, target)
                elif not existed:
                    target.unlink()
        raise
    finally:
        for _, backup, _ in done:
            if backup is not None:
                with contextlib.suppress(OSError):
                    backup.unlink()


def remove_outputs(paths: Sequence[str | os.PathLike | None]) -> None:
    """Remove what a failed call already wrote (a failed call leaves nothing, not half of its outputs). Only for
    files the call created: outputs that may replace a user's file go through `staged_outputs`."""
    for p in paths:
        if p is not None:
            with contextlib.suppress(OSError):
                Path(p).unlink()
