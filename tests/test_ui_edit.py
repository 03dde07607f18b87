"""The three ways to get an edited frame: editor layers, an uploaded image, an instruction (no weights here)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from synclora.edit import editor, instruct, upload
from synclora.errors import InputError, ModelUnavailableError


def _frame(w=96, h=64, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(30, 220, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------- editor
def test_editor_value_opens_on_the_frame_with_one_empty_layer():
    f = _frame()
    v = editor.editor_value(f)
    assert v["background"] is f and v["composite"] is f
    assert len(v["layers"]) == 1 and v["layers"][0].shape == (64, 96, 4) and not v["layers"][0].any()


def test_compose_paints_strokes_over_the_frame_and_keeps_the_rest_exact():
    f = _frame()
    layer = np.zeros((64, 96, 4), np.uint8)
    layer[10:20, 30:50] = (255, 0, 0, 255)  # opaque red stroke
    layer[40:44, 5:9] = (0, 0, 255, 128)  # half-transparent blue dab
    out, notices = editor.compose({"background": f, "layers": [layer], "composite": None}, f)
    assert out.shape == f.shape and out.dtype == np.uint8 and notices == []
    assert (out[10:20, 30:50] == (255, 0, 0)).all()
    blend = (f[40:44, 5:9].astype(int) * 127 + np.array([0, 0, 255]) * 128) / 255
    assert np.abs(out[40:44, 5:9].astype(int) - blend).max() <= 1
    untouched = np.ones(f.shape[:2], bool)
    untouched[10:20, 30:50] = untouched[40:44, 5:9] = False
    assert (out[untouched] == f[untouched]).all()


def test_compose_stacks_layers_in_order():
    f = _frame()
    a = np.zeros((64, 96, 4), np.uint8)
    b = np.zeros((64, 96, 4), np.uint8)
    a[0:10, 0:10] = (255, 0, 0, 255)
    b[5:10, 5:10] = (0, 255, 0, 255)
    out, _ = editor.compose({"background": f, "layers": [a, b]}, f)
    assert (out[0:5, 0:5] == (255, 0, 0)).all() and (out[5:10, 5:10] == (0, 255, 0)).all()


def test_compose_without_background_shows_the_frame_not_white():
    f = _frame()
    layer = np.zeros((64, 96, 4), np.uint8)
    out, _ = editor.compose({"background": None, "layers": [layer], "composite": None}, f)
    assert (out == f).all()


def test_compose_uses_composite_when_there_are_no_layers_and_resizes_with_a_notice():
    f = _frame()
    comp = np.zeros((32, 48, 4), np.uint8)
    comp[..., 1] = 200
    comp[..., 3] = 255
    out, notices = editor.compose({"background": None, "layers": [], "composite": comp}, f)
    assert out.shape == f.shape and (out[..., 1] == 200).all()
    assert len(notices) == 1 and "48×32" in notices[0] and "96×64" in notices[0]


@pytest.mark.parametrize("value", [None, {}, {"background": None, "layers": [], "composite": None}])
def test_compose_empty_editor_is_a_user_error(value):
    with pytest.raises(InputError, match="editor is empty"):
        editor.compose(value, _frame())


def test_require_change_rejects_an_untouched_frame_and_accepts_a_small_stroke():
    f = _frame()
    with pytest.raises(InputError, match="same as the original"):
        editor.require_change(f.copy(), f)
    g = f.copy()
    g[0:3, 0:3] = 255 - g[0:3, 0:3]
    editor.require_change(g, f)
    assert editor.changed_fraction(g, f) == pytest.approx(9 / (64 * 96))


# ----------------------------------------------------------------------------------------------------- upload
def _save(img: np.ndarray, path, mode=None):
    im = Image.fromarray(img)
    if mode:
        im = im.convert(mode)
    im.save(path)
    return path


def test_upload_same_size_passes_unchanged(tmp_path):
    f = _frame()
    e = f.copy()
    e[20:30, 20:30] = (255, 0, 0)
    out, notices = upload.fit_upload(_save(e, tmp_path / "e.png"), f)
    assert (out == e).all() and notices == []
    assert not upload.looks_unrelated(e, f)


def test_upload_other_scale_is_resized_with_a_notice(tmp_path):
    f = _frame()
    big = np.asarray(Image.fromarray(f).resize((192, 128), Image.Resampling.BICUBIC))
    out, notices = upload.fit_upload(_save(big, tmp_path / "big.png"), f)
    assert out.shape == f.shape
    assert any("192×128" in n and "96×64" in n for n in notices)
    assert np.abs(out.astype(int) - f.astype(int)).mean() < 12


def test_upload_other_aspect_is_refused_with_a_sentence(tmp_path):
    f = _frame()
    square = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(InputError, match="aspect"):
        upload.fit_upload(_save(square, tmp_path / "sq.png"), f)


def test_upload_transparency_is_filled_and_said(tmp_path):
    f = _frame()
    rgba = np.dstack([f, np.full(f.shape[:2], 255, np.uint8)])
    rgba[0:5, 0:5, 3] = 0
    out, notices = upload.fit_upload(_save(rgba, tmp_path / "a.png"), f)
    assert out.shape == f.shape and any("transparent" in n for n in notices)


def test_upload_of_an_unrelated_picture_is_flagged(tmp_path):
    f = _frame()
    other = np.zeros_like(f)
    other[:, 48:] = 255  # black | white: another picture, not an edit of the gradient
    _, notices = upload.fit_upload(_save(other, tmp_path / "o.png"), f)
    assert any("very different" in n for n in notices)


def test_upload_not_an_image_is_a_user_error(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="not a readable image"):
        upload.fit_upload(p, _frame())


# ----------------------------------------------------------------------------------------------------- instruct
def test_instruct_pipeline_class_exists_in_installed_diffusers():
    import inspect

    from diffusers import Flux2KleinPipeline

    params = inspect.signature(Flux2KleinPipeline.__call__).parameters
    assert {"image", "prompt", "height", "width", "num_inference_steps", "generator"} <= set(params)


@pytest.mark.parametrize("size", [(1920, 1080), (320, 320), (288, 512), (100, 60)])
def test_instruct_working_size_is_16_aligned_and_keeps_aspect(size):
    w, h = instruct.working_size(*size)
    assert w % 16 == 0 and h % 16 == 0
    assert w * h <= instruct.DEFAULT_AREA * 1.05
    assert abs((w / h) / (size[0] / size[1]) - 1) < 0.12


def test_instruction_text_is_checked():
    assert instruct.check_instruction("  add a hat ") == "add a hat"
    with pytest.raises(InputError, match="type an instruction"):
        instruct.check_instruction("   ")
    with pytest.raises(InputError, match="characters long"):
        instruct.check_instruction("x" * 501)


def test_instruct_without_gpu_says_why_instead_of_failing(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, why = instruct.availability()
    assert not ok and "no CUDA GPU" in why
    ed = instruct.InstructEditor()
    with pytest.raises(ModelUnavailableError, match="not available here because this server has no CUDA GPU"):
        ed.edit(_frame(), "add a hat")
    assert not ed.loaded


def test_instruct_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("SYNCLORA_DISABLE_INSTRUCT", "1")
    ok, why = instruct.availability()
    assert not ok and "switched off" in why


def test_instruct_missing_weights_are_reported_without_downloading(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("SYNCLORA_ALLOW_DOWNLOAD", raising=False)
    ok, why = instruct._weights_present("black-forest-labs/FLUX.2-klein-4B")
    assert not ok and "not in the local Hugging Face cache" in why
    folder = tmp_path / "local-model"
    folder.mkdir()
    assert instruct._weights_present(str(folder))[0] is False
    (folder / "model_index.json").write_text("{}")
    assert instruct._weights_present(str(folder)) == (True, "")
