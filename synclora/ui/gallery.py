"""The app's "last results": the session keeps its newest results (up to four) with their sync verdicts and shows
them as one grid video — the source beside each result, each labelled with its verdict, the source's audio — for a
talk ("same clip, three edits"). The grid is the evaluation's own (`synclora.evaluate.grid`), downloadable as one mp4.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from synclora.ui.common import _error, _session, user_errors
from synclora.ui.glue import GradioPipeline

MAX_KEPT = 4
EMPTY = "*No results kept yet: each propagation's result joins this list once its sync report is ready.*"


def verdict_of(report_md: str | None) -> str:
    """The report's verdict sentence: the first line of the report panel's Markdown."""
    for line in (report_md or "").splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line
    return "not judged"


def short_label(verdict: str, limit: int = 40) -> str:
    """A few words of the verdict for a panel label (the part before its parenthesis)."""
    text = verdict.split(" (")[0].rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Gallery:
    """Per-session list of kept results, held in the page (`gr.State`): [{"video", "result", "verdict"}]."""

    def __init__(self, app: GradioPipeline) -> None:
        self.app = app

    @staticmethod
    def markdown(kept: list[dict] | None) -> str:
        if not kept:
            return EMPTY
        # "1\." and not "1.": the number is text (it names the grid's panel), not a list marker Markdown would draw
        lines = [f"{i + 1}\\. **{short_label(k['verdict'])}** — {Path(k['result']).name}" for i, k in enumerate(kept)]
        return "\n\n".join(lines)

    def keep(self, video: str | None, result: str | None, report_md: str | None, kept: list[dict] | None):
        """Add the result whose report just finished (the newest last; the oldest goes beyond four) → (kept, md)."""
        kept = [k for k in (kept or []) if k["result"] != result]
        if video and result and report_md and not report_md.lstrip().startswith("*"):  # a placeholder, no verdict
            kept.append({"video": str(video), "result": str(result), "verdict": verdict_of(report_md)})
        kept = kept[-MAX_KEPT:]
        return kept, self.markdown(kept)

    @user_errors
    def show(self, kept: list[dict] | None, request: gr.Request | None = None):
        """One grid of the kept results of the newest result's clip → (grid mp4, note Markdown)."""
        from synclora.evaluate.grid import write_grid

        if not kept:
            raise _error("No results kept yet: run a propagation and wait for its sync report.")
        source = kept[-1]["video"]
        same = [k for k in kept if k["video"] == source and Path(k["result"]).is_file()]
        notes = []
        if len(same) < len(kept):
            notes.append(f"{len(kept) - len(same)} kept result(s) of another clip, or no longer on the server, are "
                         "left out: a grid shows one clip's results frame by frame.")
        if not Path(source).is_file() or not same:
            raise _error("The kept results are no longer on the server; run a propagation again.")
        for k in same:
            self.app.check_clip(k["result"])
        path = self.app.files.new_file(_session(request), "last-results", ".mp4")
        panels = [(Path(k["result"]), [f"{i + 1}", short_label(k["verdict"])]) for i, k in enumerate(same)]
        write_grid(path, Path(source), panels)
        md = f"The source and its {len(same)} last result(s), frame for frame with the source's audio."
        return str(path), " ".join([md, *notes])

    @staticmethod
    def clear():
        return [], EMPTY, None


def build(app: GradioPipeline):
    """The panel (call inside the Blocks, under the result) → (state, list Markdown, components to wire)."""
    gallery = Gallery(app)
    kept = gr.State([])
    with gr.Accordion("Last results (up to four) as one grid — for a talk", open=False, elem_id="gallery"):
        listing = gr.Markdown(EMPTY, elem_id="gallery-list")
        with gr.Row():
            make = gr.Button("Show them as one grid", size="sm", variant="secondary", elem_id="gallery-show")
            clear = gr.Button("Forget them", size="sm", variant="secondary", elem_id="gallery-clear")
        note = gr.Markdown("", elem_id="gallery-note")
        grid = gr.Video(label="Last results", show_label=False, interactive=False, elem_id="gallery-grid",
                        buttons=["download"], height=360)
    make.click(gallery.show, [kept], [grid, note], api_visibility="private", concurrency_limit=1,
               concurrency_id="report")
    clear.click(gallery.clear, None, [kept, listing, grid], api_visibility="private")
    return gallery, kept, listing
