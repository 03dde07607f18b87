"""What every step of the app shares: one place for its error handling and for the calls in flight.

Every handler is wrapped in `user_errors`: a user's mistake surfaces as `gr.Error` with one sentence (the CLI's
sentence, through `errors.user_error`), a bug as one neutral sentence with the traceback in the log — never a
traceback on the page. The wrapper also counts the calls in flight (`Calls`), so a shutdown can wait for them to
clean up, and notes a visit's uploads so they leave Gradio's cache when the visit ends. Here too: reading the numbers
a page or an API caller sends (anything at all), the visit of a call, and the UI copy in assets/.
"""

from __future__ import annotations

import functools
import inspect
import logging
import typing
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from synclora import config
from synclora.errors import SyncloraError, brief, shown, user_error
from synclora.ui.session import SessionEnded

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def asset(name: str) -> str:
    """UI copy from assets/ (kept out of code so wording can change without touching logic)."""
    return (ASSETS / name).read_text(encoding="utf-8").strip()


class ServerStopping(SyncloraError):
    """The server is shutting down (SIGTERM): running jobs stop at their next step, new ones are turned away."""


def user_errors(fn: Callable) -> Callable:
    """Show our errors — and disk, permission, codec and image-library failures, through `errors.user_error`, the
    same place the CLI uses — as `gr.Error` with their sentence; show bugs as one neutral sentence (traceback to the
    log). Also counts the calls in flight, so a shutdown can wait for them to clean up."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        app = args[0] if args and isinstance(args[0], Calls) else None
        try:
            if app is not None:
                app._enter()
                request = next((a for a in args if isinstance(a, gr.Request)), kwargs.get("request"))
                if request is not None:  # the visit's uploads, removed from Gradio's cache when it ends
                    app.files.note(_session(request), [a for a in (*args, *kwargs.values()) if isinstance(a, str)])
            try:
                return fn(*args, **kwargs)
            finally:
                if app is not None:
                    app._leave()
        except gr.Error:
            raise
        except Exception as exc:
            error = user_error(exc)
            if error is None:
                log.exception("unexpected error in %s", fn.__name__)
                raise gr.Error(
                    f"Something went wrong on the server ({type(exc).__name__}); the details are in its log.",
                    print_exception=False,
                ) from None
            raise gr.Error(sentence(shown(str(error))), print_exception=False) from None

    return wrapper


def takes_settings(fn: Callable) -> Callable:
    """Put the propagation settings (`config.setting_fields`) in the place of `fn`'s `setting_values` parameter, each
    by name with the default None. Gradio reads an endpoint's parameters from its signature, so the API lists every
    setting while the settings are written once, in config.py; `fn` receives the given values as one dict."""
    # Real types, not the source's strings: Gradio resolves the annotations to find the `gr.Request` parameter.
    own_types = typing.get_type_hints(fn)
    own = [p.replace(annotation=own_types.get(p.name, p.annotation)) for p in inspect.signature(fn).parameters.values()]
    at = [p.name for p in own].index("setting_values")
    field_types = typing.get_type_hints(config.PropagationSettings)
    names = [f.name for f in config.setting_fields(ui_only=True)]
    settings = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                  annotation=field_types[n] | None) for n in names]
    signature = inspect.Signature([*own[:at], *settings, *own[at + 1:]])

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        given = signature.bind(*args, **kwargs).arguments
        values = {n: given.pop(n, None) for n in names}
        return fn(**given, setting_values=values)

    wrapper.__signature__ = signature
    wrapper.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()
                               if p.annotation is not inspect.Parameter.empty}
    return wrapper


def _error(message: str) -> gr.Error:
    """A user error for the page: shown as a toast, not printed as a traceback in the server log."""
    return gr.Error(message, print_exception=False)


def sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return "Something went wrong."
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _whole_number(value) -> bool:
    """True for 3, 3.0 or "3"; False for None, 2.5, "abc", NaN and infinities (API callers send anything)."""
    try:
        return value is not None and not isinstance(value, bool) and float(value) == int(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def _index(value, what: str = "frame index", default: int = 0) -> int:
    """A whole number from a widget or an API caller (None: `default`), else a sentence."""
    if value is None or value == "":
        return default
    if not _whole_number(value):
        raise _error(f"The {what} must be a whole number, got {brief(value)}.")
    return int(float(value))


def _edit_index(value) -> int:
    """The hidden "edit made on frame" number: -1 (no edit yet) for anything that is not a frame index."""
    return int(float(value)) if _whole_number(value) else -1


def _session(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None) if request is not None else None


def _digest(path: str | Path) -> str:
    """The file's content hash: a result is known by its bytes (the server may hand the page a copy of it)."""
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Calls:
    """The calls in flight and the server's stopping: a stopping server turns new calls away and ends long jobs at
    their next step; a visitor who left ends theirs (`GradioPipeline` holds the state these read)."""

    def _enter(self) -> None:
        with self._active_lock:
            if self.stopping:
                raise ServerStopping("the server is restarting; try again in a minute")
            self._active += 1

    def _leave(self) -> None:
        with self._active_lock:
            self._active -= 1
            self._active_lock.notify_all()

    def check_running(self, out: str | Path | None = None) -> None:
        """Called between steps of long jobs: a stopping server ends them (their clean-up removes partial files), and
        so does a visitor who left (the session folder of the job's output `out` is gone)."""
        if self.stopping:
            raise ServerStopping("the server is restarting; try again in a minute")
        if out is not None and not Path(out).parent.is_dir():
            raise SessionEnded("this visit has ended; the job was stopped")

    def _after_job(self, session: str | None) -> None:
        """A visitor who left while their job ran: what the job wrote since goes too, and the job ends."""
        if self.files.ended(session):
            self.files.remove(session)
            raise SessionEnded("this visit has ended; the job was stopped")

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stop taking calls, let the ones in flight end (up to `timeout` s; long jobs stop at their next step),
        then delete every session's files. True when nothing was still running."""
        with self._active_lock:
            self.stopping = True
            idle = self._active_lock.wait_for(lambda: self._active == 0, timeout)
        self.files.close()
        return idle
