"""Pair generation at real scale: seconds per pair (instruction edit + two image-to-video clips + two mp4 writes) and
pairs per GPU-hour, against one Sync-LoRA propagation of the same clip measured in the same run (the baseline).

No download: LTX-2.3 and FLUX.2 [klein] 4B are built from their true configs with random weights (speed does not
depend on the values), exactly as `bench_ltx` and `bench_instruct` build them; the clips go through the very
`data.i2v.ImageToVideo` the `generate` command uses, on the model the Sync-LoRA backend builds.

    python -m benchmarks.bench_pairs            # GPU: 81 frames at 512x512, bf16
    python -m benchmarks.bench_pairs --tiny     # CPU smoke run of the same code path with the tiny models
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_ltx import log, make_model, run_case
from synclora.config import PropagationSettings
from synclora.data.i2v import ClipSettings, ImageToVideo
from synclora.propagate.ltx import SyncLoRAPropagator


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def edit_timer(args, device: str):
    """A function that makes one instruction edit of a (size, size) still and returns its seconds."""
    if args.tiny:
        from synclora.data.stills import tiny_editor
        from synclora.edit.instruct import InstructSettings

        editor = tiny_editor(["give the person round sunglasses"])

        def edit(still: np.ndarray) -> float:
            t0 = time.perf_counter()
            editor.edit(still, "give the person round sunglasses", InstructSettings(area=still.shape[0] ** 2))
            return time.perf_counter() - t0

        return edit
    from PIL import Image

    from benchmarks.bench_instruct import _models

    pipe, text_encoder = _models(device, torch.bfloat16)

    @torch.inference_mode()
    def edit(still: np.ndarray) -> float:  # what Flux2KleinPipeline does for an edit (see bench_instruct)
        _sync(device)
        t0 = time.perf_counter()
        ids = torch.randint(0, 151936, (1, 512), device=device)
        hs = text_encoder(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True).hidden_states
        emb = torch.cat([hs[9], hs[18], hs[27]], dim=-1)
        size = still.shape[0]
        pipe(image=Image.fromarray(still), prompt_embeds=emb, height=size, width=size, num_inference_steps=4,
             guidance_scale=1.0, generator=torch.Generator(device).manual_seed(0), output_type="np")
        _sync(device)
        return time.perf_counter() - t0

    return edit


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny models on the CPU (smoke test of this script)")
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory", default="bf16")
    ap.add_argument("--sync-rank", type=int, default=256)
    ap.add_argument("--distilled-rank", type=int, default=384)
    args = ap.parse_args()
    if args.tiny:
        args.frames, args.size, args.sync_rank, args.distilled_rank = min(args.frames, 17), 64, 4, 8
        torch.set_num_threads(1)
    device = "cpu" if args.tiny else "cuda"
    start = time.perf_counter()
    log(f"device: {device if args.tiny else torch.cuda.get_device_name()}; torch {torch.__version__}; "
        f"{args.frames} frames at {args.size}x{args.size}, {args.memory}")
    rng = np.random.default_rng(0)
    still = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    frames = rng.integers(0, 256, (args.frames, args.size, args.size, 3), dtype=np.uint8)

    model = make_model(args, args.memory, None)
    baseline = run_case(SyncLoRAPropagator(PropagationSettings(backend="synclora", model="tiny" if args.tiny
                                                                 else "real"), model=model),
                        frames, "full", args.repeats, "propagation (baseline)")["total_s"]
    # The prompt's values do not change the cost (the connectors always hand the transformer the same length).
    i2v = ImageToVideo(model, {"motion": model.pipe.connectors})
    clip = ClipSettings(args.size, args.size, args.frames)
    clip_s, write_s = [], []
    from synclora.video import io

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats + 1):  # the first run warms up and is not counted
            _sync(device)
            t0 = time.perf_counter()
            out = i2v(still, "motion", i, clip)
            _sync(device)
            t1 = time.perf_counter()
            io.write_video(Path(tmp) / "clip.mp4", out, 25)
            t2 = time.perf_counter()
            if i:
                clip_s.append(t1 - t0)
                write_s.append(t2 - t1)
            log(f"  image-to-video clip run {i}: {t1 - t0:.3f} s, mp4 write {t2 - t1:.3f} s")
    del i2v, model
    edit = edit_timer(args, device)
    edit_s = [edit(still) for _ in range(args.repeats + 1)][1:]
    c, w, e = float(np.median(clip_s)), float(np.median(write_s)), float(np.median(edit_s))
    gpu_pair = e + 2 * c
    pair = gpu_pair + w  # `generate` encodes the source clip while the GPU makes the target: one write is exposed
    log("\nsummary (medians):")
    log(f"  instruction edit           {e:7.3f} s")
    log(f"  image-to-video clip        {c:7.3f} s   ({c / baseline:.2f}x one propagation of the same clip, "
        f"{baseline:.3f} s: the baseline)")
    log(f"  mp4 write (CPU)            {w:7.3f} s")
    log(f"  one pair                   {pair:7.3f} s   = edit + 2 clips + 1 write ({pair / baseline:.2f}x baseline)")
    log(f"  pairs per GPU-hour         {3600 / pair:7.0f}")
    log(f"wall {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
