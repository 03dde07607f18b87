"""The keyframe list in a real browser on a phone's screen: add two edited frames, remove one, re-edit one, and
propagate them all; no step scrolls sideways."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from synclora.video import io

from support.browser import ARTIFACTS, CLIP, PHONE, TIMEOUT_MS, fits_phone

pytestmark = pytest.mark.slow  # a real browser through a whole workflow: over a minute


def _upload_edit(page, path, k: int) -> None:
    box = page.locator("#frame-slider input[type=number]")
    page.wait_for_function("() => { const e = document.querySelector('#frame-slider input[type=number]'); "
                           "return e && !e.disabled; }", timeout=TIMEOUT_MS)  # the slider opens once the clip loads
    box.fill(str(k), timeout=TIMEOUT_MS)
    box.press("Enter")
    page.wait_for_selector(f"#frame-caption :text('Frame {k} of 0–71')", timeout=TIMEOUT_MS)
    page.get_by_role("tab", name="Upload").click()
    page.set_input_files("#upload-edit input[type=file]", str(path))
    page.wait_for_selector(f"#edit-status :text('Edited frame {k} (uploaded)')", timeout=TIMEOUT_MS)


def _select(page, i: int) -> None:
    """Click the i-th picture of the list; the selection is a server event, so give it time to land."""
    page.locator("#keyframes-list .thumbnail-item").nth(i).click()
    page.wait_for_timeout(1500)


def test_keyframes_add_remove_reedit_on_a_phone(app_url, browser, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    clip = tmp_path / "talk.mp4"
    shutil.copy(CLIP, clip)
    edits = {}
    for k, colour in ((10, (255, 0, 0)), (50, (0, 0, 255)), (60, (0, 255, 0))):
        img = io.read_frame(clip, k).copy()
        img[150:175, 140:180] = colour
        edits[k] = tmp_path / f"edit-frame{k}.png"
        Image.fromarray(img).save(edits[k])

    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(app_url)
    page.wait_for_selector("#source-video", timeout=TIMEOUT_MS)
    page.set_input_files("#source-video input[type=file]", str(clip))
    page.wait_for_selector("#facts :text('72 frames')", timeout=TIMEOUT_MS)

    # Two keyframes: frame 10, then frame 60, each added to the list (the edit on screen moves into it).
    _upload_edit(page, edits[10], 10)
    page.get_by_text("Keyframes: edit more than one frame").click()
    page.click("#keyframe-add")
    page.wait_for_selector("#keyframes-status :text('1 keyframe')", timeout=TIMEOUT_MS)
    page.wait_for_selector("#edit-status :text('Frame 10 is keyframe 1')", timeout=TIMEOUT_MS)
    _upload_edit(page, edits[60], 60)
    page.click("#keyframe-add")
    page.wait_for_selector("#keyframes-status :text('2 keyframes')", timeout=TIMEOUT_MS)
    page.locator("#keyframes-list").scroll_into_view_if_needed()
    fits_phone(page, "keyframes-list")
    assert "frames 10, 60" in page.inner_text("#keyframes-status")
    captions = page.locator("#keyframes-list .caption-label").all_inner_texts()
    assert captions == ["frame 10 · same look", "frame 60 · same look"], captions

    # Remove frame 60 again (select its picture, then remove), and add frame 50 instead.
    _select(page, 1)
    page.click("#keyframe-remove")
    page.wait_for_selector("#keyframes-status :text('1 keyframe')", timeout=TIMEOUT_MS)
    assert "frame 10" in page.inner_text("#keyframes-status")
    _upload_edit(page, edits[50], 50)
    page.click("#keyframe-add")
    page.wait_for_selector("#keyframes-status :text('frames 10, 50')", timeout=TIMEOUT_MS)

    # Re-edit frame 10: the slider goes there; a new edit of it replaces the listed one.
    _select(page, 0)
    page.click("#keyframe-reedit")
    page.wait_for_selector("#frame-caption :text('Frame 10 of 0–71')", timeout=TIMEOUT_MS)
    _upload_edit(page, edits[10], 10)

    # Propagate: both keyframes, the edit on screen among them; the reproduce line lists each.
    page.click("#propagate")
    page.wait_for_selector("#result-sbs video", timeout=TIMEOUT_MS)
    page.wait_for_selector("#result-info :text('Keyframes 10, 50')", timeout=TIMEOUT_MS)
    info = page.inner_text("#result-info")
    assert "--keyframe 10" in info and "--keyframe 50" in info, info
    page.locator("#result-sbs").scroll_into_view_if_needed()
    fits_phone(page, "keyframes-result")
    assert "Traceback" not in page.inner_text("body")
    assert not errors, errors
    context.close()
