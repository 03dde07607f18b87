"""Bad input, load and faults through the app: the same bad files as the CLI table, 8 clients at once, a bounded
queue, an injected GPU out-of-memory, and what the server will (not) serve.

The in-process half calls `GradioPipeline` methods directly (fast); the served half launches the app on CPU (flow
backend) on localhost and drives it through `gradio_client`, as a Space's visitors and API users do.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from synclora.config import PropagationSettings
from synclora.testing import media
from synclora.ui.glue import GradioPipeline
from synclora.ui.session import SessionFiles
from synclora.video import io

from support.bad_inputs import CASES, Case

# CLI-only cases: output paths and CLI flags have no counterpart in the app (it chooses its own output names).
_CLI_ONLY = {"out-not-mp4", "out-is-source", "out-folder-missing", "dotdot-in-paths", "seed-not-a-number",
             "unknown-backend", "model-files-missing", "frame-not-a-number", "source-is-folder",
             "resolution-zero-synclora", "resolution-negative", "chunk-overlap-negative", "out-name-too-long",
             "side-by-side-is-source"}
APP_CASES = [c for c in CASES if c.id not in _CLI_ONLY]
GENERIC = "Something went wrong"  # the app's words for a bug: no bad input may end there


class _Req:
    def __init__(self, session_hash: str) -> None:
        self.session_hash = session_hash


@pytest.fixture()
def app(tmp_path) -> GradioPipeline:
    return GradioPipeline(files=SessionFiles(tmp_path / "sessions"), instruct=None,
                          defaults=PropagationSettings(backend="flow"), max_upload_mb=5)


def _frame_value(spec: dict):
    text = spec.get("edit_index", "0")
    try:
        return float(text)
    except ValueError:
        return text


@pytest.mark.parametrize("case", APP_CASES,
                         ids=[c.id for c in APP_CASES])
def test_bad_input_table_in_the_app(case: Case, base, tmp_path, app):
    inputs = tmp_path / "in"
    inputs.mkdir()
    spec = case.make(inputs, base)
    video, edited = spec.get("source", base["src"]), spec.get("edited", base["edited"])
    req = _Req("visitor1")
    if case.rc == 2:
        with pytest.raises(gr.Error) as err:
            app.edit_video(str(video), str(edited), _frame_value(spec), "flow", request=req)
        msg = str(err.value.message)
        assert GENERIC not in msg and "Traceback" not in msg and msg.endswith(".")
        assert case.says.lower() in msg.lower()
        session = app.files.root / SessionFiles.key("visitor1")
        assert not session.exists() or not any(session.iterdir()), "a failed run left files behind"
        if case.id not in {"frame-negative", "frame-too-large", "frame-huge", "frame-fraction"} and \
                not case.id.startswith("edited-"):
            with pytest.raises(gr.Error) as err:  # the first step the page runs on a new video says the same
                app.load_video(str(video), 0, request=req)
            assert GENERIC not in str(err.value.message)
    else:
        out, sbs, md = app.edit_video(str(video), str(edited), _frame_value(spec), "flow", request=req)
        assert app.files.owns(out, "visitor1") and app.files.owns(sbs, "visitor1")
        assert io.probe(out).n_frames == io.probe(video).n_frames


def test_app_table_is_broad():
    assert len(APP_CASES) >= 30


@pytest.mark.parametrize("frame", ["abc", None, float("nan"), 1e30, -0.5])
def test_frame_values_an_api_caller_can_send(app, base, frame):
    with pytest.raises(gr.Error) as err:
        app.edit_video(str(base["src"]), str(base["edited"]), frame, "flow", request=_Req("v"))
    assert GENERIC not in str(err.value.message)


@pytest.mark.parametrize("text", ["", "   ", "x" * 5000])
def test_empty_or_absurd_instruction_is_a_sentence(app, base, text):
    with pytest.raises(gr.Error) as err:
        app.use_instruction(text, 0, str(base["src"]), 0, request=_Req("v"))
    msg = str(err.value.message)
    assert GENERIC not in msg and ("instruction" in msg.lower())


def test_upload_over_the_cap_is_refused_before_reading(app, tmp_path, base):
    big = tmp_path / "big.mp4"
    big.write_bytes(base["src"].read_bytes() + bytes(6_000_000))  # over the 5 MB cap of this app
    with pytest.raises(gr.Error) as err:
        app.edit_video(str(big), str(base["edited"]), 0, "flow", request=_Req("v"))
    assert "accepts up to 5 MB" in str(err.value.message)


# ---------------------------------------------------------------------------------------------------- faults
def test_gpu_out_of_memory_is_explained_freed_and_the_next_run_works(app, base, monkeypatch):
    import torch

    from synclora.propagate import flow

    calls = {"n": 0}
    real = flow.FlowPropagator.track

    def oom_once(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            ballast = torch.ones(10_000_000)  # held by the failing frame until memory is freed  # noqa: F841
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(self, *a, **k)

    monkeypatch.setattr(flow.FlowPropagator, "track", oom_once)
    freed = {"n": 0}
    from synclora import pipeline

    real_free = pipeline.free_memory
    monkeypatch.setattr(pipeline, "free_memory", lambda: (freed.__setitem__("n", freed["n"] + 1), real_free()))
    with pytest.raises(gr.Error) as err:
        app.edit_video(str(base["src"]), str(base["edited"]), 0, "flow", request=_Req("v"))
    msg = str(err.value.message)
    assert "out of memory" in msg and "preview" in msg and GENERIC not in msg
    assert freed["n"] == 1
    session = app.files.root / SessionFiles.key("v")
    assert not any(session.iterdir())
    out, _, _ = app.edit_video(str(base["src"]), str(base["edited"]), 0, "flow", request=_Req("v"))
    assert io.probe(out).n_frames == io.probe(base["src"]).n_frames


def test_cli_reports_out_of_memory_in_one_line(base, tmp_path, monkeypatch, capsys):
    import torch

    from synclora.cli import main
    from synclora.propagate import flow

    def oom(self, *a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(flow.FlowPropagator, "track", oom)
    out = tmp_path / "o.mp4"
    rc = main(["propagate", str(base["src"]), "--edited", str(base["edited"]), "--out", str(out), "--backend", "flow",
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "preview" in err and not out.exists()


def test_host_memory_error_is_translated_too(base, tmp_path, monkeypatch):
    from synclora.config import PropagationRequest
    from synclora.errors import OutOfMemoryError
    from synclora.pipeline import run_propagation
    from synclora.propagate import flow

    def boom(self, *a, **k):
        raise MemoryError()

    monkeypatch.setattr(flow.FlowPropagator, "track", boom)
    with pytest.raises(OutOfMemoryError, match="ran out of memory"):
        run_propagation(PropagationRequest(base["src"], base["edited"], tmp_path / "o.mp4",
                                           settings=PropagationSettings(backend="flow")))


# ---------------------------------------------------------------------------------------------------- sessions
@pytest.mark.parametrize("stem", ["../../etc/passwd", "..", "/abs/path", "a\\..\\b", "名前 with spaces", "\x00x"])
def test_session_files_never_leave_the_session_folder(tmp_path, stem):
    files = SessionFiles(tmp_path / "root")
    for session in ("abc", "../../escape", "", None, "x" * 500):
        p = files.new_file(session, stem, ".mp4")
        assert files.owns(p, session)
        assert p.resolve().is_relative_to((tmp_path / "root").resolve())
    files.close()
    assert not (tmp_path / "root").exists()


# ---------------------------------------------------------------------------------------------------- served app
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(queue_size: int):
    env = {"SYNCLORA_BACKEND": "flow", "SYNCLORA_CACHE_EXAMPLES": "0", "SYNCLORA_PRELOAD": "0",
           "SYNCLORA_MAX_UPLOAD_MB": "5", "GRADIO_ANALYTICS_ENABLED": "False",
           "SYNCLORA_QUEUE_SIZE": str(queue_size)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from synclora.ui.server import create_app, launch

        demo = create_app()
        port = _free_port()
        launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return demo, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def server():
    demo, url = _serve(queue_size=16)
    yield demo, url
    demo.close()
    demo.synclora.files.close()


def _client(url: str, folder: Path):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(folder))


def _video_path(v) -> str:
    return v["video"] if isinstance(v, dict) else v


COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255), (255, 128, 0),
           (128, 0, 255)]
PATCH = np.s_[14:30, 20:44]


def _patched(base, tmp: Path, i: int) -> Path:
    img = io.read_frame(base["src"], 0).copy()
    img[PATCH] = COLOURS[i]
    p = tmp / f"edit-{i}.png"
    Image.fromarray(img).save(p)
    return p


def test_served_app_answers_bad_input_with_sentences_and_keeps_serving(server, base, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client = _client(server[1], tmp_path / "dl")
    bad = media.write_bad_files(tmp_path / "bad")
    for kind in ("empty", "text", "truncated", "audio_only"):
        with pytest.raises(AppError) as err:
            client.predict(handle_file(str(bad[kind])), handle_file(str(base["edited"])), 0,
                           api_name="/edit_video")
        msg = str(err.value)
        assert "Traceback" not in msg and GENERIC not in msg and bad[kind].suffix in msg
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(base["src"])), handle_file(str(base["edited"])), 99, api_name="/edit_video")
    assert "out of range" in str(err.value)
    out, _, _ = client.predict(handle_file(str(base["src"])), handle_file(str(base["edited"])), 0,
                               api_name="/edit_video")
    assert io.probe(_video_path(out)).n_frames == io.probe(base["src"]).n_frames


def test_only_the_apps_own_files_are_served(server, base, tmp_path):
    from gradio_client import handle_file

    url = server[1]
    secret = Path(__file__).resolve()  # a file on the server outside every temp/upload folder
    for path in (str(secret), "/etc/passwd", "../../../../etc/passwd", str(base["src"])):
        for prefix in ("gradio_api/file=", "file="):
            try:
                with urllib.request.urlopen(url + prefix + path, timeout=10) as r:
                    status = r.status
                    body = r.read(200)
            except urllib.error.HTTPError as e:
                status, body = e.code, b""
            assert status >= 400 or b"root:" not in body and b"synclora" not in body, (prefix, path, status)
    # …while a result the app made for this visitor is served.
    client = _client(url, tmp_path / "dl")
    out, _, _ = client.predict(handle_file(str(base["src"])), handle_file(str(base["edited"])), 0,
                               api_name="/edit_video")
    assert Path(_video_path(out)).stat().st_size > 0


@pytest.mark.slow
def test_eight_clients_at_once_each_get_their_own_edit_and_see_the_queue(server, base, tmp_path):
    from gradio_client import handle_file
    from gradio_client.utils import Status

    url = server[1]
    results: dict[int, str] = {}
    ranks: dict[int, list] = {i: [] for i in range(8)}
    errors: list = []

    def visitor(i: int) -> None:
        try:
            client = _client(url, tmp_path / f"dl{i}")
            job = client.submit(handle_file(str(base["src"])), handle_file(str(_patched(base, tmp_path, i))), 0,
                                "flow", "preview", api_name="/edit_video")
            while not job.done():
                st = job.status()
                if st.code == Status.IN_QUEUE and st.rank is not None:
                    ranks[i].append(st.rank)
                time.sleep(0.02)
            results[i] = _video_path(job.result()[0])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append((i, repr(exc)))

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors
    assert sorted(results) == list(range(8))
    assert len(set(results.values())) == 8  # eight distinct files
    n = io.probe(base["src"]).n_frames
    for i, path in results.items():
        for k in (0, n - 1):
            patch = io.read_frame(path, k)[PATCH].reshape(-1, 3).mean(axis=0)
            nearest = int(np.argmin([np.abs(patch - c).sum() for c in COLOURS]))
            assert nearest == i, f"client {i} got colour {patch.round()} in frame {k} (cross-talk)"
    # With one GPU slot, later visitors waited and were told their place in the queue.
    assert any(r for r in ranks.values()), ranks
    assert max(max(r) for r in ranks.values() if r) >= 1


@pytest.mark.slow
def test_a_full_queue_turns_visitors_away_politely(base, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    from gradio_client.utils import QueueError

    demo, url = _serve(queue_size=1)
    try:
        gate = threading.Event()
        app = demo.synclora
        real = app._run_propagation

        def slow(req, progress=None, taps=()):
            gate.wait(30)  # hold the one GPU slot until every visitor has knocked
            return real(req, progress, taps)

        app._run_propagation = slow
        outcomes: dict[int, str] = {}

        def visitor(i: int) -> None:
            try:
                client = _client(url, tmp_path / f"dl{i}")
                client.predict(handle_file(str(base["src"])), handle_file(str(base["edited"])), 0, "flow",
                               api_name="/edit_video")
                outcomes[i] = "ok"
            except (QueueError, AppError, ValueError) as exc:
                outcomes[i] = str(exc)

        threads = [threading.Thread(target=visitor, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.4)
        # One visitor runs, one waits, so two must be turned away while the slot is held. Keep holding it until they
        # are (a loaded machine may take seconds to connect a client), then let the admitted ones finish.
        deadline = time.monotonic() + 60
        while len(outcomes) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        gate.set()
        for t in threads:
            t.join(timeout=120)
        full = [m for m in outcomes.values() if "queue is full" in m.lower()]
        assert len(outcomes) == 4
        assert 1 <= list(outcomes.values()).count("ok") <= 2, outcomes  # the one running and the one waiting
        assert full, outcomes
        assert all("Traceback" not in m for m in full)
        # After the rush the app serves again.
        client = _client(url, tmp_path / "after")
        out, _, _ = client.predict(handle_file(str(base["src"])), handle_file(str(base["edited"])), 0, "flow",
                                   api_name="/edit_video")
        assert Path(_video_path(out)).is_file()
    finally:
        demo.close()
        demo.synclora.files.close()
