"""The third hardening round through the served app, over HTTP as visitors and API callers reach it: raw requests
(`httpx`) for what no widget sends (wrong types, huge bodies), `gradio_client` for visits (its heartbeat is the open
tab: `Client.close()` is the tab closing, which ends the visit on the server).

Covered here: wrong types and documented values at the API, capped request bodies, a visit's files (session folder
and Gradio's cache) gone when it ends — also mid-propagation —, many-channel audio, deep PNG edits, a failed run that
keeps the visitor's earlier result, and error sentences that name the visitor's file.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from synclora import config
from synclora.testing import media
from synclora.ui.session import SessionFiles
from synclora.video import io

from support import hostile

NAMES = ["video", "edited", "edit_index"] + [f.name for f in config.setting_fields(ui_only=True)]


@pytest.fixture(scope="module")
def served():
    """The app on CPU (flow) on a free local port: (demo, url)."""
    env = {"SYNCLORA_BACKEND": "flow", "SYNCLORA_CACHE_EXAMPLES": "0", "SYNCLORA_PRELOAD": "0",
           "SYNCLORA_MAX_UPLOAD_MB": "5", "GRADIO_ANALYTICS_ENABLED": "False"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from synclora.ui.server import create_app, launch

        demo = create_app()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    yield demo, f"http://127.0.0.1:{port}/"
    demo.close()
    demo.synclora.files.close()


# ------------------------------------------------------------------------------------------------ raw HTTP
def _upload(url: str, path: Path) -> dict:
    with open(path, "rb") as f:
        r = httpx.post(url + "gradio_api/upload", files={"files": (path.name, f)}, timeout=60)
    r.raise_for_status()
    return {"path": r.json()[0], "meta": {"_type": "gradio.FileData"}}


def _call(url: str, data=None, raw: bytes | None = None, api: str = "edit_video") -> tuple[str, object]:
    """(event, payload) of one API call: "complete" and the outputs, "error" and the message, or "http" and the
    status code with the body's text."""
    body = raw if raw is not None else json.dumps({"data": data}).encode()
    r = httpx.post(url + f"gradio_api/call/{api}", content=body, headers={"Content-Type": "application/json"},
                   timeout=60)
    if r.status_code != 200:
        return "http", (r.status_code, r.text)
    text = httpx.get(url + f"gradio_api/call/{api}/{r.json()['event_id']}", timeout=300).text
    for block in text.split("\n\n"):  # server-sent events; heartbeats come while a long job runs
        lines = dict(line.split(": ", 1) for line in block.strip().splitlines() if ": " in line)
        if lines.get("event") in ("complete", "error"):
            return lines["event"], json.loads(lines["data"])
    raise AssertionError(f"no result in {text[:300]!r}")


@pytest.fixture(scope="module")
def uploaded(served, base):
    url = served[1]
    return {"video": _upload(url, base["src"]), "edited": _upload(url, base["edited"])}


def _args(uploaded: dict, **values) -> list:
    given = {"video": uploaded["video"], "edited": uploaded["edited"], "edit_index": 0, **values}
    return [given.get(n) for n in NAMES]


WRONG = {
    "edit-index-text": dict(edit_index="abc"),
    "edit-index-list": dict(edit_index=[1, 2]),
    "edit-index-object": dict(edit_index={"k": 1}),
    "edit-index-bool": dict(edit_index=True),
    "resolution-text": dict(resolution="big"),
    "resolution-over": dict(resolution=5000),
    "overlap-under": dict(chunk_overlap=-1),
    "seed-object": dict(seed={"s": 1}),
    "fade-list": dict(fade=[3]),
    "backend-list": dict(backend=["flow"]),
    "backend-long": dict(backend="x" * 50_000),
    "quality-number": dict(quality=3),
    "video-number": dict(video=5),
    "video-text": dict(video="/etc/passwd"),
    "video-object": dict(video={"x": 1}),
    "edited-list": dict(edited=[1]),
    "span-list": dict(span=["1:2"]),
    "span-huge": dict(span="1" * 200_000),
}


@pytest.mark.parametrize("case", list(WRONG))
def test_wrong_types_at_the_api_are_sentences(served, uploaded, case):
    event, payload = _call(served[1], _args(uploaded, **WRONG[case]))
    assert event == "error", payload
    message = payload["error"]
    assert message, f"{case}: Gradio's generic error instead of a sentence"
    assert message.endswith(".") and "Traceback" not in message and len(message) < 400, message


def test_too_few_values_is_a_sentence_that_echoes_nothing(served, uploaded):
    event, payload = _call(served[1], [uploaded["video"], "y" * 100_000])
    assert event == "error" and "takes 14 values" in payload["error"] and len(payload["error"]) < 400


@pytest.mark.parametrize("values", [dict(resolution=64), dict(resolution=4096), dict(resolution="1024"),
                                    dict(chunk_overlap=0), dict(chunk_overlap=40), dict(fade=1000),
                                    dict(fade=0, span="0:3"), dict(seed=2**63 - 1), dict(seed="-5"),
                                    dict(edit_index="2")],
                         ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_documented_values_are_accepted(served, uploaded, base, values):
    event, payload = _call(served[1], _args(uploaded, **values))
    assert event == "complete", payload
    out = payload[0]["path"] if isinstance(payload[0], dict) else payload[0]
    assert io.probe(out).n_frames == len(base["frames"])


def test_widgets_take_exactly_the_documented_ranges(served):
    """One source: each bounded setting's widget spans its bounds, and docs/API.md states the same range."""
    from synclora.ui.layout import setting_widget

    api_md = (Path(__file__).resolve().parents[1] / "docs" / "API.md").read_text(encoding="utf-8")
    for f in config.setting_fields(ui_only=True):
        bounds = f.metadata["bounds"]
        if not bounds:
            continue
        w = setting_widget(f.name, getattr(served[0].synclora.defaults, f.name), render=False)
        assert (w.minimum, w.maximum) == bounds, f.name
        if f.name != "seed":
            assert f"`{f.name}` (int, {bounds[0]}–{bounds[1]}" in api_md, f.name


# ------------------------------------------------------------------------------------------------ body size
def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


def test_a_huge_text_value_is_refused_before_it_is_read(served, uploaded):
    """100 MiB of text in one JSON value: 413 and one short sentence, and the server does not grow."""
    before = _rss_mb()
    t0 = time.perf_counter()
    event, (status, text) = _call(served[1], raw=json.dumps({"data": _args(uploaded, span="x" * 100 * 1024**2)})
                                  .encode())
    assert event == "http" and status == 413 and len(text) < 200 and "larger than this server accepts" in text
    assert time.perf_counter() - t0 < 30
    assert _rss_mb() - before < 150  # the body itself (100 MiB) was built by this test, in this process


def test_a_chunked_body_without_a_length_is_refused(served):
    def chunks():
        for _ in range(64):
            yield b"x" * 1024**2

    try:
        r = httpx.post(served[1] + "gradio_api/call/edit_video", content=chunks(), timeout=60,
                       headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 413), r.status_code
    except (httpx.RemoteProtocolError, httpx.WriteError, httpx.ReadError):
        pass  # the server closed the connection once the cap was passed: also refused


def _asgi(app, chunks: list[bytes], headers: list | None = None, path: str = "/gradio_api/call/x"):
    """Run an ASGI `app` on one request; returns (status, body, bytes the inner app read)."""
    import asyncio

    sent, pending = [], list(chunks)

    async def receive():
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", "path": path, "headers": headers or []}, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_body_limit_counts_what_arrives_whatever_the_headers_say():
    from synclora.ui.guard import BodyLimit

    read = {"n": 0}

    async def reader(scope, receive, send):  # an app that reads the whole body, as a JSON parser does
        while True:
            m = await receive()
            read["n"] += len(m.get("body", b""))
            if not m.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = BodyLimit(reader, max_bytes=1000, upload_bytes=5000)
    assert _asgi(app, [b"x" * 100] * 5) == (200, b"ok")
    read["n"] = 0
    status, body = _asgi(app, [b"x" * 600] * 100)  # no length declared (chunked)
    assert status == 413 and b"larger than this server accepts" in body and read["n"] <= 1200
    read["n"] = 0
    status, _ = _asgi(app, [b"x" * 10], headers=[(b"content-length", b"999999999")])  # a declared length
    assert status == 413 and read["n"] == 0
    assert _asgi(app, [b"x" * 1000] * 4, path="/gradio_api/upload")[0] == 200  # uploads: their own cap
    assert _asgi(app, [b"x" * 1000] * 6, path="/gradio_api/upload")[0] == 413


@pytest.mark.parametrize("route", ["gradio_api/queue/join", "gradio_api/run/predict", "gradio_api/info"])
def test_every_route_is_capped(served, route):
    r = httpx.post(served[1] + route, content=b"{" + b" " * (2 * 1024**2) + b"}", timeout=60,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_an_upload_over_the_cap_is_refused_and_one_under_it_is_taken(served, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(bytes(7 * 10**6))  # this server takes 5 MB
    with open(big, "rb") as f:
        r = httpx.post(served[1] + "gradio_api/upload", files={"files": ("big.mp4", f)}, timeout=60)
    assert r.status_code in (413, 400) and len(r.text) < 500
    small = tmp_path / "small.bin"
    small.write_bytes(bytes(100_000))
    with open(small, "rb") as f:
        assert httpx.post(served[1] + "gradio_api/upload", files={"files": ("s.bin", f)}, timeout=60).is_success


# ------------------------------------------------------------------------------------------------ visits
def _client(url: str, folder: Path):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(folder))


def _wait(pred, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _cached(demo, names: set[str]) -> list[Path]:
    cache = demo.synclora.files.gradio_cache
    return [f for d in cache.iterdir() if d.is_dir() for f in d.iterdir() if f.name in names]


@pytest.mark.slow
def test_a_visit_that_ends_leaves_nothing_in_either_cache(served, base, tmp_path):
    """Upload, edit, propagate, report; close the tab: the session folder, the uploads and every copy Gradio made
    of the results are gone — and another visitor's files stay."""
    from gradio_client import handle_file

    demo, url = served
    clip = tmp_path / "visit-clip.mp4"  # names of this test's own, so its uploads are told apart in the cache
    edit = tmp_path / "visit-edit.png"
    clip.write_bytes(base["src"].read_bytes() + b"")  # the same bytes as the base clip: a shared cache entry
    Image.open(base["edited"]).save(edit)
    other = _client(url, tmp_path / "other")
    keep, _, _ = other.predict(handle_file(str(base["src"])), handle_file(str(base["edited"])), 0,
                               api_name="/edit_video")
    visitor = _client(url, tmp_path / "dl")
    out, sbs, _ = visitor.predict(handle_file(str(clip)), handle_file(str(edit)), 0, api_name="/edit_video")
    plot, _, _ = visitor.predict(handle_file(str(clip)), handle_file(out["video"] if isinstance(out, dict) else out),
                                 handle_file(str(edit)), 0, None, api_name="/sync_report")
    files = demo.synclora.files
    folder = files.root / SessionFiles.key(visitor.session_hash)
    made = files.names(visitor.session_hash)
    assert folder.is_dir() and made and _cached(demo, made)
    uploads = [p for p in files.gradio_cache.rglob("*") if p.name in (clip.name, edit.name)]
    assert uploads
    visitor.close()  # the tab closes: the heartbeat ends and the server ends the visit
    assert _wait(lambda: not folder.exists() and not _cached(demo, made)), list(_cached(demo, made))
    assert not [p for p in uploads if p.exists()], uploads
    other_made = files.names(other.session_hash)
    assert other_made and _cached(demo, other_made), "another visitor's results went too"
    other.close()


@pytest.mark.slow
def test_a_tab_closed_mid_propagation_stops_the_job_and_nothing_comes_back(served, tmp_path, monkeypatch):
    """The job stops at its first step after the visit ended (each step is slowed, so a job that ran on would take
    seconds more and pass many steps), and nothing it made reappears."""
    from gradio_client import handle_file

    from synclora import pipeline

    demo, url = served
    frames, _ = media.talking_face_frames(150, size=(160, 120), seed=3)
    src = media.write_clip(tmp_path / "long.mp4", frames, 25)
    edited = tmp_path / "long-edit.png"
    first = io.read_frame(src, 0).copy()
    first[30:50, 60:100] = (255, 0, 0)
    Image.fromarray(first).save(edited)
    visitor = _client(url, tmp_path / "dl")
    files = demo.synclora.files
    folder = files.root / SessionFiles.key(visitor.session_hash)
    real, after = pipeline.run_propagation, []

    def slowly(req, progress, **kwargs):
        def step(f, label):
            time.sleep(0.02)
            if not folder.exists():
                after.append(label)  # a step taken once the visit ended: the first must stop the job
            progress(f, label)
        return real(req, step, **kwargs)

    monkeypatch.setattr(pipeline, "run_propagation", slowly)
    job = visitor.submit(handle_file(str(src)), handle_file(str(edited)), 0, api_name="/edit_video")
    assert _wait(lambda: folder.is_dir() and any(folder.iterdir()), 120)
    assert any(demo._queue.active_jobs), "the job ended before the tab closed"
    visitor.close()
    assert _wait(lambda: not folder.exists(), 30)
    # watched until the queue has no job left: nothing may reappear meanwhile
    seen = []
    end = time.monotonic() + 120
    while any(demo._queue.active_jobs) and time.monotonic() < end:
        if folder.exists():
            seen.append(sorted(p.name for p in folder.iterdir()))
        time.sleep(0.05)
    assert not any(demo._queue.active_jobs), "the job went on after its visit ended"
    assert len(after) <= 1, f"the job took {len(after)} steps after its visit ended: {after[:3]}"
    assert _wait(lambda: not folder.exists(), 30) and files.ended(visitor.session_hash)
    assert not _cached(demo, files.names(visitor.session_hash) | {"long-edited"}), "a result reached the cache"
    assert not any("long-edited" in n for names in seen for n in names if not n.startswith(".")), seen
    del job


def test_a_visit_keeps_its_earlier_result_when_a_later_run_fails(served, base, tmp_path, monkeypatch):
    """The side-by-side of a second run cannot be written (a full disk): the first run's files stay, the second
    leaves nothing, and the sentence names the visitor's file, not a hidden temp file."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from synclora.video import encode

    demo, url = served
    visitor = _client(url, tmp_path / "dl")
    out, sbs, _ = visitor.predict(handle_file(str(base["src"])), handle_file(str(base["edited"])), 0,
                                  api_name="/edit_video")
    folder = demo.synclora.files.root / SessionFiles.key(visitor.session_hash)
    before = sorted(p.name for p in folder.iterdir())
    real, calls = encode.write_video, {"n": 0}

    def second_fails(path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(io, "write_video", second_fails)
    with pytest.raises(AppError) as err:
        visitor.predict(handle_file(str(base["src"])), handle_file(str(base["edited"])), 0, api_name="/edit_video")
    assert "no space left on the disk" in str(err.value) and "side-by-side.mp4" in str(err.value)
    assert ".part" not in str(err.value)
    assert sorted(p.name for p in folder.iterdir()) == before
    for p in (out, sbs):
        assert Path(p["video"] if isinstance(p, dict) else p).is_file()
    visitor.close()


# ------------------------------------------------------------------------------------------------ media
@pytest.mark.parametrize("layout,codec,ext,kept", [("7.1", "aac", ".mp4", 8), ("hexadecagonal", "pcm_s16le", ".mkv",
                                                                              2)])
def test_many_channel_audio_through_the_app(served, base, tmp_path, layout, codec, ext, kept):
    """The clip that once took the server down (a native crash in the audio copy) is served like any other."""
    from gradio_client import handle_file

    clip = hostile.many_channels(tmp_path, layout, codec, ext, frames=base["frames"])
    visitor = _client(served[1], tmp_path / "dl")
    out, sbs, md = visitor.predict(handle_file(str(clip)), handle_file(str(base["edited"])), 0,
                                   api_name="/edit_video")
    info = io.probe(out["video"] if isinstance(out, dict) else out)
    assert info.channels == kept and info.n_frames == len(base["frames"])
    assert ("downmixed" in md) == (kept == 2)
    visitor.close()


def test_a_16_bit_edit_through_the_app(served, base, tmp_path):
    from gradio_client import handle_file

    deep = tmp_path / "edit16.png"
    Image.fromarray(base["frame0"][..., 1].astype(np.uint16) * 257).save(deep)
    visitor = _client(served[1], tmp_path / "dl")
    out, _, md = visitor.predict(handle_file(str(base["src"])), handle_file(str(deep)), 0, api_name="/edit_video")
    assert io.probe(out["video"] if isinstance(out, dict) else out).n_frames == len(base["frames"])
    assert "16-bit image converted to 8-bit" in md
    visitor.close()


def test_a_hostile_file_name_comes_back_escaped(served, tmp_path):
    bad = tmp_path / "clip\x1b]0;owned\x07\nerror: fine.mp4"
    bad.write_bytes(b"not a video")
    event, payload = _call(served[1], [_upload(served[1], bad), None, 0] + [None] * (len(NAMES) - 3))
    assert event == "error" and payload["error"]
    assert not any(c in payload["error"] for c in "\x1b\x07\n"), payload



def test_the_report_over_http_says_the_rates_and_judges_by_time(served, tmp_path):
    """/sync_report with a result of the same frames at twice the rate: not in sync, and the rates are said."""
    from gradio_client import handle_file

    frames, _ = media.talking_face_frames(40, size=(128, 96), seed=2)
    src = media.write_clip(tmp_path / "src25.mp4", frames, 25)
    fast = media.write_clip(tmp_path / "fast50.mp4", frames, 50)
    visitor = _client(served[1], tmp_path / "dl")
    _, md, _ = visitor.predict(handle_file(str(src)), handle_file(str(fast)), None, -1, None,
                               api_name="/sync_report")
    assert "the result runs at 50 fps and the source at 25 fps" in md.lower()
    assert not md.splitlines()[0].lower().startswith("#### in sync"), md
    visitor.close()


def test_a_clip_stored_out_of_order_through_the_app(served, base, tmp_path):
    """Matroska frames stored with timestamps going backwards: the app's result has every frame once, in order."""
    from gradio_client import handle_file

    n = len(base["frames"])
    order = [k ^ 1 for k in range(n)] if n % 2 == 0 else [k ^ 1 for k in range(n - 1)] + [n - 1]
    clip = hostile.reordered(tmp_path / "reordered.mkv", order, frames=base["frames"])
    visitor = _client(served[1], tmp_path / "dl")
    out, _, _ = visitor.predict(handle_file(str(clip)), handle_file(str(base["edited"])), 0, "flow", None, None,
                                None, None, None, None, None, None, "0:1", 0, api_name="/edit_video")
    got = [media.read_index(f) for f in io.iter_frames(out["video"] if isinstance(out, dict) else out)]
    assert got[2:] == list(range(2, n)), got  # outside the edited span: the source's own frames, in order
    visitor.close()


def test_an_image_two_events_return_is_never_served_half_written(served, tmp_path):
    """Gradio names a returned image by its bytes and rewrote that file in place each time: the upload's handler and
    the frame slider's both return the chosen frame, and a browser fetching the first got a truncated file (a broken
    preview; "Too much data for declared Content-Length" in the log). The served app's images are written aside and
    renamed into place, and one already there is kept."""
    import threading

    from gradio import processing_utils as pu

    assert getattr(pu.save_pil_to_cache, "whole_files", False)  # installed by the app
    img = Image.fromarray((np.random.default_rng(0).random((180, 320, 3)) * 255).astype(np.uint8))
    path = Path(pu.save_pil_to_cache(img, str(tmp_path)))
    size, bad, reads = path.stat().st_size, [], [0]
    stop = threading.Event()

    def read():
        while not stop.is_set():
            with open(path, "rb") as f:
                got = len(f.read())
            reads[0] += 1
            if got != size or path.stat().st_size != size:
                bad.append(got)

    def write():
        for _ in range(60):
            assert pu.save_pil_to_cache(img, str(tmp_path)) == str(path)

    reader, writers = threading.Thread(target=read), [threading.Thread(target=write) for _ in range(2)]
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    reader.join()
    assert reads[0] > 100 and not bad, (reads[0], len(bad))  # written in place: ~30 partial reads a write
    assert sorted(p.name for p in path.parent.iterdir()) == ["image.webp"]  # no staging file left behind
