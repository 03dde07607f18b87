"""Shared test set-up (no test may reach a model hub or the network, and no GUI is needed) and shared fixtures."""

import atexit
import os
import shutil
import tempfile

import pytest

from support import tls_once
from support.cputime import (  # noqa: F401
    pytest_addoption,
    pytest_runtest_logreport,
    pytest_runtest_makereport,
    pytest_terminal_summary,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("MPLBACKEND", "Agg")
# A closed tab is noticed at the server's next heartbeat: every 15 s by default, every half second here (Gradio's own
# end-to-end tests use a quarter), so the tests of visits that end wait for the clean-up, not for the clock.
os.environ.setdefault("GRADIO_HEARTBEAT_INTERVAL", "0.5")
# Gradio's upload cache of this test process alone: a visit that ends deletes its files there by name, and identical
# test media (the same seed) share a name, so a shared /tmp/gradio would let one run (or xdist worker) delete what
# another is serving. Made before any test imports gradio (some of its modules read the variable at import).
# Removed at exit after the servers' own clean-up (atexit runs last what registers first).
if os.environ.get("GRADIO_TEMP_DIR"):
    os.makedirs(os.environ["GRADIO_TEMP_DIR"], exist_ok=True)
os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="synclora-tests-gradio-", dir=os.environ.get("GRADIO_TEMP_DIR"))
atexit.register(shutil.rmtree, os.environ["GRADIO_TEMP_DIR"], ignore_errors=True)

tls_once.install()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """A small talking-face clip, its frame 0 with a red patch as PNG, and the frames (the bad-input table's base)."""
    from support.bad_inputs import make_base

    return make_base(tmp_path_factory.mktemp("base"))


@pytest.fixture()
def app(tmp_path):
    """The app's logic (`GradioPipeline`) on the CPU flow backend, with its session files under `tmp_path`."""
    from synclora.config import PropagationSettings
    from synclora.ui.glue import GradioPipeline
    from synclora.ui.session import SessionFiles

    return GradioPipeline(files=SessionFiles(tmp_path / "sessions"), instruct=None,
                          defaults=PropagationSettings(backend="flow"), max_upload_mb=5)


@pytest.fixture(scope="session")
def app_url() -> str:
    """The app on the flow backend, served on a free local port: one start-up per test process."""
    from support.browser import CHROMIUM

    if not os.path.isfile(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: install it with `apt-get install -y chromium` "
                    "(or set SYNCLORA_CHROMIUM to its path); the browser test needs a real browser.")
    from synclora.ui.server import local_server

    return local_server("flow")[1]


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module; each test opens its own page or context. Not per session: Playwright's
    sync API keeps an event loop running in the main thread while it is open, and later tests call asyncio.run()."""
    from playwright.sync_api import sync_playwright

    from support.browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


# Fixtures that start the app on a local port, or drive a real browser: tests using them get the matching marker, so
# `-m "not server"` / `-m "not browser"` give a quick in-process pass (markers are declared in pyproject.toml).
_MARK_BY_FIXTURE = {"server": "server", "app_url": "server", "browser": "browser"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture in set(getattr(item, "fixturenames", ())) & set(_MARK_BY_FIXTURE):
            item.add_marker(_MARK_BY_FIXTURE[fixture])


def pytest_collection_finish(session):
    """In a run of many tests, the libraries every worker loads are loaded once and then frozen out of the garbage
    collector's sight: each full collection (Python's own, and every `gc.collect()` a model build or a test makes)
    otherwise walks their millions of objects again — a tenth of the quick pass's CPU time (`python -m pytest -m "not
    slow"`: 26 of 241 CPU-s in the collector, 13 after). A run of a few tests is not made to load what it may not
    need. Nothing a test makes is frozen."""
    import gc
    import importlib

    if len(session.items) >= 200:
        for name in ("torch", "diffusers", "gradio", "mediapipe", "matplotlib.pyplot", "peft", "transformers"):
            importlib.import_module(name)
    gc.collect()
    gc.freeze()
