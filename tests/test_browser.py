"""The whole workflow in a real browser (Debian's Chromium through Playwright), as a person would do it.

Open the app, upload a clip, pick a frame (slider and player agree), upload an edit of that frame, propagate, and
check the result video really plays. Screenshots at 1280×800 and 1920×1080 go to test-artifacts/ for people to look
at. The same steps on a phone (390×844, touch, the page's own viewport rules): no step may scroll sideways.
Chromium is a test requirement (CI installs it): if it is missing the test fails and says how to install it.
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from PIL import Image

from synclora.video import io

from support.browser import ARTIFACTS, CLIP, PHONE, TIMEOUT_MS, fits_phone

# A real browser through a whole workflow takes over a minute per test: `slow`, out of the quick pass.
pytestmark = pytest.mark.slow
FRAME = 10


def _video_state(page, selector: str) -> dict:
    return page.evaluate(
        """(sel) => { const v = document.querySelector(sel);
        return v ? {t: v.currentTime, paused: v.paused, ready: v.readyState, w: v.videoWidth, d: v.duration,
                    src: v.currentSrc} : null; }""",
        selector,
    )


def _plays(page, selector: str) -> dict:
    """Start the <video> (muted, so autoplay rules allow it), let it run, return its state."""
    page.evaluate("(sel) => { const v = document.querySelector(sel); v.muted = true; return v.play(); }", selector)
    page.wait_for_timeout(1200)
    return _video_state(page, selector)


def test_whole_workflow_in_chromium(app_url, browser, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    clip = tmp_path / "talk.mp4"
    shutil.copy(CLIP, clip)
    frame = io.read_frame(clip, FRAME).copy()
    frame[150:175, 140:180] = (255, 0, 0)  # a red sticker on the face
    edited = tmp_path / f"edit-frame{FRAME}.png"
    Image.fromarray(frame).save(edited)

    t0 = time.perf_counter()
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        marks[name] = round(time.perf_counter() - t0, 1)

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(app_url)
    page.wait_for_selector("#source-video", timeout=TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "browser-1-start-1280.png"))

    mark("page loaded")
    # 0. A user error is one sentence in a toast, never a traceback.
    page.click("#propagate")
    page.wait_for_selector("text=Upload a video or pick an example first.", timeout=TIMEOUT_MS)
    assert "Traceback" not in page.inner_text("body")

    mark("error toast")
    # 1. Upload a video: its facts appear.
    page.set_input_files("#source-video input[type=file]", str(clip))
    page.wait_for_selector("#facts :text('72 frames')", timeout=TIMEOUT_MS)
    page.wait_for_selector("#source-video video", timeout=TIMEOUT_MS)
    assert "24 fps" in page.inner_text("#facts")

    mark("video loaded")
    # 2. Pick a frame with the slider's number box: preview caption and the player's position follow exactly.
    box = page.locator("#frame-slider input[type=number]")
    box.fill(str(FRAME))
    box.press("Enter")
    page.wait_for_selector(f"#frame-caption :text('Frame {FRAME} of 0–71')", timeout=TIMEOUT_MS)
    page.wait_for_function(
        f"() => {{ const v = document.querySelector('#source-video video'); "
        f"return v && Math.floor(v.currentTime * 24 + 1e-6) === {FRAME}; }}", timeout=TIMEOUT_MS)
    # ... and pausing the player moves the slider to the frame on screen.
    page.evaluate("() => { const v = document.querySelector('#source-video video'); v.muted = true; "
                  "v.currentTime = 30.5 / 24; return v.play(); }")
    page.wait_for_timeout(300)
    t = page.evaluate("() => { const v = document.querySelector('#source-video video'); v.pause(); "
                      "return v.currentTime; }")
    shown = int(np.floor(t * 24 + 1e-6))
    page.wait_for_function(f"() => document.querySelector('#frame-slider input[type=number]').value === '{shown}'",
                           timeout=TIMEOUT_MS)
    box.fill(str(FRAME))
    box.press("Enter")
    page.wait_for_selector(f"#frame-caption :text('Frame {FRAME} of 0–71')", timeout=TIMEOUT_MS)

    mark("frame picked")
    # 2b. Edit only part of the clip: a span typed in seconds moves the range sliders; a span slider stops at the
    # chosen frame (it must stay inside the span).
    page.wait_for_selector("#span-caption :text('the whole clip')", timeout=TIMEOUT_MS)
    span_box = page.locator("#span textarea, #span input").first
    span_box.fill("0.25s:1s")
    span_box.press("Enter")
    page.wait_for_selector("#span-caption :text('frames 6–23 (0.250–1.000 s)')", timeout=TIMEOUT_MS)
    start_box = page.locator("#span-start input[type=number]")
    assert start_box.input_value() == "6" and page.locator("#span-end input[type=number]").input_value() == "23"
    start_box.fill("15")
    start_box.press("Enter")
    page.wait_for_selector(f"#span-caption :text('frames {FRAME}–23')", timeout=TIMEOUT_MS)
    # the caption and the span box are two outputs of one event: wait for the box rather than read it at once
    page.wait_for_function("v => { const e = document.querySelector('#span textarea, #span input'); "
                           "return e !== null && e.value === v; }", arg=f"{FRAME}:23", timeout=TIMEOUT_MS)

    mark("span chosen")
    # 3a. Draw on the frame with the in-app editor's brush: the strokes become an edit of exactly this frame.
    page.click("#editor button[aria-label=Brush]")
    bb = page.locator("#editor canvas").first.bounding_box()
    cx, cy = bb["x"] + bb["width"] / 2, bb["y"] + bb["height"] / 2
    page.mouse.move(cx - 50, cy)
    page.mouse.down()
    page.mouse.move(cx, cy + 2)  # few points: software WebGL in a headless browser takes ~1 s per pointer move
    page.mouse.move(cx + 40, cy)
    page.mouse.up()
    page.click("#use-drawing")
    page.wait_for_selector(f"#edit-status :text('Edited frame {FRAME} (drawn)')", timeout=TIMEOUT_MS)
    assert "resized" not in page.inner_text("#edit-status")  # the canvas kept the frame's size

    mark("drawn")
    # 3b. Or upload an edit made elsewhere: it is checked, fitted, and shown in the before/after view.
    page.get_by_role("tab", name="Upload").click()
    page.set_input_files("#upload-edit input[type=file]", str(edited))
    page.wait_for_selector(f"#edit-status :text('Edited frame {FRAME} (uploaded)')", timeout=TIMEOUT_MS)

    mark("uploaded edit")
    # 4. Propagate, 5. the result video plays.
    page.click("#propagate")
    page.wait_for_selector("#result-sbs video", timeout=TIMEOUT_MS)
    page.wait_for_function("() => { const v = document.querySelector('#result-sbs video'); "
                           "return v && v.readyState >= 2; }", timeout=TIMEOUT_MS)
    state = _plays(page, "#result-sbs video")
    assert state["w"] > 600 and state["t"] > 0.2 and not state["paused"], state
    assert abs(state["d"] - 3.0) < 0.2, state  # 72 frames at 24 fps: the length is kept
    page.evaluate("() => document.querySelector('#result-sbs video').pause()")
    info = page.inner_text("#result-info")
    assert f"Edited frame {FRAME}" in info and "seed 0" in info and "--edit-index 10" in info
    assert f"--span {FRAME}:23 --fade 8" in info  # 24 fps: the default fade of a third of a second
    page.get_by_role("tab", name="Result only").click()
    page.wait_for_selector("#result-video video", timeout=TIMEOUT_MS)
    state = _plays(page, "#result-video video")
    assert state["w"] == 320 and state["t"] > 0.2, state
    page.get_by_role("tab", name="Side by side (source | result, with the source audio)").click()

    mark("result played")
    # The sync report follows on its own (it never blocks the result).
    page.wait_for_selector("#report-verdict :text('Overall lag')", timeout=TIMEOUT_MS)
    assert f"Judged the edited span, frames {FRAME}–23" in page.inner_text("#report-verdict")
    assert f"The edit on frame {FRAME}" in page.inner_text("#report-verdict")  # what the edit did, in words
    page.click("#report-show-landmarks")  # the landmark view, made when asked for
    page.wait_for_selector("#report-landmarks video", timeout=TIMEOUT_MS)
    mark("report")
    # The result joined the session's last results with its verdict; they show as one grid video.
    page.get_by_text("Last results (up to four) as one grid").click()
    page.wait_for_selector("#gallery-list :text('1.')", timeout=TIMEOUT_MS)
    page.click("#gallery-show")
    page.wait_for_selector("#gallery-grid video", timeout=TIMEOUT_MS)
    assert "frame for frame with the source's audio" in page.inner_text("#gallery-note")
    mark("last results grid")
    page.screenshot(path=str(ARTIFACTS / "browser-2-result-1280.png"), full_page=True)
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "browser-3-result-1920.png"), full_page=True)
    mark("screenshots")
    print("browser workflow timings (s since start):", marks)
    assert not errors, errors
    page.close()


def test_every_step_fits_a_phone(app_url, browser, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    clip = tmp_path / "talk.mp4"
    shutil.copy(CLIP, clip)
    frame = io.read_frame(clip, FRAME).copy()
    frame[150:175, 140:180] = (255, 0, 0)
    edited = tmp_path / f"edit-frame{FRAME}.png"
    Image.fromarray(frame).save(edited)

    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(app_url)
    page.wait_for_selector("#source-video", timeout=TIMEOUT_MS)
    fits_phone(page, "1-start")

    page.set_input_files("#source-video input[type=file]", str(clip))
    page.wait_for_selector("#facts :text('72 frames')", timeout=TIMEOUT_MS)
    page.wait_for_selector("#source-video video", timeout=TIMEOUT_MS)
    fits_phone(page, "2-video")

    box = page.locator("#frame-slider input[type=number]")
    box.fill(str(FRAME))
    box.press("Enter")
    page.wait_for_selector(f"#frame-caption :text('Frame {FRAME} of 0–71')", timeout=TIMEOUT_MS)
    page.locator("#editor").scroll_into_view_if_needed()
    fits_phone(page, "3-frame-and-editor")

    page.get_by_role("tab", name="Upload").click()
    page.set_input_files("#upload-edit input[type=file]", str(edited))
    page.wait_for_selector(f"#edit-status :text('Edited frame {FRAME} (uploaded)')", timeout=TIMEOUT_MS)
    page.locator("#before-after").scroll_into_view_if_needed()
    fits_phone(page, "4-edit")

    page.get_by_text("Advanced settings").click()
    page.get_by_text("Which backend?").click()
    page.locator("#backends").scroll_into_view_if_needed()
    fits_phone(page, "5-settings-and-backends")

    page.click("#propagate")
    page.wait_for_selector("#result-sbs video", timeout=TIMEOUT_MS)
    page.wait_for_selector("#report-verdict :text('Overall lag')", timeout=TIMEOUT_MS)
    page.locator("#result-sbs").scroll_into_view_if_needed()
    fits_phone(page, "6-result-and-report")
    assert not errors, errors
    context.close()
