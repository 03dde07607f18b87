"""Stopping cleanly on SIGTERM, SIGHUP and SIGINT: the signal becomes an exception in the main thread, so every
`finally` / `except BaseException` on the way out runs (temp files removed, half-written outputs deleted).

Why: a Space, a queue worker, `timeout`, systemd and a closed terminal stop a process with SIGTERM or SIGHUP, whose
default action ends it on the spot and leaves hidden `.part` files next to the outputs. Only SIGKILL cannot be
caught; then at most a hidden, uniquely named `.part` file remains, which nothing serves or reuses.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGTERM", "SIGHUP", "SIGINT")) if s is not None)


class Terminated(KeyboardInterrupt):
    """A stop signal arrived. A `KeyboardInterrupt`, so code that already cleans up after Ctrl-C does so for SIGTERM."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)

    @property
    def exit_code(self) -> int:
        """The shell's convention for "ended by signal N"."""
        return 128 + self.signum


@contextlib.contextmanager
def stop_cleanly(signums: tuple[int, ...] = SIGNALS) -> Iterator[None]:
    """Within the block, a stop signal raises `Terminated` in the main thread. After the first one, further signals
    are ignored until the block is left, so the clean-up itself cannot be cut short. Outside the main thread (where
    handlers cannot be installed) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, object] = {}

    def handler(signum, frame):
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        raise Terminated(signum)

    for s in signums:
        previous[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
