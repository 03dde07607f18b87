"""Evaluation inside a training run: the same table for the LoRA being trained, step after step, and one plot of the
summary measures over the steps — so a run shows whether sync and the edit improve, not only the loss."""

from __future__ import annotations

import json
from pathlib import Path

from synclora.config import PropagationSettings
from synclora.evaluate.run import EvalConfig, evaluate

METHOD = "lora"  # the method name of the LoRA being trained, in every step's table
# The summary measures drawn over the steps: (key in the summary, title, which way is better).
CURVES = (("in_sync", "share of cases in sync", "higher"), ("corr", "r (judged cues)", "higher"),
          ("mouth_corr", "mouth r", "higher"), ("edit_kept_mean", "edit kept", "closer to 1"),
          ("flicker", "flicker", "lower"), ("preservation_psnr", "PSNR kept (dB)", "higher"))


def step_folder(eval_dir: Path, step: int) -> Path:
    return Path(eval_dir) / f"step-{step:08d}"


def evaluate_step(cases: Path, eval_dir: Path, step: int, lora: Path, settings: PropagationSettings) -> dict:
    """Judge `lora` on every case into EVAL/step-NNNNNNNN/ (the step, 8 digits), add its summary to
    EVAL/summary.jsonl (replacing an earlier line of the same step: a resumed run) and redraw EVAL/summary.png.
    Returns the step's summary."""
    from synclora.paths import atomic_output

    cfg = EvalConfig(cases=Path(cases), out=step_folder(eval_dir, step), loras=(f"{METHOD}={lora}",),
                     settings=settings)
    summary = evaluate(cfg)
    line = {"step": step, **(summary_of(summary.rows))}
    log = Path(eval_dir) / "summary.jsonl"
    lines = [json.loads(t) for t in log.read_text().splitlines() if t.strip()] if log.is_file() else []
    lines = sorted([x for x in lines if x.get("step") != step] + [line], key=lambda x: x["step"])
    with atomic_output(log) as tmp:
        tmp.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    plot_steps(lines, Path(eval_dir) / "summary.png")
    return line


def summary_of(rows: list[dict]) -> dict:
    from synclora.evaluate import table
    from synclora.evaluate.cases import Method

    return table.summary(rows, [Method(METHOD, "synclora")])[METHOD]


def plot_steps(lines: list[dict], path: Path) -> Path:
    """PNG: each summary measure over the training steps."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from synclora.paths import save_figure

    steps = [x["step"] for x in lines]
    fig, axes = plt.subplots(2, 3, figsize=(11, 5.5), sharex=True)
    for ax, (key, title, better) in zip(axes.flat, CURVES):
        ys = [float("nan") if x.get(key) is None else x[key] for x in lines]
        ax.plot(steps, ys, marker="o", lw=1.2)
        ax.set_title(f"{title} ({better} is better)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("step", fontsize=8)
    fig.suptitle("evaluation over training steps", fontsize=10, x=0.01, ha="left")
    fig.tight_layout()
    return save_figure(fig, path)
