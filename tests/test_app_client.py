"""The app launched on CPU (flow backend) and driven through `gradio_client`, end to end, on a real clip."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synclora.video import io

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CLIP = EXAMPLES / "grace-red-nose.mp4"
EDIT = EXAMPLES / "grace-red-nose-edit.png"


@pytest.fixture(scope="module")
def server():
    """The app on a free localhost port (CPU flow backend, no cached examples), shared with the browser test."""
    from synclora.ui.server import local_server

    return local_server("flow")


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[1], verbose=False, download_files=str(Path(server[0].synclora.files.root) / "downloads"))


def test_api_lists_the_named_endpoints(server, client):
    api = client.view_api(return_format="dict", print_info=False)
    names = set(api["named_endpoints"])
    assert {"/edit_video", "/load_video", "/pick_frame", "/fit_edit", "/instruct_edit", "/sync_report"} <= names
    params = [p["parameter_name"] for p in api["named_endpoints"]["/edit_video"]["parameters"]]
    assert params[:3] == ["video", "edited", "edit_index"]
    assert params[3:] == ["backend", "quality", "seed", "fit", "resolution", "time_mode", "chunk_overlap", "model",
                          "memory", "span", "fade"]
    keys = [p["parameter_name"] for p in api["named_endpoints"]["/edit_keyframes"]["parameters"]]
    assert keys == ["video", "edited", "edit_index", "keyframe_images", "keyframes", *params[3:]]
    # The settings are optional, each with the app's default (the signature is made from config's fields).
    defaults = server[0].synclora.defaults
    for endpoint, first in (("/edit_video", 3), ("/edit_keyframes", 5)):
        for p in api["named_endpoints"][endpoint]["parameters"][first:]:
            assert p["parameter_has_default"], (endpoint, p["parameter_name"])
            assert p["parameter_default"] == getattr(defaults, p["parameter_name"]), (endpoint, p)
    report = [p["parameter_name"] for p in api["named_endpoints"]["/sync_report"]["parameters"]]
    assert report == ["video", "result", "edited", "edit_index", "span"]


@pytest.fixture(scope="module")
def edit_run(client):
    """One /edit_video call with only the three required inputs: (result, side by side, settings, seconds)."""
    from gradio_client import handle_file

    t0 = time.perf_counter()
    result, sbs, md = client.predict(handle_file(str(CLIP)), handle_file(str(EDIT)), 0, api_name="/edit_video")
    return result, sbs, md, time.perf_counter() - t0


def test_edit_video_end_to_end_with_only_the_three_inputs(edit_run):
    result_path, sbs_path, md, seconds = edit_run
    src, res, both = io.probe(CLIP), io.probe(result_path), io.probe(sbs_path)
    # The contract: same frame count, exact fps, size and the source's audio.
    assert (res.n_frames, res.fps, res.size, res.has_audio) == (src.n_frames, src.fps, src.size, True)
    assert both.n_frames == src.n_frames and both.width > 2 * src.width - 10
    # Frame 0 of the result is the edited frame (up to H.264), and the red nose is still there at the end.
    edit = np.asarray(Image.open(EDIT).convert("RGB")).astype(int)
    first = io.read_frame(result_path, 0).astype(int)
    assert np.abs(first - edit).mean() < 4
    last = io.read_frame(result_path, src.n_frames - 1)
    red = (last[..., 0] > 150) & (last[..., 1] < 80) & (last[..., 2] < 80)
    assert red.sum() > 100, "the edit did not reach the last frame"
    assert "**Edited frame 0**" in md and "seed **0**" in md and "flow" in md and "--edit-index 0" in md
    assert seconds < 60


@pytest.mark.slow
def test_sync_report_endpoint_gives_plot_and_verdict(client, edit_run, tmp_path):
    from gradio_client import handle_file

    local = tmp_path / "result.mp4"
    shutil.copy(edit_run[0], local)
    plot, verdict, landmarks = client.predict(handle_file(str(CLIP)), handle_file(str(local)),
                                              handle_file(str(EDIT)), 0, api_name="/sync_report")
    assert Path(plot).is_file() and Image.open(plot).size[0] > 300
    assert "in sync" in verdict.lower() and "lag" in verdict.lower()
    assert "The edit on frame 0" in verdict  # what the red nose did to the eyes, mouth and face
    assert landmarks is None  # made only when asked for:
    view = client.predict(handle_file(str(CLIP)), handle_file(str(local)), handle_file(str(EDIT)), 0,
                          api_name="/landmark_view")
    view = view["video"] if isinstance(view, dict) else view
    assert Path(view).is_file() and Path(view).stat().st_size > 1000


@pytest.mark.slow
def test_settings_other_than_the_defaults_are_used_and_reported(client):
    from gradio_client import handle_file

    _, _, md = client.predict(handle_file(str(CLIP)), handle_file(str(EDIT)), 0, backend="flow",
                              quality="preview", seed=7, fit="crop", api_name="/edit_video")
    assert "seed **7**" in md and "(preview)" in md and "fit crop" in md and "--seed 7" in md


@pytest.mark.slow
def test_two_keyframes_through_the_api(client, tmp_path):
    """`/edit_keyframes`: the edited frame 0 as a listed keyframe and again at frame 60 (the same look twice); frame 60
    of the result is the second image, the red nose is carried everywhere, and the reproduce line lists both."""
    from gradio_client import handle_file

    second = np.asarray(Image.open(EDIT).convert("RGB")).copy()
    second[:8] = (0, 0, 255)  # a blue band: tells the second keyframe's image apart
    path = tmp_path / "second.png"
    Image.fromarray(second).save(path)
    images = [handle_file(str(EDIT)), handle_file(str(path))]
    result, _, md = client.predict(handle_file(str(CLIP)), None, 0, images, "0\n60", api_name="/edit_keyframes")
    res = io.read_frames(result)
    assert len(res) == 72 and io.probe(result).has_audio
    assert np.abs(res[60].astype(int) - second).mean() < 4
    red = ((res[..., 0] > 150) & (res[..., 1] < 80) & (res[..., 2] < 80)).sum(axis=(1, 2))
    assert (red > 100).all()
    assert "Keyframes **0**, **60**" in md and "--keyframe 0" in md and "--keyframe 60" in md


@pytest.mark.slow
def test_a_span_of_the_clip_through_the_api(client, tmp_path):
    """`span` and `fade` by name: only frames 1 s–2 s carry the edit (the red nose), faded over 3 frames each side;
    the rest is the source; the report judges the span."""
    from gradio_client import handle_file

    # The edit was made on frame 0, so as frame 30's edit it is only a look to carry along (the flow backend warps it).
    result, _, md = client.predict(handle_file(str(CLIP)), handle_file(str(EDIT)), 30, span="1s:2s", fade=3,
                                   api_name="/edit_video")
    assert "edited frames 24–47 (1.000–2.000 s), fading in over frames 21–23 and out over frames 48–50" in md
    assert "--span 24:47 --fade 3" in md
    res, src = io.read_frames(result), io.read_frames(CLIP)
    assert len(res) == len(src) == 72 and io.probe(result).has_audio
    diff = np.abs(res.astype(int) - src.astype(int)).mean(axis=(1, 2, 3))
    assert diff[:21].max() < 3 and diff[51:].max() < 3  # the source's own frames, up to H.264
    assert diff[24:48].min() > 2 * max(diff[:21].max(), diff[51:].max())
    local = tmp_path / "result.mp4"
    shutil.copy(result, local)
    _, verdict, _ = client.predict(handle_file(str(CLIP)), handle_file(str(local)), None, span="1s:2s",
                                   api_name="/sync_report")
    assert "frames 24–47" in verdict


def test_load_video_endpoint_reports_the_facts(client):
    from gradio_client import handle_file

    facts, slider, preview, caption, fps, *_ = client.predict(handle_file(str(CLIP)), 30,
                                                              api_name="/load_video")
    assert "72 frames" in facts and "24 fps" in facts
    assert slider["value"] == 30 and slider["maximum"] == 71 and fps == 24
    assert np.asarray(Image.open(preview)).shape == (320, 320, 3)
    assert "Frame **30**" in caption


def test_user_errors_arrive_as_sentences_not_tracebacks(server, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(server[1], verbose=False, download_files=str(tmp_path))  # a fresh session: no clip loaded

    with pytest.raises(AppError) as e:
        client.predict(handle_file(str(CLIP)), handle_file(str(EDIT)), 500, api_name="/edit_video")
    assert "out of range" in str(e.value) and "Traceback" not in str(e.value)

    square = tmp_path / "wide.png"
    Image.new("RGB", (640, 200), "white").save(square)
    with pytest.raises(AppError) as e:
        client.predict(handle_file(str(CLIP)), handle_file(str(square)), 0, api_name="/edit_video")
    assert "aspect" in str(e.value) and "Traceback" not in str(e.value)

    not_video = tmp_path / "notes.mp4"
    not_video.write_bytes(b"this is not a video")
    with pytest.raises(AppError) as e:
        client.predict(handle_file(str(not_video)), handle_file(str(EDIT)), 0, api_name="/edit_video")
    assert "Traceback" not in str(e.value) and len(str(e.value)) < 400


def test_server_refuses_files_outside_its_own_folders(server, edit_run):
    """Only uploads and results handed out (under unguessable names) are served; other paths are not, not even the
    per-session folders where results are written."""
    import httpx

    url = server[1]
    session_files = [str(p) for p in Path(server[0].synclora.files.root).glob("*/*.mp4")]
    assert session_files
    for path in ("/etc/passwd", str(Path(__file__).resolve()), str(CLIP), *session_files[:2]):
        r = httpx.get(f"{url}gradio_api/file={path}", timeout=10)
        assert r.status_code in (403, 404), path
