"""Build the app once per process (models loaded at start-up, as ZeroGPU asks) and launch it with safe defaults.

A Space is configured without code, through `SYNCLORA_*` environment variables (all optional; docs/CONFIG.md), read
once into `synclora.runtime.Runtime`.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import logging
import os
import time
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from synclora import limits, runtime, signals
from synclora.config import PropagationSettings
from synclora.errors import SyncloraError
from synclora.ui import gpu
from synclora.ui.glue import GradioPipeline
from synclora.ui.guard import BodyLimit, check_inputs
from synclora.ui.layout import HEAD, build, css, theme
from synclora.ui.session import SessionFiles

log = logging.getLogger(__name__)


def default_settings(rt: runtime.Runtime | None = None) -> PropagationSettings:
    """The app's default settings: the dataclass's, with the backend, quality and model the environment names."""
    rt = rt or runtime.current()
    try:
        return PropagationSettings.from_values(dict(backend=rt.backend, quality=rt.quality, model=rt.model))
    except SyncloraError as exc:
        raise SyncloraError(f"the app's environment (SYNCLORA_BACKEND/QUALITY/MODEL) is invalid: {exc}") from None


def prepare_prompt_cache(app: GradioPipeline) -> list[str]:
    """Make the `3d1t` prompt cache now if Sync-LoRA could run but the cache is missing (or corrupt): inside a GPU call
    (`spaces.GPU` on ZeroGPU, where CUDA exists only inside such calls), fetching only the text encoder. Runs before
    the model is loaded, so on ZeroGPU the call carries no other weights. Returns notes for the backend panel."""
    from synclora.ltx import prompt, weights

    s = app.defaults
    if s.model == "tiny" or s.backend == "flow":
        return []
    try:
        paths = weights.resolve_weights()
    except SyncloraError as exc:
        return [f"Sync-LoRA weights: {exc}"]
    encode = gpu.gpu(duration=gpu.PROMPT_SECONDS)(prompt.encode_and_store)
    status = prompt.ensure_prompt_cache(paths.base_dir, encode=encode, say=log.info)
    (log.info if status.ok else log.warning)("%s", status.message)
    return [status.message]


def preload(app: GradioPipeline) -> list[str]:
    """Load the propagation backend and the instruction model now, not on the first request. Returns notes."""
    from synclora.edit import instruct
    from synclora.propagate import registry

    notes = prepare_prompt_cache(app)
    try:
        t0 = time.perf_counter()
        name = registry.preload(app.defaults)
        notes.append(f"backend {name} loaded in {time.perf_counter() - t0:.0f} s")
    except SyncloraError as exc:  # the page still works and says why in the backend panel
        notes.append(f"backend not preloaded: {exc}")
    except Exception as exc:  # a bug or a broken file we did not foresee: the CPU preview still serves everyone
        log.exception("loading the backend failed")
        notes.append(f"backend not preloaded: {type(exc).__name__}: {exc}")
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
    app.startup_notes = notes
    return notes


def whole_image_files() -> None:
    """Gradio keeps an image a handler returns as an array or PIL image under a name taken from its bytes, and writes
    that file in place each time: when two events return the same picture (the chosen frame, shown by the upload's
    handler and again by the frame slider's) the second write truncates the file while the browser is fetching the
    first, which gets a broken image ("Too much data for declared Content-Length" in the log). The same bytes make the
    same name, so a file already there is whole and is kept; a new one is written aside and renamed into place, as
    Gradio does for the files it copies. Installed once; a Gradio without that function is left as it is."""
    from gradio import processing_utils as pu

    from synclora.paths import atomic_output

    save = getattr(pu, "save_pil_to_cache", None)
    if save is None or getattr(save, "whole_files", False):
        return

    def save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
        data = pu.encode_pil_to_bytes(img, format)
        folder = Path(cache_dir) / pu.hash_bytes(data)
        folder.mkdir(exist_ok=True, parents=True)
        path = (folder / f"{name}.{format}").resolve()
        if path.exists():
            try:
                os.utime(path)  # handed out again: it ages from now, as Gradio's own copies do
            except OSError:
                pass
        else:
            with atomic_output(path) as staging:
                staging.write_bytes(data)
        return str(path)

    save_pil_to_cache.whole_files = True  # type: ignore[attr-defined]
    pu.save_pil_to_cache = save_pil_to_cache


def create_app(rt: runtime.Runtime | None = None, *, preload_models: bool | None = None,
               cache_examples: bool | None = None) -> gr.Blocks:
    """The Blocks app with its `GradioPipeline` (as `demo.synclora`), configured by `rt` (default: the environment);
    loads the models unless `rt.preload` is off."""
    from synclora.edit.instruct import shared_editor

    rt = rt or runtime.current()
    whole_image_files()
    app = GradioPipeline(
        files=SessionFiles(gradio_cache=gr.utils.get_upload_folder()),  # a visit's files there go when it ends
        instruct=shared_editor(),
        defaults=default_settings(rt),
        max_upload_mb=rt.max_upload_mb,
    )
    try:
        if preload_models if preload_models is not None else rt.preload:
            preload(app)
        demo = build(app, cache_examples=rt.cache_examples if cache_examples is None else cache_examples)
    except BaseException:  # stopped (or failed) while starting: the session root made above goes too
        app.files.close()
        raise
    demo.synclora = app  # type: ignore[attr-defined]
    # …except the files Gradio keeps there (examples), whoever used them.
    app.files.keep = lambda: set().union(*(getattr(b, "keep_in_cache", ()) for b in demo.blocks.values()))
    check_inputs(demo)  # an API caller's wrong type is a sentence, not Gradio's generic error
    # One GPU job at a time (concurrency_id "gpu" has limit 1); light events run beside it; the queue is bounded.
    demo.queue(max_size=rt.queue_size, default_concurrency_limit=1)
    return demo


def launch(demo: gr.Blocks, *, server_name: str | None = None, server_port: int | None = None, share: bool = False,
           prevent_thread_lock: bool = False, quiet: bool = False):
    """Launch with the hardening defaults: no share link, upload size cap, nothing served but our temp folders.

    Blocking (the app's own entry point), SIGTERM and SIGHUP — how a Space, a container or a queue worker is
    stopped — end it like Ctrl-C: the server closes, running jobs stop at their next step and remove their partial
    files, and every session's folder is deleted (`GradioPipeline.shutdown`)."""
    app: GradioPipeline = demo.synclora  # type: ignore[attr-defined]
    atexit.register(app.files.close)  # whatever ends the process normally, the session folders go with it
    options = dict(
        server_name=server_name,
        server_port=server_port,
        share=share,
        max_file_size=f"{int(app.max_upload_mb)}mb",
        allowed_paths=[],  # results live under the system temp dir, which Gradio serves via its cache only
        theme=theme(),
        css=css(),
        head=HEAD,
        footer_links=["api", "gradio", "settings"],
        show_error=False,
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
        ssr_mode=False,
        # Every request body capped as it arrives (uploads at their own cap), before Gradio reads it.
        app_kwargs={"middleware": [Middleware(BodyLimit, max_bytes=limits.MAX_REQUEST_BYTES,
                                              upload_bytes=int(app.max_upload_mb * 1e6) + limits.MAX_REQUEST_BYTES)]},
    )
    if prevent_thread_lock:
        return demo.launch(**options)
    try:
        with signals.stop_cleanly():
            # Blocking here, not in Gradio's loop: on a stop that loop closes the server with the visitors' heartbeat
            # streams still open and waits 5 s for them; `demo.close()` below ends them first.
            served = demo.launch(**{**options, "prevent_thread_lock": True})
            while demo.is_running:
                time.sleep(0.1)
            return served
    except KeyboardInterrupt:  # a stop signal (`signals.Terminated`) or Ctrl-C: how a server ends, not a failure
        return None
    finally:
        idle = app.shutdown()
        log.info("server stopped; session files deleted%s", "" if idle else " (some jobs were still running)")
        demo.close()


def launch_from_cli(demo: gr.Blocks, argv: list[str] | None = None):
    """`python app.py [--host H] [--port P] [--share]`; everything else is configured by SYNCLORA_* variables
    (docs/CONFIG.md)."""
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
    import socket

    if backend in _local:
        return _local[backend]
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo = create_app(dataclasses.replace(runtime.current(), backend=backend, cache_examples=False))
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
