"""The Blocks layout: five numbered steps, wired to `GradioPipeline` methods. No logic lives here.

Layout rules: two columns that fold into one on narrow screens; big type and high contrast for projectors; every
knob reachable but the rare ones folded away; examples right under the first step so one click shows the idea.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from synclora import config
from synclora.config import PropagationSettings
from synclora.limits import MAX_FRAMES
from synclora.ui import gallery as last_results
from synclora.ui.common import ASSETS, asset
from synclora.ui.components import checked_image
from synclora.ui.glue import GradioPipeline

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"

# The player and the frame index agree exactly: frame k is shown from k/fps to (k+1)/fps, so we seek to the middle
# of the frame, and a paused time t is frame floor(t·fps).
SEEK_JS = """(k, fps) => {
  const v = document.querySelector('#source-video video');
  if (v && fps > 0 && Number.isFinite(k)) {
    const t = (k + 0.5) / fps;
    if (Math.abs(v.currentTime - t) * fps >= 0.5) { if (!v.paused) v.pause(); v.currentTime = t; }
  }
  return [];
}"""
PAUSE_JS = """(fps, k) => {
  const v = document.querySelector('#source-video video');
  if (!v || !(fps > 0)) return k;
  const last = Math.max(0, Math.round(v.duration * fps) - 1);
  return Math.min(last, Math.max(0, Math.floor(v.currentTime * fps + 1e-6)));
}"""


def setting_widget(name: str, value, **kw) -> gr.components.Component:
    """The widget of one propagation setting, from its metadata in `synclora.config` (label, choices, range, hint)."""
    meta = config.metadata(name)
    kw.setdefault("label", meta["label"])
    if meta["info"]:
        kw.setdefault("info", meta["info"])
    if meta["choices"]:
        return gr.Radio([(label, v) for v, label in meta["choices"]], value=value, **kw)
    if meta["text"]:
        return gr.Textbox(value=value, **kw)
    lo, hi = meta["bounds"]  # the widget takes exactly what the CLI and docs/API.md take
    if meta["step"]:
        return gr.Slider(lo, hi, value=value, step=meta["step"], **kw)
    return gr.Number(value, precision=0, minimum=lo, maximum=hi, **kw)


def theme() -> gr.themes.Base:
    return gr.themes.Soft(
        primary_hue="indigo",
        neutral_hue="slate",
        text_size=gr.themes.sizes.text_lg,
        # System fonts only: a Space must not depend on a font CDN, and tests run offline.
        font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
    )


def css() -> str:
    return (ASSETS / "ui.css").read_text(encoding="utf-8")


# Gradio scopes `css` to its content area; the page's own side padding (32 px, an eighth of a phone's width) sits
# outside it, so it is set in the page head.
HEAD = ("<style>@media (max-width: 640px) { .gradio-container .main.app { padding-left: 8px; padding-right: 8px; } }"
        "</style>")


def example_rows() -> tuple[list[list], list[str]]:
    """[video, edited frame, frame index shown, edit index] rows and labels from examples/examples.json."""
    import json

    index = EXAMPLES_DIR / "examples.json"
    if not index.is_file():
        return [], []
    rows, labels = [], []
    for ex in json.loads(index.read_text(encoding="utf-8")):
        video, edited = EXAMPLES_DIR / ex["video"], EXAMPLES_DIR / ex["edited"]
        if video.is_file() and edited.is_file():
            rows.append([str(video), str(edited), int(ex["edit_index"]), int(ex["edit_index"])])
            labels.append(ex["label"])
    return rows, labels


def build(app: GradioPipeline, *, cache_examples: bool = True) -> gr.Blocks:
    # Gradio switches matplotlib's backend around every event; the first events of a page load run at once on
    # several threads, and a first import of pyplot racing itself there fails ("partially initialized module").
    import matplotlib.pyplot  # noqa: F401
    d: PropagationSettings = app.defaults
    instruct_ok, instruct_md = app.instruct_status()
    # Visitors' uploads in Gradio's own cache go like our session folders: after 6 h, and all at shutdown.
    with gr.Blocks(title="Sync-LoRA · portrait video editing", delete_cache=(3600, 6 * 3600)) as demo:
        gr.Markdown(asset("header.md"), elem_id="header")

        # 1 + 2 -------------------------------------------------------------------------------------------------
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=320):
                gr.Markdown("## 1 · Video", elem_classes="step")
                video = gr.Video(
                    label="Source video", sources=["upload"], elem_id="source-video", height="40vh", include_audio=True
                )
                facts = gr.Markdown(asset("help_video.md"), elem_id="facts", label="Facts")
            with gr.Column(scale=7, min_width=320):
                gr.Markdown("## 2 · Frame", elem_classes="step")
                preview = gr.Image(
                    label="Chosen frame", interactive=False, height="40vh", elem_id="frame-preview", type="numpy",
                    buttons=["fullscreen"],
                )
                # The range is set per session when a clip loads; the API (edit_video) accepts any index up to the
                # longest clip the pipeline takes and lets the pipeline say when it is out of range.
                frame = gr.Slider(0, MAX_FRAMES - 1, value=0, step=1, label="Frame index", elem_id="frame-slider",
                                  interactive=False, info=asset("help_frame.md"))
                caption = gr.Markdown("No video yet.", elem_id="frame-caption", label="Frame")
                # The edited span: a range next to the frame picker, kept around the chosen frame (ui.span).
                with gr.Group(elem_id="span-group"):
                    with gr.Row():
                        span_start = gr.Slider(0, 1, value=0, step=1, label="Edit from frame", interactive=False,
                                               elem_id="span-start", min_width=160)
                        span_end = gr.Slider(0, 1, value=1, step=1, label="… to frame", interactive=False,
                                             elem_id="span-end", min_width=160)
                    with gr.Row():
                        w = {"span": setting_widget("span", d.span, elem_id="span", scale=3, min_width=160,
                                                    placeholder="whole clip"),
                             "fade": setting_widget("fade", d.fade, elem_id="fade", scale=2, min_width=120,
                                                    placeholder="auto")}
                    span_caption = gr.Markdown("No video yet.", elem_id="span-caption", label="Edited span")
        fps_num = gr.Number(0.0, visible=False, elem_id="fps", label="fps")

        # Examples right under the first two steps, so a visitor sees them without scrolling. Their outputs (step 5)
        # are created here unrendered and placed further down.
        # Labels are hidden on the page (the tabs name them; a label chip would cover the video's own "source"
        # caption) but still name the API outputs.
        sbs = gr.Video(label="Side by side", show_label=False, interactive=False, elem_id="result-sbs", height=420,
                       buttons=["download"], render=False)
        result = gr.Video(label="Result", show_label=False, interactive=False, elem_id="result-video", height=420,
                          buttons=["download"], render=False)
        result_md = gr.Markdown(asset("help_result.md"), elem_id="result-info", render=False, label="Settings")
        # image_mode=None: Gradio hands the file over as is (no decode); checked_image refuses bombs from the header.
        edited = checked_image(label="Edited frame", type="filepath", image_mode=None, visible=False, elem_id="edited",
                              render=False)
        edit_index = gr.Number(-1, visible=False, precision=0, label="Edit index", render=False)
        rows, labels = example_rows()
        if rows:
            gr.Examples(
                rows, inputs=[video, edited, frame, edit_index], outputs=[result, sbs, result_md],
                fn=app.run_example, cache_examples=cache_examples, cache_mode="lazy" if cache_examples else None,
                example_labels=labels, label="Examples: one click loads a clip, its edited frame and the result",
                visible_columns=[0, 1], api_name="example", elem_id="examples", run_on_click=True,
            )

        # 3 -----------------------------------------------------------------------------------------------------
        gr.Markdown("## 3 · Edit the frame", elem_classes="step")
        gr.Markdown(asset("help_edit.md"), elem_classes="help")
        with gr.Row(equal_height=False):
            with gr.Column(scale=7, min_width=320):
                with gr.Tabs():
                    with gr.Tab("Draw", id="draw"):
                        editor = gr.ImageEditor(
                            label="Paint on the frame (brush, eraser, layers)", type="numpy", image_mode="RGBA",
                            sources=[], transforms=(), layers=True, height=460, elem_id="editor",
                            brush=gr.Brush(default_size=12, colors=["#111111", "#ffffff", "#d62828", "#f77f00",
                                                                   "#fcbf49", "#2a9d8f", "#4361ee", "#9d4edd"],
                                           color_mode="defaults"),
                            eraser=gr.Eraser(default_size=16),
                        )
                        use_draw = gr.Button("Use this drawing", variant="secondary", elem_id="use-drawing")
                    with gr.Tab("Instruction", id="instruct"):
                        gr.Markdown(instruct_md, elem_id="instruct-status")
                        instruction = gr.Textbox(label="Instruction", lines=2, elem_id="instruction",
                                                 placeholder="e.g. give her round black sunglasses",
                                                 interactive=instruct_ok)
                        with gr.Row():
                            instruct_seed = gr.Number(0, precision=0, label="Seed", min_width=120)
                            instruct_btn = gr.Button("Edit with FLUX.2 [klein]", interactive=instruct_ok,
                                                     elem_id="instruct-button")
                    with gr.Tab("Upload", id="upload"):
                        upload = checked_image(label="Edited frame from another tool (PNG or JPEG, same framing)",
                                              type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                              height=400, elem_id="upload-edit")
            with gr.Column(scale=5, min_width=320):
                before_after = gr.ImageSlider(label="Before / after (drag the divider)", interactive=False,
                                              elem_id="before-after", max_height=460, type="numpy")
                edit_status = gr.Markdown("No edit yet.", elem_id="edit-status", label="Edit status")
                edited.render()
                edit_index.render()
                # Several edited frames: the list (ui.keyframes) the propagation uses with the edit on screen.
                with gr.Accordion("Keyframes: edit more than one frame", open=False, elem_id="keyframes"):
                    keys_md = gr.Markdown(asset("help_keyframes.md"), elem_id="keyframes-status")
                    own_span = gr.Checkbox(False, label="Each keyframe its own span (a different look per span)",
                                           elem_id="keyframes-own-span")
                    add_key = gr.Button("Add this edit as a keyframe", variant="secondary", elem_id="keyframe-add")
                    keys_gallery = gr.Gallery(label="Keyframes", columns=4, height="auto", allow_preview=False,
                                              elem_id="keyframes-list", interactive=False, object_fit="contain")
                    with gr.Row():
                        reedit_key = gr.Button("Re-edit selected", size="sm", elem_id="keyframe-reedit",
                                               min_width=120)
                        remove_key = gr.Button("Remove selected", size="sm", elem_id="keyframe-remove", min_width=120)
                    key_images = gr.File(file_count="multiple", visible=False, label="Keyframe images")
                    key_text = gr.Textbox("", visible=False, label="Keyframes", elem_id="keyframes-text")
                    key_selected = gr.Number(-1, visible=False, precision=0, label="Selected keyframe")

        # 4 -----------------------------------------------------------------------------------------------------
        gr.Markdown("## 4 · Propagate", elem_classes="step")
        with gr.Row(equal_height=False):
            with gr.Column(scale=7, min_width=320):
                # Widgets come from the settings' metadata; this only places them.
                w["backend"] = setting_widget("backend", d.backend, elem_id="backend")
                with gr.Row():
                    w["quality"] = setting_widget("quality", d.quality, elem_id="quality", scale=3)
                    w["seed"] = setting_widget("seed", d.seed, min_width=120, elem_id="seed", scale=1)
                with gr.Accordion("Advanced settings", open=False):
                    for row in (("fit", "resolution"), ("time_mode", "chunk_overlap"), ("model", "memory")):
                        with gr.Row():
                            for name in row:
                                w[name] = setting_widget(name, getattr(d, name))
            with gr.Column(scale=5, min_width=320):
                run = gr.Button("▶ Propagate the edit", variant="primary", size="lg", elem_id="propagate")
                gr.Markdown(app.backend_summary(), elem_id="backend-summary")
                with gr.Accordion("Which backend? What does this server have?", open=False):
                    gr.Markdown(asset("help_propagate.md"))
                    backends_md = gr.Markdown(app.backend_markdown(), elem_id="backends")
                    recheck = gr.Button("Check again", size="sm", variant="secondary", elem_id="recheck")

        # 5 -----------------------------------------------------------------------------------------------------
        gr.Markdown("## 5 · Result", elem_classes="step")
        with gr.Row(equal_height=False):
            with gr.Column(scale=8, min_width=320):
                with gr.Tabs():
                    with gr.Tab("Side by side (source | result, with the source audio)", id="sbs"):
                        sbs.render()
                    with gr.Tab("Result only", id="result-tab"):
                        result.render()
                result_md.render()
            with gr.Column(scale=4, min_width=280):
                gr.Markdown("### Sync report")
                report_md = gr.Markdown(asset("help_report.md"), elem_id="report-verdict", label="Verdict")
                report_img = gr.Image(label="Sync report plot", show_label=False, interactive=False, type="filepath",
                                      elem_id="report-plot", buttons=["fullscreen", "download"])
                show_lm = gr.Button("Show the face landmarks the report read", size="sm", variant="secondary",
                                    elem_id="report-show-landmarks")
                # No label chip: it would cover the video's own "source" / "result" captions (the verdict names it).
                report_lm = gr.Video(label="Landmarks the report read (source | result)", show_label=False,
                                     interactive=False, elem_id="report-landmarks", buttons=["download"], height=240)
        gallery, kept, kept_md = last_results.build(app)

        # Wiring -------------------------------------------------------------------------------------------------
        light = dict(concurrency_limit=4, concurrency_id="light")
        # A new clip starts with no edit and no keyframes (in the same step: no extra event races the upload's).
        video.upload(app.prepare_upload, [video], [video], api_visibility="private", **light).then(
            lambda: (None, None, -1, "No edit yet.", None, None, None, None, None, "", [],
                     asset("help_keyframes.md"), -1), None,
            [edited, upload, edit_index, edit_status, result, sbs, report_img, report_lm, key_images, key_text,
             keys_gallery, keys_md, key_selected], api_visibility="private",
        )
        video.clear(lambda: (None, -1, "No edit yet.", None, None, None, None), None,
                    [edited, edit_index, edit_status, result, sbs, report_img, report_lm], api_visibility="private")
        span_inputs = [video, frame, span_start, span_end, w["span"], w["fade"]]
        span_outputs = [span_start, span_end, w["span"], span_caption]
        video.change(app.load_video, [video, frame, edit_index, edited],
                     [facts, frame, preview, caption, fps_num, editor, before_after, edit_status],
                     api_name="load_video", **light).then(
            app.span_reset, [video], [*span_outputs, w["fade"]], api_visibility="private", **light)
        frame.change(app.pick_frame, [video, frame, edit_index, edited],
                     [preview, caption, editor, before_after, edit_status], api_name="pick_frame",
                     show_progress="minimal", trigger_mode="always_last", **light)
        frame.change(None, [frame, fps_num], None, js=SEEK_JS, api_visibility="private")
        # The span's events run one at a time, in the order they were made: the span box's blur, fired as the person
        # moves on to a slider, must not finish after that slider's move and undo it (each takes milliseconds).
        in_order = dict(concurrency_limit=1, concurrency_id="span")
        video.pause(None, [fps_num, frame], [frame], js=PAUSE_JS, api_visibility="private").then(
            app.span_follow_frame, span_inputs, span_outputs, api_visibility="private", **in_order)
        # Only a person's moves (input, not change) drive the span, so the span and frame updates never loop.
        span_events = dict(api_visibility="private", show_progress="hidden", trigger_mode="always_last", **in_order)
        frame.input(app.span_follow_frame, span_inputs, span_outputs, **span_events)
        span_start.input(app.span_from_sliders, span_inputs, span_outputs, **span_events)
        span_end.input(app.span_from_sliders, span_inputs, span_outputs, **span_events)
        for box, left in ((w["span"], app.span_text_left), (w["fade"], app.span_from_text)):
            box.submit(app.span_from_text, span_inputs, span_outputs, **span_events)
            box.blur(left, span_inputs, span_outputs, **span_events)

        edit_outputs = [edited, before_after, edit_index, edit_status]
        use_draw.click(app.use_drawing, [editor, video, frame], edit_outputs, api_visibility="private", **light)
        upload.upload(app.use_upload, [upload, video, frame], edit_outputs, api_name="fit_edit", **light)
        instruct_btn.click(app.use_instruction, [instruction, instruct_seed, video, frame], edit_outputs,
                           api_name="instruct_edit", concurrency_limit=1, concurrency_id="gpu")
        instruction.submit(app.use_instruction, [instruction, instruct_seed, video, frame], edit_outputs,
                           api_visibility="private", concurrency_limit=1, concurrency_id="gpu")

        key_outputs = [key_images, key_text, keys_gallery, keys_md, key_selected]
        add_key.click(app.add_keyframe_and_clear, [video, edited, edit_index, w["span"], own_span, key_images,
                                                   key_text], [*key_outputs, edited, edit_index, edit_status],
                      api_visibility="private", **light)
        keys_gallery.select(app.select_keyframe, None, key_selected, api_visibility="private", **light)
        remove_key.click(app.remove_keyframe, [key_selected, key_images, key_text], key_outputs,
                         api_visibility="private", **light)
        reedit_key.click(app.reedit_keyframe, [key_selected, key_images, key_text], [frame, w["span"]],
                         api_visibility="private", **light)

        settings_inputs = [w[f.name] for f in config.setting_fields(ui_only=True)]  # edit_video's parameter order
        # The page propagates the keyframe list with the edit on screen; `/edit_video` (one edited frame) is the
        # same call for API users, on a button of its own that the page does not show.
        run.click(app.check_ready, [video, edited, frame, edit_index, key_text], None, api_visibility="private",
                  **light).success(
            app.edit_keyframes, [video, edited, frame, key_images, key_text, *settings_inputs],
            [result, sbs, result_md], api_name="edit_keyframes", api_description=config.keyframes_api_description(),
            concurrency_limit=1, concurrency_id="gpu", scroll_to_output=True,
        )
        api_only = gr.Button(visible=False)
        api_only.click(
            app.edit_video, [video, edited, frame, *settings_inputs], [result, sbs, result_md], api_name="edit_video",
            api_description=config.api_description(), concurrency_limit=1, concurrency_id="gpu",
        )
        result.change(app.sync_report, [video, result, edited, edit_index, w["span"]],
                      [report_img, report_md, report_lm], api_name="sync_report", concurrency_limit=1,
                      concurrency_id="report", show_progress_on=[report_img]).success(
            gallery.keep, [video, result, report_md, kept], [kept, kept_md], api_visibility="private")
        show_lm.click(app.landmark_view, [video, result, edited, edit_index, w["span"]], [report_lm],
                      api_name="landmark_view", concurrency_limit=1, concurrency_id="report")
        recheck.click(app.backend_markdown, None, backends_md, api_name="backend_status", concurrency_limit=1,
                      concurrency_id="status")
        demo.unload(app.end_session)
    return demo
