"""`train --eval CASES --eval-every N` on the tiny model: the evaluation table of the LoRA being trained at each
step asked for, and one plot of the summary measures over the steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synclora.testing.cases import write_cases
from synclora.video import io


def _blob_clip(seed: int, n: int = 9, size: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    frames = []
    for t in range(n):
        cx, cy = size / 2 + 8 * np.sin(t / 3 + seed), size / 2 + 6 * np.cos(t / 4 + seed)
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        frames.append(np.stack([np.clip(255 - d * 8, 0, 255), 80 + 40 * np.sin(xx / 5 + t / 2),
                                120 * np.ones_like(d)], -1).astype(np.uint8))
    return np.stack(frames)


@pytest.mark.slow
def test_train_evaluates_the_lora_at_each_step_asked(tmp_path):
    from PIL import Image

    from synclora.cli import main
    from synclora.propagate import registry
    from synclora.testing.faces import talking_clip
    from synclora.testing.media import tone, write_clip

    pairs = tmp_path / "pairs"
    for i in range(2):
        d = pairs / f"pair{i}"
        d.mkdir(parents=True)
        src = _blob_clip(i)
        io.write_video(d / "source.mp4", src, 25)
        io.write_video(d / "target.mp4", 255 - src, 25)
    cases_dir = tmp_path / "cases"
    (cases_dir / "face").mkdir(parents=True)
    clip = talking_clip("grace_hopper", 12, size=128, blinks=(5,))
    edited = talking_clip("grace_hopper", 12, size=128, blinks=(5,), edit="lipstick")
    write_clip(cases_dir / "face" / "clip.mp4", clip.frames, 25, audio=tone(12 / 25))
    Image.fromarray(edited.frames[0]).save(cases_dir / "face" / "edited.png")
    cases = write_cases(cases_dir, [{"name": "face", "clip": "face/clip.mp4", "edited": "face/edited.png",
                                     "edit_index": 0}])
    run = tmp_path / "run"
    loaded_before = set(registry._instances)  # other tests may have left models of their own
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = main(["train", "--data", str(pairs), "--out", str(run), "--model", "tiny", "--rank", "4", "--alpha", "4",
                   "--width", "16", "--height", "16", "--num-frames", "9", "--steps", "2", "--checkpoint-every", "2",
                   "--sample-every", "0", "--lr", "1e-2", "--eval", str(cases), "--eval-every", "1", "--quiet"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    lines = [json.loads(x) for x in (run / "eval" / "summary.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2]
    assert all(x["cases"] + x["missing"] == 1 for x in lines)
    assert (run / "eval" / "summary.png").stat().st_size > 5000
    for step in (1, 2):
        folder = run / "eval" / f"step-{step:08d}"
        res = json.loads((folder / "results.json").read_text())
        assert [m["name"] for m in res["methods"]] == ["lora"]
        rows = res["rows"] + res["missing"]
        assert len(rows) == 1 and rows[0]["method"] == "lora"
        made = io.probe(folder / "face" / "lora.mp4")
        assert (made.n_frames, made.fps, made.has_audio) == (12, 25, True)
        assert (folder / "table.md").is_file() and (folder / "face" / "grid.mp4").is_file()
    # step 1 had no checkpoint: its LoRA was exported for the evaluation and removed after it
    assert not (run / "eval" / "step-00000001" / "lora.safetensors").exists()
    logged = [json.loads(x) for x in (run / "loss.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logged if "eval" in x] == [1, 2]
    assert set(registry._instances) <= loaded_before  # the evaluation's model was let go
