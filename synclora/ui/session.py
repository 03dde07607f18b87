"""Per-session working folders: every file a request writes lives in its own session's folder.

Why: a public Space serves many visitors at once; one visitor must never receive (or overwrite) another's frames or
results, and files must not pile up. Folders are named from Gradio's session hash (sanitised: it comes from the
client), removed when the browser session ends (`demo.unload`), and swept after `max_age_s` for clients that never
say goodbye (e.g. `gradio_client` scripts).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_MAX_AGE_S = 6 * 3600


class SessionFiles:
    """Owns one app-wide temp root and one sub-folder per session."""

    def __init__(self, root: str | os.PathLike | None = None, max_age_s: float = DEFAULT_MAX_AGE_S) -> None:
        # Under the system temp dir so Gradio may serve the results without widening `allowed_paths`.
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="synclora-app-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._last_sweep = 0.0
        self.closed = False

    @staticmethod
    def key(session_hash: str | None) -> str:
        """A folder name for the session: the hash itself when harmless, else a digest of it."""
        if session_hash and _SAFE.match(session_hash):
            return session_hash
        return "h" + hashlib.sha256((session_hash or "anonymous").encode()).hexdigest()[:32]

    def dir_for(self, session_hash: str | None) -> Path:
        """The session's folder (created on first use). Old folders of other sessions are swept now and then."""
        if self.closed:  # after shutdown nothing may recreate the deleted root
            from synclora.errors import SyncloraError

            raise SyncloraError("the server is shutting down; try again in a minute")
        self.sweep()
        d = self.root / self.key(session_hash)
        d.mkdir(parents=True, exist_ok=True)
        os.utime(d)  # the sweep measures age from the last use
        return d

    def new_file(self, session_hash: str | None, stem: str, suffix: str) -> Path:
        """A fresh, unique path in the session's folder (the file itself is not created)."""
        d = self.dir_for(session_hash)
        safe = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-")[:40] or "file"
        return d / f"{safe}-{time.strftime('%H%M%S')}-{os.urandom(3).hex()}{suffix}"

    def owns(self, path: str | os.PathLike, session_hash: str | None) -> bool:
        """True when `path` lies inside this session's folder."""
        try:
            Path(path).resolve().relative_to((self.root / self.key(session_hash)).resolve())
        except ValueError:
            return False
        return True

    def remove(self, session_hash: str | None) -> None:
        """Delete the session's folder (called when the browser tab closes)."""
        shutil.rmtree(self.root / self.key(session_hash), ignore_errors=True)

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
