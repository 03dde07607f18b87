"""Stopping cleanly on SIGTERM, SIGHUP and SIGINT: the signal becomes an exception in the main thread, so every
`finally` / `except BaseException` on the way out runs (temp files removed, half-written outputs deleted).

Why: a Space, a queue worker, `timeout`, systemd and a closed terminal stop a process with SIGTERM or SIGHUP, whose
default action ends it on the spot and leaves hidden `.part` files next to the outputs. Only SIGKILL cannot be
caught; then at most a hidden, uniquely named `.part` file remains, which nothing serves or reuses.

A signal can land anywhere, so four more rules:

- While the entry points are still importing (`while_starting`, the first tenths of a second), nothing has been
  written: the process ends at once with one line, instead of an exception raised inside a library's import (which
  numpy and MediaPipe turn into an `ImportError` traceback, and some imports swallow).
- An exception raised inside an import comes back as an `ImportError` (whose chain holds the `Terminated`, or not:
  numpy's C import replaces it): `stop_of(exc)` and `received()` tell, so the CLI still says "stopped by SIGTERM".
- A signal that lands inside an import in the run (a backend imported lazily) waits until that import is done: C
  import code prints an exception raised there as a traceback of its own. A short timer re-checks every 20 ms.
- After a stop, a CLI run hushes file descriptor 2 (`stop_cleanly(hush_stderr=True)`): native threads still winding
  down (MediaPipe's graphs log from C++ as they start) would otherwise print around the one line the CLI says
  (`say`: straight to the real stderr; the process of an entry point stays hushed to its end).
- A signal is remembered (`received`) even when some library's bare `except:` swallowed its exception: outputs are
  never committed after it (`raise_if_stopped`, called by `paths.commit`), and the CLI ends with 128+N.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
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


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


_received: int | None = None  # the stop signal that arrived inside the current (or last) `stop_cleanly` block
_open_blocks = 0  # `stop_cleanly` blocks now open in the main thread


def received() -> int | None:
    """The stop signal that arrived inside the current (or last) `stop_cleanly` block, if any."""
    return _received


def raise_if_stopped() -> None:
    """Raise `Terminated` again if a stop signal arrived, even when its first exception was swallowed on the way.
    Only inside the `stop_cleanly` block it arrived in (what a process does after that block is its own), and only in
    the main thread, the one the signal stopped (a server's workers are stopped their own way)."""
    if _open_blocks and _received is not None and threading.current_thread() is threading.main_thread():
        raise Terminated(_received)


def stop_of(exc: BaseException | None) -> KeyboardInterrupt | None:
    """The stop (`Terminated` or Ctrl-C's `KeyboardInterrupt`) behind `exc`: itself, or one in its chain of causes
    (an import that failed because the signal landed inside it)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def while_starting(what: str = "starting", signums: tuple[int, ...] = SIGNALS) -> None:
    """Install, first thing in an entry point, handlers that end the process at once with one line and 128+N: while
    modules import, nothing is written yet, and an exception raised inside an import is not one we can clean up
    after. `stop_cleanly` replaces them for the run itself."""
    global _entry
    if threading.current_thread() is not threading.main_thread():
        return
    _entry = True

    def handler(signum, frame):
        os.write(2, f"stopped by {signal.Signals(signum).name} while {what}; nothing was written\n".encode())
        os._exit(128 + signum)

    for s in signums:
        signal.signal(s, handler)


_RECHECK_S = 0.02
_real_stderr: int | None = None  # while hushed: the file descriptor 2 had before
_entry = False  # this process is an entry point's (`while_starting` ran): it ends soon after a stop


def stderr_hushed() -> bool:
    """Whether fd 2 is hushed after a stop (`quiet_native_stderr` then leaves it so on its way out)."""
    return _real_stderr is not None


def speak() -> None:
    """Give fd 2 back after a hush, to say the last line."""
    global _real_stderr
    if _real_stderr is None:
        return
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os.dup2(_real_stderr, 2)
    os.close(_real_stderr)
    _real_stderr = None


def say(line: str) -> None:
    """A stopped run's last line. In an entry point's process fd 2 stays hushed to the end and the line goes straight
    to the real stderr: MediaPipe's native threads, still winding down, would otherwise print after it (measured:
    absl's "All log messages before absl::InitializeLog()" a moment after the line). In-process callers (tests, a
    server) get fd 2 back first."""
    if _entry and _real_stderr is not None:
        with contextlib.suppress(OSError):
            os.write(_real_stderr, (line + "\n").encode())
        return
    speak()
    print(line, file=sys.stderr)


def _hush(real: int) -> None:
    global _real_stderr
    if _real_stderr is not None:
        return
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    _real_stderr = os.dup(real)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)


def _importing(frame) -> bool:
    """Whether `frame` runs inside Python's import machinery (a module's body, or a finder)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def stop_cleanly(signums: tuple[int, ...] = SIGNALS, hush_stderr: bool = False) -> Iterator[None]:
    """Within the block, a stop signal raises `Terminated` in the main thread (once any import under way is done).
    After the first one, further signals are ignored until the block is left, so the clean-up itself cannot be cut
    short. With `hush_stderr`, fd 2 is hushed from the stop on (see `speak`). Outside the main thread (where handlers
    cannot be installed) this does nothing."""
    global _received, _open_blocks
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, object] = {}
    real = None
    if hush_stderr:
        with contextlib.suppress(OSError):
            real = os.dup(2)
    alarm = getattr(signal, "SIGALRM", None)
    _received = None

    def stop(frame) -> None:
        if alarm is not None and _importing(frame):
            signal.signal(alarm, lambda _s, f: stop(f))
            signal.setitimer(signal.ITIMER_REAL, _RECHECK_S)
            return
        raise Terminated(_received)

    def handler(signum, frame):
        global _received
        _received = int(signum)
        for s in signums:
            signal.signal(s, signal.SIG_IGN)
        if real is not None:
            _hush(real)
        stop(frame)

    for s in signums:
        previous[s] = signal.signal(s, handler)
    before_alarm = signal.getsignal(alarm) if alarm is not None else None
    _open_blocks += 1
    try:
        yield
    finally:
        _open_blocks -= 1
        if not (_entry and _received is not None):  # an entry point's process stays hushed to its end (`say`)
            speak()
        if real is not None:
            os.close(real)
        if alarm is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(alarm, before_alarm)
        for s, h in previous.items():
            signal.signal(s, h)
