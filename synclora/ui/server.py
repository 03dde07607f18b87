"""Build the app once per process (models loaded at start-up, as ZeroGPU asks) and launch it with safe defaults.

Settings come from the environment so a Space can be configured without code (all optional):
SYNCLORA_BACKEND (auto|flow|synclora), SYNCLORA_QUALITY (full|preview), SYNCLORA_MODEL (real|tiny),
SYNCLORA_MAX_UPLOAD_MB (200), SYNCLORA_QUEUE_SIZE (16), SYNCLORA_PRELOAD (1), SYNCLORA_CACHE_EXAMPLES (1).
"""

from __future__ import annotations

import argparse
import logging
import os

import gradio as gr

from synclora.config import PropagationSettings
from synclora.errors import SyncloraError
from synclora.ui.glue import DEFAULT_MAX_UPLOAD_MB, GradioPipeline
from synclora.ui.layout import build, css, theme
from synclora.ui.session import SessionFiles

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 16


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def default_settings() -> PropagationSettings:
    d = PropagationSettings()
    return PropagationSettings(
        backend=_env("SYNCLORA_BACKEND", d.backend),  # type: ignore[arg-type]
        quality=_env("SYNCLORA_QUALITY", d.quality),  # type: ignore[arg-type]
        model=_env("SYNCLORA_MODEL", d.model),  # type: ignore[arg-type]
    )


def preload(app: GradioPipeline) -> list[str]:
    """Load the propagation backend and the instruction model now, not on the first request. Returns notes."""
    from synclora.edit import instruct
    from synclora.propagate import registry

    notes = []
    try:
        notes.append(f"backend {registry.preload(app.defaults)} loaded")
    except SyncloraError as exc:  # the page still works and says why in the backend panel
        notes.append(f"backend not preloaded: {exc}")
    if app.instruct is not None:
        ok, why = instruct.availability()
        if ok:
            try:
                app.instruct.load()
                notes.append(f"instruction model loaded in {app.instruct.load_seconds:.1f} s")
            except SyncloraError as exc:
                notes.append(f"instruction model not loaded: {exc}")
        else:
            notes.append(f"instruction editing off: {why}")
    for n in notes:
        log.info(n)
    return notes


def create_app(*, preload_models: bool | None = None, cache_examples: bool | None = None) -> gr.Blocks:
    """The Blocks app with its `GradioPipeline` (as `demo.synclora`); loads models unless SYNCLORA_PRELOAD=0."""
    from synclora.edit.instruct import shared_editor

    app = GradioPipeline(
        files=SessionFiles(),
        instruct=shared_editor(),
        defaults=default_settings(),
        max_upload_mb=float(_env("SYNCLORA_MAX_UPLOAD_MB", str(DEFAULT_MAX_UPLOAD_MB))),
    )
    if preload_models if preload_models is not None else _env("SYNCLORA_PRELOAD", "1") == "1":
        preload(app)
    if cache_examples is None:
        cache_examples = _env("SYNCLORA_CACHE_EXAMPLES", "1") == "1"
    demo = build(app, cache_examples=cache_examples)
    demo.synclora = app  # type: ignore[attr-defined]
    queue_size = int(_env("SYNCLORA_QUEUE_SIZE", str(DEFAULT_QUEUE_SIZE)))
    # One GPU job at a time (concurrency_id "gpu" has limit 1); light events run beside it; the queue is bounded.
    demo.queue(max_size=queue_size, default_concurrency_limit=1)
    return demo


def launch(demo: gr.Blocks, *, server_name: str | None = None, server_port: int | None = None, share: bool = False,
           prevent_thread_lock: bool = False, quiet: bool = False):
    """Launch with the hardening defaults: no share link, upload size cap, nothing served but our temp folders."""
    app: GradioPipeline = demo.synclora  # type: ignore[attr-defined]
    return demo.launch(
        server_name=server_name,
        server_port=server_port,
        share=share,
        max_file_size=f"{int(app.max_upload_mb)}mb",
        allowed_paths=[],  # results live under the system temp dir, which Gradio serves via its cache only
        theme=theme(),
        css=css(),
        footer_links=["api", "gradio", "settings"],
        show_error=False,
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
        ssr_mode=False,
    )


def launch_from_cli(demo: gr.Blocks, argv: list[str] | None = None):
    """`python app.py [--host H] [--port P] [--share]`; everything else is configured by SYNCLORA_* variables."""
    p = argparse.ArgumentParser(description="Sync-LoRA portrait video editing app")
    p.add_argument("--host", default=None,
                   help="interface to listen on (default: 127.0.0.1, or GRADIO_SERVER_NAME on a Space)")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    args = p.parse_args(argv)
    return launch(demo, server_name=args.host, server_port=args.port, share=args.share)


_local: dict[str, tuple[gr.Blocks, str]] = {}


def local_server(backend: str = "flow") -> tuple[gr.Blocks, str]:
    """One app per process on a free 127.0.0.1 port, in a background thread (tests, scripts): (demo, url).

    Built with the given default backend and no example caching; later calls return the same server, so several
    test modules share one start-up. It is closed when the process exits.
    """
    import atexit
    import socket

    if backend in _local:
        return _local[backend]
    env = {"SYNCLORA_BACKEND": backend, "SYNCLORA_CACHE_EXAMPLES": "0", "GRADIO_ANALYTICS_ENABLED": "False"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        demo = create_app()
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    app: GradioPipeline = demo.synclora  # type: ignore[attr-defined]

    def close() -> None:
        demo.close()
        app.files.close()

    atexit.register(close)
    _local[backend] = (demo, f"http://127.0.0.1:{port}/")
    return _local[backend]
