"""Shared test set-up (no test may reach a model hub or the network, and no GUI is needed) and shared fixtures."""

import os

import pytest

from support import tls_once
from support.cputime import pytest_addoption, pytest_runtest_protocol, pytest_terminal_summary  # noqa: F401

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("MPLBACKEND", "Agg")

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


# Fixtures that start the app on a local port, or drive a real browser: tests using them get the matching marker, so
# `-m "not server"` / `-m "not browser"` give a quick in-process pass (markers are declared in pyproject.toml).
_MARK_BY_FIXTURE = {"server": "server", "app_url": "server", "browser": "browser"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture in set(getattr(item, "fixturenames", ())) & set(_MARK_BY_FIXTURE):
            item.add_marker(_MARK_BY_FIXTURE[fixture])
