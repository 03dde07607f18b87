"""Parity: our Sync-LoRA backend makes the same video as Lightricks' `ICLoraPipeline` from the same weights.

    python benchmarks/parity_ltx.py                  # CPU: small LTX-2.3 (every 2.3 switch on), a few minutes
    python benchmarks/parity_ltx.py --true-config    # GPU: LTX-2.3 at full size (add --layers N to fit a budget)

What happens (docs/PARITY.md has the reasoning and the figures):
1. ltx-core/ltx-pipelines 1.0.0 are installed beside the project on first run (cached; see ltx_official.py).
2. ltx-core's configurators build the transformer, text connectors, video/audio VAE, vocoder and x2 upsampler with
   random weights, written as the release writes them: one bf16 safetensors file with ltx-core key names and the
   JSON config in its metadata, a separate upsampler file, a rank-r Sync-LoRA (video attention + FFN, metadata
   `reference_downscale_factor`) and a distilled LoRA over every Linear of the transformer.
3. A reference clip (lossless RGB file) and an edited first frame (PNG) go to both sides with the same seed.
   Official: `ICLoraPipeline.__call__` as shipped (bf16), and the same pipeline's stages driven in fp32/fp64.
   Ours: `synclora.ltx.convert.load_released` (our converter) -> `ltx.recipe.build_model` -> the backend's own
   `SyncLoRAPropagator.propagate`, in the same dtypes.
4. Stage-1 latents, stage-2 latents (normalized, as ltx-core keeps them) and decoded uint8 frames are compared.
   The verdict is on float32, where both sides draw identical noise and only rounding separates them; bfloat16
   (the dtype the app runs in) is compared as shipped, against the official pipeline's own bf16-vs-fp32 drift.
   Deliberate recipe errors on our side (`MUTATIONS`) must each fail, so the tolerance is shown to have teeth.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synclora.ltx.recipe import FRAME_RATE

if __package__:  # python -m benchmarks.parity_ltx
    from benchmarks import ltx_official as official
else:  # python benchmarks/parity_ltx.py: this folder is sys.path[0] (synclora comes from `pip install -e .`)
    import ltx_official as official

# Verdict in float32, where both sides draw the same noise from the same generator (diffusers always samples
# float32 noise; ltx-core samples in the state's dtype, so float64 runs would start from different noise).
# Rounding through 11 denoising steps leaves ~1e-6 (rms of the latents ~1); the smallest recipe difference we know
# of (the reference clip re-quantized to uint8 after resizing) moved latents by ~1e-3, the others by 1e-2..1.
# 1e-4 sits two orders above the first and an order below the second; `MUTATIONS` re-checks the second half of that
# claim in every run. Decoded frames are uint8 from ltx-core's truncating conversion: equal latents up to rounding
# may land on either side of a level, so 1 level is allowed on at most 1% of the values.
TOLERANCE = {"stage1": 1e-4, "stage2": 1e-4, "frames": 1}
FRAMES_OFF_BY_ONE = 0.01

def log(msg: str = "") -> None:
    print(msg, flush=True)


# --- inputs -----------------------------------------------------------------------------------------------------------
def synthetic_clip(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A moving, textured 'portrait' (ellipse face, eyes, mouth that opens) and an edited first frame.

    Numpy only, so the device needs nothing more. The edit recolours the face and paints a band (a 'lipstick')."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    texture = rng.uniform(0, 1, (8, 8, 3)).astype(np.float32)
    frames = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        t = i / max(n - 1, 1)
        cx, cy = 0.5 + 0.05 * math.sin(6.28 * t), 0.5 + 0.03 * math.cos(6.28 * t)
        bg = texture[(yy * 8).astype(int) % 8, (xx * 8).astype(int) % 8] * 0.5 + 0.25
        face = ((xx - cx) / 0.28) ** 2 + ((yy - cy) / 0.36) ** 2 < 1
        img = bg.copy()
        img[face] = (0.85, 0.65, 0.55)
        for ex in (-0.1, 0.1):
            eye = ((xx - cx - ex) / 0.04) ** 2 + ((yy - cy + 0.08) / (0.025 * (1 - 0.9 * (i % 9 == 4)))) ** 2 < 1
            img[eye] = (0.1, 0.1, 0.15)
        mouth = ((xx - cx) / 0.1) ** 2 + ((yy - cy - 0.15) / (0.01 + 0.04 * abs(math.sin(1.7 * i)))) ** 2 < 1
        img[mouth] = (0.35, 0.05, 0.05)
        frames[i] = (img * 255).round().astype(np.uint8)
    edited = frames[0].astype(np.float32)
    face0 = ((xx - 0.5) / 0.28) ** 2 + ((yy - 0.5 - 0.03) / 0.36) ** 2 < 1
    edited[face0] = edited[face0] * np.float32([0.7, 0.9, 1.2])
    edited[(np.abs(yy - 0.68) < 0.03) & (np.abs(xx - 0.5) < 0.1)] = (200, 20, 60)
    return frames, np.clip(edited, 0, 255).round().astype(np.uint8)


def write_lossless(path: Path, frames: np.ndarray, fps: float) -> Path:
    """H.264 in RGB at qp 0: PyAV's `to_rgb()` (what ltx-pipelines reads with) returns the exact frames."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264rgb", rate=int(fps), options={"qp": "0", "preset": "ultrafast"})
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = "rgb24"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def read_rgb(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_rgb().to_ndarray() for f in c.decode(video=0)])


def gemma_hidden_states(length: int, valid: int, seed: int, device) -> tuple[tuple, torch.Tensor]:
    """Stand-in for Gemma 3's 49 hidden states of a left-padded prompt (both sides get these exact tensors)."""
    g = torch.Generator().manual_seed(seed)
    states = tuple((torch.randn(1, length, 3840, generator=g) * (1 + i / 8)).to(device) for i in range(49))
    mask = torch.zeros(1, length, dtype=torch.long)
    mask[:, -valid:] = 1
    return states, mask.to(device)


# --- runs -------------------------------------------------------------------------------------------------------------
@dataclass
class Files:
    checkpoint: Path
    upsampler: Path
    sync: dict  # dtype name -> path
    distilled: dict
    reference: Path
    image: Path


def prepare(args, tmp: Path, device) -> tuple[Files, np.ndarray, np.ndarray, tuple, torch.Tensor]:
    config, ups = (json.loads(json.dumps(official.TRUE_CONFIG)), dict(official.TRUE_UPSAMPLER)) if args.true_config \
        else official.tiny_config()
    if args.layers:
        config["transformer"]["num_layers"] = args.layers
    t0 = time.perf_counter()
    build_dtype = torch.bfloat16 if args.true_config else torch.float32
    mods = official.build_official(config, ups, seed=args.seed, device=device, dtype=build_dtype)
    ckpt = official.write_checkpoint(tmp / "ltx-2.3-parity.safetensors", mods, config)
    upsf = official.write_upsampler(tmp / "ltx-2.3-spatial-upscaler-x2-parity.safetensors", mods, ups)
    sync_t = official.lora_targets(mods["transformer"], "sync")
    all_t = official.lora_targets(mods["transformer"], "all")
    files = Files(ckpt, upsf, {}, {}, tmp / "reference.mkv", tmp / "edited.png")
    meta = {"reference_downscale_factor": args.ref_downscale}
    for name in args.dtypes.split(","):
        # The same values in every file (drawn, rounded to bf16); only the storage dtype differs, because ltx-core
        # multiplies B @ A in the file's dtype when it fuses a LoRA.
        for kind, targets, rank, seed, gain, md in (("sync", sync_t, args.sync_rank, 1, 0.5, meta),
                                                    ("distilled", all_t, args.distilled_rank, 2, 0.3, {})):
            path = official.write_lora(tmp / f"{kind}-{name}.safetensors", targets, rank, seed, gain=gain,
                                       metadata=md, dtype=torch.bfloat16, device=device)
            if name != "bfloat16":
                _recast(path, getattr(torch, name))
            getattr(files, kind)[name] = path
    n_sync, n_all = len(sync_t), len(all_t)
    del mods
    gc.collect()
    frames, edited = synthetic_clip(args.frames, args.size, args.seed)
    write_lossless(files.reference, frames, FRAME_RATE)
    from PIL import Image

    Image.fromarray(edited).save(files.image)
    decoded = read_rgb(files.reference)
    if not np.array_equal(decoded, frames):
        raise SystemExit("the lossless reference clip does not decode to its frames; cannot compare like for like")
    states, mask = gemma_hidden_states(args.text_len, 5, args.seed, device)
    mb = sum(p.stat().st_size for p in tmp.iterdir()) / 2**20
    log(f"weights: {ckpt.name} + upsampler + LoRAs ({mb:.1f} MiB, bf16, released key layout), built in "
        f"{time.perf_counter() - t0:.1f}s; Sync-LoRA rank {args.sync_rank} on {n_sync} modules, distilled LoRA rank "
        f"{args.distilled_rank} on {n_all} modules (every Linear)")
    return files, frames, edited, states, mask


def _recast(path: Path, dtype) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta, sd = f.metadata(), {k: f.get_tensor(k).to(dtype) for k in f.keys()}
    save_file(sd, str(path), metadata=meta)


def run_official(files: Files, states, mask, args, device, dtype, as_shipped: bool) -> official.Captured:
    lora_kind = str(dtype).removeprefix("torch.")
    pipe = official.make_pipeline(files.checkpoint, files.upsampler, files.sync[lora_kind],
                                  files.distilled[lora_kind], args.distilled_strength, device, dtype,
                                  registry=not as_shipped)
    ctx = official.prompt_context(pipe, tuple(s.to(dtype) for s in states), mask)
    kw = dict(seed=args.seed, height=args.size, width=args.size, num_frames=args.frames, frame_rate=FRAME_RATE,
              image=files.image, reference=files.reference, crf=args.crf)
    if as_shipped:
        return official.run_as_shipped(pipe, ctx, **kw)
    return official.run_stages(pipe, ctx, dtype=dtype, **kw)


def build_ours(files: Files, states, mask, args, device, dtype, mutation: str = ""):
    from synclora.ltx.convert import load_released
    from synclora.ltx.lora import read_lora
    from synclora.ltx.recipe import build_model

    lora_kind = str(dtype).removeprefix("torch.")
    comps = load_released(files.checkpoint, files.upsampler, dtype=dtype, device=device)
    embeds = torch.stack(states, dim=-1).flatten(2, 3)  # diffusers' prompt_embeds layout: (1, L, 3840 * 49)
    sync = read_lora(files.sync[lora_kind], dtype=dtype)
    distilled = read_lora(files.distilled[lora_kind], dtype=dtype)
    crf = args.crf if mutation != "no-crf" else 0
    model = build_model(comps, embeds.to(dtype), mask, sync, distilled, distilled_strength=args.distilled_strength,
                        memory="bf16", device=device, dtype=dtype, crf=crf)
    return model


def run_ours(model, frames, edited, args, mutation: str = "") -> official.Captured:
    from synclora.config import PropagationSettings
    from synclora.propagate.base import Segment
    from synclora.propagate.ltx import SyncLoRAPropagator

    cap = official.Captured()
    vae = model.pipe.vae
    mean = vae.latents_mean.view(1, -1, 1, 1, 1)
    std = vae.latents_std.view(1, -1, 1, 1, 1)
    normalize = lambda x: ((x.to(mean) - mean) * vae.config.scaling_factor / std)  # noqa: E731

    real_up, real_decode = model.upsample_pipe.__call__, vae.decode

    class RecordUpsample:
        def __call__(self, latents=None, **kw):
            cap.stage1 = normalize(latents).detach().clone()
            return real_up(latents=latents, **kw)

    def record_decode(latents, *a, **kw):
        cap.stage2 = normalize(latents).detach().clone()
        return real_decode(latents, *a, **kw)

    settings = PropagationSettings(backend="synclora", model="real", quality="full", seed=args.seed)
    prop = SyncLoRAPropagator(settings, model=model)
    upsample_pipe = model.upsample_pipe
    model.upsample_pipe = RecordUpsample()
    vae.decode = record_decode
    restore = _apply_mutation(model, mutation)
    try:
        cap.frames = prop.propagate(Segment(frames=frames, edited=edited, fps=FRAME_RATE, settings=settings))
    finally:
        model.upsample_pipe = upsample_pipe
        vae.decode = real_decode
        restore()
    return cap


# Deliberate recipe errors, each one of the silent differences the parity check exists to catch. Running them
# shows the tolerance has teeth: every one must FAIL by orders of magnitude.
MUTATIONS = {
    "no-crf": "edited frame not H.264 re-compressed (crf 0 instead of 33)",
    "sync-lora-in-stage-2": "Sync-LoRA left on in stage 2",
    "stage2-noise": "stage-2 noise scale 0.9 instead of 0.909375",
    "sigma-schedule": "scheduler's dynamic shifting left on (LTX-2.3 scheduler config)",
    "ref-positions": "reference tokens placed at twice their spatial coordinates",
}


def _apply_mutation(model, mutation: str):
    import synclora.ltx.recipe as ltx

    undo = []
    if mutation == "sync-lora-in-stage-2":
        real = model.pipe.disable_lora
        model.pipe.disable_lora = lambda: None
        undo.append(lambda: setattr(model.pipe, "disable_lora", real))
    elif mutation == "stage2-noise":
        real = ltx.STAGE_2_NOISE_SCALE
        ltx.STAGE_2_NOISE_SCALE = 0.9
        undo.append(lambda: setattr(ltx, "STAGE_2_NOISE_SCALE", real))
    elif mutation == "sigma-schedule":
        sched = model.pipe.scheduler
        real = sched.config
        model.pipe.scheduler = type(sched).from_config(sched.config, use_dynamic_shifting=True, shift_terminal=0.1,
                                                       base_shift=0.95, max_shift=2.05,
                                                       time_shift_type="exponential")
        undo.append(lambda: setattr(model.pipe, "scheduler", type(sched).from_config(real)))
    elif mutation == "ref-positions":
        # positions scaled by 2 while the reference stays at full size: exactly a wrong `reference_downscale_factor`
        # in the coordinate path only.
        enc = model.pipe._encode_reference_conditions

        def encode(*a, **kw):
            lat, coords, cross, counts = enc(*a, **kw)
            coords = coords.clone()
            coords[:, 1:3] *= 2
            return lat, coords, cross, counts

        model.pipe._encode_reference_conditions = encode
        undo.append(lambda: setattr(model.pipe, "_encode_reference_conditions", enc))
    return lambda: [u() for u in undo]


# --- comparison -------------------------------------------------------------------------------------------------------
def diff(a, b) -> tuple[float, float]:
    a = torch.as_tensor(np.asarray(a) if not torch.is_tensor(a) else a).double().cpu()
    b = torch.as_tensor(np.asarray(b) if not torch.is_tensor(b) else b).double().cpu()
    if a.shape != b.shape:
        raise SystemExit(f"FAIL shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    d = (a - b).abs()
    return float(d.max()), float(d.mean())


def compare(label: str, a: official.Captured, b: official.Captured) -> dict:
    out = {}
    parts = []
    for key in ("stage1", "stage2", "frames"):
        mx, mean = diff(getattr(a, key), getattr(b, key))
        out[key] = (mx, mean)
        parts.append(f"{key} max {mx:.3g} mean {mean:.3g}")
    log(f"  {label:44s} | " + " | ".join(parts))
    return out


def scale(c: official.Captured) -> str:
    return " ".join(f"{k} rms {float(torch.as_tensor(getattr(c, k)).double().pow(2).mean().sqrt()):.3g}"
                    for k in ("stage1", "stage2", "frames"))


def write_key_fixture(path: Path) -> int:
    import gzip

    fixture = {"ltx_core": "1.0.0", "tiny": official.key_fixture(*official.tiny_config()),
               "true": official.key_fixture(official.TRUE_CONFIG, official.TRUE_UPSAMPLER)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        json.dump(fixture, f, sort_keys=True)
    n = {k: len(v["checkpoint"]) for k, v in fixture.items() if isinstance(v, dict)}
    log(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB): {n} checkpoint keys")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--true-config", action="store_true", help="LTX-2.3 at full size (GPU; ~45 GB of weights)")
    ap.add_argument("--layers", type=int, default=0, help="transformer depth override (e.g. to fit a GPU budget)")
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--size", type=int, default=256, help="output height = width (stage 1 runs at half)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crf", type=int, default=33)
    ap.add_argument("--ref-downscale", type=int, default=1, help="the Sync-LoRA's reference_downscale_factor")
    ap.add_argument("--sync-rank", type=int, default=0, help="default 8 (tiny) / 256 (true)")
    ap.add_argument("--distilled-rank", type=int, default=0, help="default 8 (tiny) / 384 (true)")
    ap.add_argument("--distilled-strength", type=float, default=1.0)
    ap.add_argument("--text-len", type=int, default=0, help="padded prompt length (multiple of 128)")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="the first one gives the verdict")
    ap.add_argument("--mutations", default="all", help="comma list, 'all' or 'none' (recipe errors that must FAIL)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--wheels", default=None, help="install the side environment from this folder of wheels")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--write-key-fixture", metavar="PATH", default=None,
                    help="write ltx-core's released key names/shapes (tiny + true config) for the offline tests")
    args = ap.parse_args(argv)
    if args.write_key_fixture:
        official.ensure_side_env(args.wheels, log)
        return write_key_fixture(Path(args.write_key_fixture))
    true = args.true_config
    args.sync_rank = args.sync_rank or (256 if true else 8)
    args.distilled_rank = args.distilled_rank or (384 if true else 8)
    args.text_len = args.text_len or (1024 if true else 128)
    if (args.frames - 1) % 8 or args.size % 64 or (args.size // 2) % (32 * args.ref_downscale):
        ap.error("frames must be 8k+1 and size a multiple of 64 (and of 64 * ref-downscale)")
    start = time.perf_counter()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    site = official.ensure_side_env(args.wheels, log)
    import ltx_core  # noqa: F401

    log(f"parity: {'LTX-2.3 true config' if true else 'small LTX-2.3'}"
        f"{f' ({args.layers} layers)' if args.layers else ''}, {args.frames} frames, {args.size}x{args.size}, "
        f"seed {args.seed}, crf {args.crf}, reference downscale {args.ref_downscale}; device {device}; "
        f"torch {torch.__version__}; ltx-core/ltx-pipelines 1.0.0 from {site}")
    figures: dict = {"config": {k: v for k, v in vars(args).items() if k != "json"}}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        files, frames, edited, states, mask = prepare(args, tmp, device)
        dtypes = [getattr(torch, d) for d in args.dtypes.split(",") if d]
        results: dict = {}
        for dtype in dtypes:
            name = str(dtype).removeprefix("torch.")
            t0 = time.perf_counter()
            off = run_official(files, states, mask, args, device, dtype, as_shipped=False)
            t1 = time.perf_counter()
            model = build_ours(files, states, mask, args, device, dtype)
            ours = run_ours(model, frames, edited, args)
            t2 = time.perf_counter()
            log(f"[{name}] official stages {t1 - t0:.1f}s, ours {t2 - t1:.1f}s; official {scale(off)}")
            results[name] = {"official_vs_ours": compare(f"official vs ours ({name})", off, ours)}
            if dtype == torch.bfloat16:
                shipped = run_official(files, states, mask, args, device, dtype, as_shipped=True)
                results[name]["driver_vs_call"] = compare("official stages vs ICLoraPipeline.__call__", off,
                                                          shipped)
                results[name]["shipped_vs_ours"] = compare("ICLoraPipeline.__call__ vs ours (bf16)", shipped,
                                                           ours)
            if dtype == dtypes[0]:
                reference_official, reference_model = off, model
            else:
                results[name]["vs_" + str(dtypes[0]).removeprefix("torch.")] = compare(
                    f"official {name} vs official {str(dtypes[0]).removeprefix('torch.')}", off, reference_official)
                del model
            gc.collect()
        # Mutations: our side with one deliberate recipe error, against the official run in the verdict dtype.
        wanted = list(MUTATIONS) if args.mutations == "all" else [m for m in args.mutations.split(",")
                                                                   if m and m != "none"]
        verdict_name = str(dtypes[0]).removeprefix("torch.")
        mutation_figures = {}
        if wanted:
            log(f"deliberate recipe errors on our side ({verdict_name}), each must fail:")
        for m in wanted:
            model = reference_model if m != "no-crf" else build_ours(files, states, mask, args, device, dtypes[0],
                                                                     mutation=m)
            cap = run_ours(model, frames, edited, args, mutation=m)
            mutation_figures[m] = compare(f"{m}: {MUTATIONS[m]}"[:44], reference_official, cap)
    figures["results"], figures["mutations"] = results, mutation_figures
    verdict = results[verdict_name]["official_vs_ours"]
    failed = [k for k, tol in TOLERANCE.items() if verdict[k][0] > tol]
    if verdict["frames"][1] > FRAMES_OFF_BY_ONE:
        failed.append(f"frames: {verdict['frames'][1]:.2%} of values off by a level")
    weak = [m for m, f in mutation_figures.items()
            if all(f[k][0] <= 1000 * TOLERANCE[k] for k in ("stage1", "stage2")) and f["frames"][0] <= 1]
    if "bfloat16" in results:
        d = results["bfloat16"]["driver_vs_call"]
        if any(v[0] != 0 for v in d.values()):
            failed.append("stage driver differs from ICLoraPipeline.__call__")
    log(f"wall {time.perf_counter() - start:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    tol = ", ".join(f"{k} <= {v:g}" for k, v in TOLERANCE.items())
    if failed or weak:
        what = failed + [f"mutation {m} not detected" for m in weak]
        log(f"FAIL parity ({verdict_name}; tolerance {tol}): " + "; ".join(what))
        return 1
    log(f"PASS parity ({verdict_name}, max abs: stage1 {verdict['stage1'][0]:.2g}, stage2 {verdict['stage2'][0]:.2g}, "
        f"frames {verdict['frames'][0]:.0f} levels; tolerance {tol}; {len(mutation_figures)} deliberate recipe "
        f"errors all detected)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
