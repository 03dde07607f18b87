"""Per-session working folders: every file a request writes lives in its own session's folder.

Why: a public Space serves many visitors at once; one visitor must never receive (or overwrite) another's frames or
results, and files must not pile up. Folders are named from Gradio's session hash (sanitised: it comes from the
client), removed when the browser session ends (`demo.unload`), and swept after `max_age_s` for clients that never
say goodbye (e.g. `gradio_client` scripts).

A visit's files also live in Gradio's own cache: its uploads, and a copy of every result Gradio served. When the
visit ends those go too: the copies are found by name (every name `new_file` hands out is unique), the uploads are
the ones the visit's calls named (`note`), unless another live visit uses the same file or Gradio keeps it (an
example). A visit that has ended gets no new folder: a job still running for it stops at its next step, and
whatever it wrote meanwhile is removed (`ended`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

from synclora.errors import SyncloraError

_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_MAX_AGE_S = 6 * 3600
_ENDED_KEPT = 4096  # ended visits remembered (so a late job cannot recreate their folder)


def _newer(path: Path, t: float) -> bool:
    """True when `path` was written after `t` (uploaded again since: Gradio replaces the file)."""
    try:
        return path.stat().st_mtime > t
    except OSError:
        return False


class SessionEnded(SyncloraError):
    """The visitor closed the page: their job stops and leaves nothing."""


class SessionFiles:
    """Owns one app-wide temp root and one sub-folder per session."""

    def __init__(self, root: str | os.PathLike | None = None, max_age_s: float = DEFAULT_MAX_AGE_S,
                 gradio_cache: str | os.PathLike | None = None, keep: Callable[[], set[str]] | None = None) -> None:
        # Under the system temp dir so Gradio may serve the results without widening `allowed_paths`.
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="synclora-app-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._last_sweep = 0.0
        self.closed = False
        # Gradio's cache folder, and the files in it Gradio must keep (examples); None: nothing there is ours.
        self.gradio_cache = Path(gradio_cache).resolve() if gradio_cache else None
        self.keep = keep or set
        self._names: dict[str, set[str]] = {}  # session key -> names new_file handed out
        self._uploads: dict[str, dict[Path, float]] = {}  # session key -> {file in Gradio's cache: when named}
        self._ended: OrderedDict[str, float] = OrderedDict()

    @staticmethod
    def key(session_hash: str | None) -> str:
        """A folder name for the session: the hash itself when harmless, else a digest of it."""
        if session_hash and _SAFE.match(session_hash):
            return session_hash
        return "h" + hashlib.sha256((session_hash or "anonymous").encode()).hexdigest()[:32]

    def dir_for(self, session_hash: str | None) -> Path:
        """The session's folder (created on first use). Old folders of other sessions are swept now and then."""
        if self.closed:  # after shutdown nothing may recreate the deleted root
            raise SyncloraError("the server is shutting down; try again in a minute")
        if self.ended(session_hash):
            raise SessionEnded("this visit has ended; reload the page to start again")
        self.sweep()
        d = self.root / self.key(session_hash)
        d.mkdir(parents=True, exist_ok=True)
        os.utime(d)  # the sweep measures age from the last use
        return d

    def new_file(self, session_hash: str | None, stem: str, suffix: str) -> Path:
        """A fresh, unique path in the session's folder (the file itself is not created)."""
        d = self.dir_for(session_hash)
        safe = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-")[:40] or "file"
        path = d / f"{safe}-{time.strftime('%H%M%S')}-{os.urandom(3).hex()}{suffix}"
        with self._lock:
            self._names.setdefault(self.key(session_hash), set()).add(path.name)
        return path

    def names(self, session_hash: str | None) -> set[str]:
        """Every file name handed out to the session (its outputs, and their side files)."""
        with self._lock:
            return set(self._names.get(self.key(session_hash), ()))

    def note(self, session_hash: str | None, paths: Iterable[str | os.PathLike | None]) -> None:
        """Remember the files in Gradio's cache that this session's calls named (its uploads)."""
        if self.gradio_cache is None:
            return
        key = self.key(session_hash)
        for p in paths:
            if not p or not isinstance(p, (str, os.PathLike)):
                continue
            path = Path(p).resolve()
            if path.is_relative_to(self.gradio_cache) and path != self.gradio_cache:
                with self._lock:
                    self._uploads.setdefault(key, {})[path] = time.time()

    def ended(self, session_hash: str | None) -> bool:
        """True once the session's visit has ended (`remove`)."""
        with self._lock:
            return self.key(session_hash) in self._ended

    def owns(self, path: str | os.PathLike, session_hash: str | None) -> bool:
        """True when `path` lies inside this session's folder."""
        try:
            Path(path).resolve().relative_to((self.root / self.key(session_hash)).resolve())
        except ValueError:
            return False
        return True

    def remove(self, session_hash: str | None) -> None:
        """The visit ended (its tab closed): delete the session's folder and its files in Gradio's cache, and make no
        new folder for it. Safe to call again (a job that ran on removes what it wrote)."""
        key = self.key(session_hash)
        with self._lock:
            self._ended[key] = time.time()
            self._ended.move_to_end(key)
            while len(self._ended) > _ENDED_KEPT:
                self._ended.popitem(last=False)
        shutil.rmtree(self.root / key, ignore_errors=True)
        self._remove_cached(key)

    def _remove_cached(self, key: str) -> None:
        if self.gradio_cache is None:
            return
        with self._lock:
            names = self._names.pop(key, set())
            uploads = self._uploads.pop(key, {})
            in_use = set().union(*self._uploads.values()) if self._uploads else set()
        keep = {Path(p).resolve() for p in self.keep()}
        # Gradio stores an upload by its content: the same bytes uploaded again since this visit last named the file
        # (by a visitor whose call has not named it yet) replaced it — that one stays.
        found = [p for p, named in uploads.items() if p not in in_use and not _newer(p, named)]
        if names:  # Gradio's copies of our outputs: <cache>/<content hash>/<our unique name>
            with contextlib.suppress(OSError):
                found += [f for d in self.gradio_cache.iterdir() if d.is_dir() for f in d.iterdir() if f.name in names]
        for f in found:
            if f.resolve() in keep:
                continue
            with contextlib.suppress(OSError):
                f.unlink()
            with contextlib.suppress(OSError):
                f.parent.rmdir()  # only when empty: another file with the same content keeps it

    def sweep(self, now: float | None = None, force: bool = False) -> list[str]:
        """Remove session folders unused for `max_age_s`; runs at most once a minute unless forced."""
        now = time.time() if now is None else now
        with self._lock:
            if not force and now - self._last_sweep < 60:
                return []
            self._last_sweep = now
        removed = []
        for d in self.root.iterdir() if self.root.is_dir() else ():
            try:
                if d.is_dir() and now - d.stat().st_mtime > self.max_age_s:
                    shutil.rmtree(d, ignore_errors=True)
                    removed.append(d.name)
            except FileNotFoundError:
                continue
        return removed

    def close(self) -> None:
        """Remove the whole root (app shutdown); no session folder is made after this."""
        self.closed = True
        shutil.rmtree(self.root, ignore_errors=True)
