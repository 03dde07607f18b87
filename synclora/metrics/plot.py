"""The sync report as a picture: what a person looks at to see where and how a result left its source.

Matplotlib loads only here, when a plot is asked for (the CLI's --plot, the app's report panel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synclora.metrics.kept import MIN_PART_SHARE
from synclora.metrics.landmarks import CUE_UNITS
from synclora.metrics.scores import HIDDEN_LABEL, eye_openness, fmt, runs, zscore


def plot_report(report, path: str | Path) -> Path:
    """`report` (a `SyncReport`) as a PNG: z-normalised source (blue) and result (red) curves per cue, blink events
    marked, frames without a face shaded, cues the edit hides greyed and labelled, and the edit-kept curves. Needs the
    tracks (kept by `score_tracks`). Written whole or not at all."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if report.source_track is None or report.result_track is None:
        raise ValueError("this report has no cue tracks to plot")
    src, res = report.source_track, report.result_track
    names = list(report.cues) + ["blink"] + (["edit kept"] if report.kept is not None else [])
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 1.45 * len(names) + 0.8), sharex=True)
    t = np.arange(len(src))
    lost = np.zeros(len(t), bool)
    lost[report.faces.result_missing] = True
    start = report.kept.start if report.kept is not None else 0
    for ax, name in zip(axes, names):
        if name == "edit kept":
            _plot_kept(report, ax, t)
            continue
        if name == "blink":
            ys = eye_openness(src.cues["left_eye"], src.cues["right_eye"])
            yr = eye_openness(res.cues["left_eye"], res.cues["right_eye"])
            hidden = not report.blinks.judged
            title = (f"blink (eye openness) — matched {report.blinks.matched}, missed {report.blinks.missed}, "
                     f"extra {report.blinks.extra}")
            title += f" — {HIDDEN_LABEL}" if hidden else ""
        else:
            ys, yr = src.cues[name], res.cues[name]
            s = report.cues[name]
            hidden = s.hidden
            title = f"{name} ({CUE_UNITS.get(name, '')}) — r {fmt(s.corr)}, lag {s.lag:+d}"
            title += f" — {s.note}" if s.note else ""
        colours = ("0.45", "0.7") if hidden else ("tab:blue", "tab:red")
        ax.plot(t, zscore(ys), color=colours[0], lw=1.2, label="source")
        ax.plot(t, zscore(yr), color=colours[1], lw=1.0, alpha=0.85, label="result")
        if hidden:
            ax.set_facecolor("0.94")
        if name in ("blink", "left_eye", "right_eye") and not hidden:
            for e in report.blinks.source:
                ax.axvline(e, color="tab:blue", lw=0.8, ls="-", alpha=0.6)
            for e in report.blinks.result:
                ax.axvline(e, color="tab:red", lw=0.8, ls="--", alpha=0.6)
        for a, b in runs(lost):
            ax.axvspan(a - 0.5, b - 0.5, color="0.85", lw=0)
        ax.set_title(title, fontsize=8, loc="left", color="0.35" if hidden else "black")
        ax.tick_params(labelsize=7)
        ax.set_ylabel("z", fontsize=7)
    axes[0].legend(loc="upper right", fontsize=7, ncol=2)
    first = report.frames[0] if report.frames else start  # frame numbers of the clip, also when a span was judged
    axes[-1].xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x + first:g}"))
    axes[-1].set_xlabel("frame", fontsize=8)
    fig.suptitle(f"Sync report: {report.verdict}", fontsize=10, x=0.01, ha="left", wrap=True)
    _lay_out(fig, len(axes))
    from synclora.paths import save_figure

    return save_figure(fig, path, dpi=90)

# Margins in inches, as tight_layout measures them for these panels (short tick labels, one-line titles, the verdict
# above): fixed, because measuring every tick and title costs as much CPU as drawing the figure.
_LEFT, _RIGHT, _TOP, _BOTTOM, _GAP = 0.6, 0.15, 1.07, 0.52, 0.37


def _lay_out(fig, n: int) -> None:
    w, h = fig.get_figwidth(), fig.get_figheight()
    panel = (h - _TOP - _BOTTOM - _GAP * (n - 1)) / n
    fig.subplots_adjust(left=_LEFT / w, right=1 - _RIGHT / w, top=1 - _TOP / h, bottom=_BOTTOM / h, hspace=_GAP / panel)


def _plot_kept(report, ax, t: np.ndarray) -> None:
    k, th = report.kept, report.thresholds
    colours = iter(("tab:purple", "tab:orange", "tab:green", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"))
    shown = {n: p for n, p in k.parts.items() if p.share >= MIN_PART_SHARE}
    for name, p in shown.items():
        ax.plot(t, p.curve, lw=1.1, color=next(colours), label=f"{name} ({p.share:.0%} of the edit)")
        low = np.isfinite(p.curve) & (p.curve < th.min_edit_kept)
        for a, b in runs(low):
            if b - a >= th.edit_min_run:
                ax.axvspan(a - 0.5, b - 0.5, color="tab:red", alpha=0.12, lw=0)
    if len(shown) != 1:
        ax.plot(t, k.curve, lw=1.0, color="k", alpha=0.6, label="whole edit")
    ax.axhline(th.min_edit_kept, color="k", lw=0.7, ls="--")
    ax.set_ylim(-0.1, 1.3)
    ax.set_ylabel("kept", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.legend(loc="lower left", fontsize=6, ncol=4)
    title = (f"edit kept (share of the change made at frame {k.edit_index} present at its place; "
             f"< {th.min_edit_kept} = faded)")
    if report.edit_problems:
        title += " — " + "; ".join(report.edit_problems)
    ax.set_title(title, fontsize=8, loc="left")
