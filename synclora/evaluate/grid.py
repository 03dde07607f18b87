"""What a person looks at per case: every result beside its source in one video, and one plot of the numbers.

The grid has exactly the source's frames, at its frame rate, with its audio: panel i of frame t is frame t of that
video, never another (a result shorter than its clip shows black once it has ended). Each panel is labelled with the
method and its verdict. `labelled_grid` is shared with the app's gallery of recent results.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from synclora.evaluate.cases import Case, Method

# Panel height by how many panels there are: a grid of many full-HD panels would be wider than players show.
_PANEL_HEIGHT = ((2, 720), (4, 480), (9, 360))
MAX_COLUMNS = 3


def panel_height(source_height: int, panels: int) -> int:
    for most, h in _PANEL_HEIGHT:
        if panels <= most:
            return min(source_height, h)
    return min(source_height, 270)


def short_verdict(row: dict) -> str:
    """A few words for a panel label (the grid's font is plain ASCII)."""
    if row.get("in_sync") is None:
        return "not judged"
    if row.get("in_sync"):
        return "in sync"
    lag = row.get("lag", 0)
    if lag:
        return f"not in sync, lag {lag:+d}"
    return "not in sync"


def _label(panel: np.ndarray, lines: Sequence[str]) -> None:
    scale = max(0.4, panel.shape[0] / 720)
    thick = max(1, round(scale * 1.5))
    y = 0
    for text in lines:
        text = text.encode("ascii", "replace").decode()
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        pad = max(3, th // 3)
        cv2.rectangle(panel, (0, y), (tw + 2 * pad, y + th + base + 2 * pad), (0, 0, 0), thickness=-1)
        cv2.putText(panel, text, (pad, y + th + pad), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)
        y += th + base + 2 * pad


def labelled_grid(videos: Sequence[Iterable[np.ndarray]], labels: Sequence[Sequence[str]], n_frames: int,
                  size: tuple[int, int]) -> Iterator[np.ndarray]:
    """`n_frames` grid frames: video i's frame t in panel i (scaled to `size` = the panel's (w, h), black once that
    video has ended), labelled with `labels[i]`. Videos longer than `n_frames` are cut there."""
    W, H = size
    cols = min(MAX_COLUMNS, len(videos))
    rows = math.ceil(len(videos) / cols)
    gap = 4
    its = [iter(v) for v in videos]
    for _ in range(n_frames):
        canvas = np.zeros((rows * H + (rows - 1) * gap, cols * W + (cols - 1) * gap, 3), np.uint8)
        for i, it in enumerate(its):
            frame = next(it, None)
            r, c = divmod(i, cols)
            panel = np.zeros((H, W, 3), np.uint8)
            if frame is not None:
                panel = cv2.resize(frame, (W, H), interpolation=cv2.INTER_AREA if frame.shape[0] > H
                                   else cv2.INTER_LINEAR)
            _label(panel, labels[i] if frame is not None else [*labels[i], "(ended)"])
            canvas[r * (H + gap): r * (H + gap) + H, c * (W + gap): c * (W + gap) + W] = panel
        yield canvas


def write_grid(path: Path, source: Path, results: Sequence[tuple[Path, Sequence[str]]],
               source_label: Sequence[str] = ("source",)) -> Path:
    """The source and `results` (path, label lines) side by side: the source's frame count, fps and audio."""
    from synclora.video import io

    info = io.probe(source)
    h = panel_height(info.height, 1 + len(results))
    w = max(2, round(info.width * h / info.height))
    videos = [io.iter_frames(source), *(io.iter_frames(p, stop=min(info.n_frames, io.probe(p).n_frames))
                                        for p, _ in results)]
    labels = [list(source_label), *(list(lab) for _, lab in results)]
    frames = labelled_grid(videos, labels, info.n_frames, (w, h))
    return io.write_video(path, frames, info.fps, audio_from=source if info.has_audio else None,
                          preset=io.VIEWING_PRESET, threads=io.VIEWING_THREADS)


def case_outputs(case: Case, methods: list[Method], out: Path, rows: list[dict | None]) -> None:
    """DIR/CASE/grid.mp4 and DIR/CASE/plot.png from the case's finished rows; skipped when the rows they show have
    not changed since they were made (a resumed run redraws only what changed)."""
    from synclora.data.cluster import write_json_atomic

    done = [(m, r) for m, r in zip(methods, rows) if r is not None]
    if not done:
        return
    folder = out / case.name
    stamp = folder / ".outputs.json"
    state = {"rows": [[m.name, r.get("key")] for m, r in done]}
    grid, plot = folder / "grid.mp4", folder / "plot.png"
    try:
        if grid.is_file() and plot.is_file() and json.loads(stamp.read_text()) == state:
            return
    except (OSError, ValueError):
        pass
    panels = [(Path(r["result"]), [m.name, short_verdict(r)]) for m, r in done]
    write_grid(grid, case.clip, panels)
    plot_case(plot, case.name, [(m.name, r) for m, r in done])
    write_json_atomic(stamp, state)


def plot_case(path: Path, case: str, rows: list[tuple[str, dict]]) -> Path:
    """PNG: the mouth opening of the source and every result over the judged frames (z-normalised), and one bar
    chart per headline measure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from synclora.metrics.scores import zscore
    from synclora.paths import save_figure

    bars = (("corr", "r (judged cues)"), ("lag", "lag (frames)"), ("edit_kept_mean", "edit kept"),
            ("flicker", "flicker (lower is steadier)"), ("preservation_psnr", "PSNR kept (dB)"))
    fig = plt.figure(figsize=(11, 6.2))
    top = fig.add_subplot(2, 1, 1)
    src = next((r["curves"]["source_mouth"] for _, r in rows if r.get("curves")), None)
    first = rows[0][1].get("frames", [0])[0] if rows[0][1].get("frames") else 0
    if src is not None:
        t = np.arange(len(src)) + first
        top.plot(t, zscore(np.array(src, dtype=float)), color="k", lw=1.6, label="source")
        for name, r in rows:
            if r.get("curves"):
                top.plot(t, zscore(np.array(r["curves"]["mouth"], dtype=float)), lw=1.0, alpha=0.85,
                         label=f"{name} ({short_verdict(r)})")
        top.legend(fontsize=7, ncol=min(4, len(rows) + 1), loc="upper right")
    top.set_title(f"{case}: mouth opening, z-normalised", fontsize=9, loc="left")
    top.set_xlabel("frame", fontsize=8)
    top.tick_params(labelsize=7)
    names = [n for n, _ in rows]
    for i, (key, title) in enumerate(bars):
        ax = fig.add_subplot(2, len(bars), len(bars) + i + 1)
        vals = [r.get(key) for _, r in rows]
        ax.bar(range(len(vals)), [np.nan if v is None else v for v in vals], color="tab:blue")
        ax.set_xticks(range(len(vals)), names, rotation=30, fontsize=7, ha="right")
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
