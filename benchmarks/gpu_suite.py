"""The GPU checks in one script: parity at true LTX-2.3 configs, our speed against ICLoraPipeline at
81x512x512 (two stages, bf16, prompt embedding cached on both sides), and every speed lever against today's path.

    python benchmarks/gpu_suite.py --tiny                    # CPU smoke run of every phase, tiny configs (~10 min)
    python benchmarks/gpu_suite.py --phases levers           # GPU: one phase per command (each within 10 min)
    python benchmarks/gpu_suite.py --phases speed
    python benchmarks/gpu_suite.py --phases parity           # true widths; --parity-layers 48 for the whole depth

Results are appended to benchmarks/results/gpu_suite.txt (GPU) or gpu_suite_tiny_cpu.txt (--tiny), each line also
printed. Every figure comes with its baseline from the same run.

On a GPU machine without internet access (torch, transformers, peft, accelerate, einops, torchaudio present; no
diffusers, PyAV or ltx-*): fill the git-ignored `wheels/` (about 43 MB) with `bash benchmarks/device_wheels.sh` on a
connected machine, copy it over, start each command with `eval "$(bash benchmarks/device_wheels.sh --install)" &&`
(installs into /tmp) and pass `--wheels wheels`. Phases:
- parity: `parity_ltx.py --true-config` (true widths, `--parity-layers` blocks) with two recipe errors that must fail;
- speed: the true 22B model written once as released files; ICLoraPipeline timed as shipped (it builds its
  transformers from the file and fuses the LoRAs on every call) and with its models resident (its own stages,
  models built once), then ours (`load_released` + `build_model` + the backend), same clip, seed and CRF;
- levers (no ltx-core needed): today's bf16 path, then attention backends, AoT blocks, fp8 today (storage) and fp8
  with real matmuls, each on the same clip, with peak memory.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

if __package__:  # python -m benchmarks.gpu_suite
    from benchmarks import bench_ltx, parity_ltx
    from benchmarks import ltx_official as official
else:  # python benchmarks/gpu_suite.py: this folder is sys.path[0] (synclora comes from `pip install -e .`)
    import bench_ltx
    import ltx_official as official
    import parity_ltx

RESULTS = Path(__file__).resolve().parent / "results"


class Report:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, msg: str = "") -> None:
        print(msg, flush=True)
        with self.path.open("a") as f:
            f.write(msg + "\n")


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def _free():
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _fmt(stats: dict) -> str:
    keys = ("stage1_s", "upsample_s", "stage2_s", "decode_s", "total_s")
    return " ".join(f"{k[:-2]}={stats[k]:.2f}" for k in keys if k in stats)


# --- parity -----------------------------------------------------------------------------------------------------------
def phase_parity(args, log) -> None:
    argv = ["--mutations", args.parity_mutations]
    if args.tiny:
        argv += ["--frames", "17", "--size", "128"]
    else:
        argv += ["--true-config", "--layers", str(args.parity_layers), "--frames", str(args.frames), "--size",
                 str(args.size)]
    if args.wheels:
        argv += ["--wheels", args.wheels]
    out = io.StringIO()
    log(f"[parity] parity_ltx.py {' '.join(argv)}")
    with contextlib.redirect_stdout(out):
        rc = parity_ltx.main(argv)
    for line in out.getvalue().splitlines():
        if line.strip() and "it/s]" not in line:
            log("  " + line.strip())
    log(f"[parity] exit {rc}")


# --- ours vs ICLoraPipeline -------------------------------------------------------------------------------------------
def _timed(fn, repeats: int) -> tuple[dict, object]:
    best, result = None, None
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        stats, result = fn()
        _sync()
        stats = dict(stats, total_s=time.perf_counter() - t0)
        if best is None or stats["total_s"] < best["total_s"]:
            best = stats
    return best, result


def phase_speed(args, log) -> None:
    official.ensure_side_env(args.wheels, log)
    device = torch.device(args.device)
    dtype = torch.bfloat16
    pargs = argparse.Namespace(true_config=not args.tiny, layers=0, frames=args.frames, size=args.size, seed=0,
                               crf=args.crf, ref_downscale=1, sync_rank=8 if args.tiny else 256,
                               distilled_rank=8 if args.tiny else 384, distilled_strength=1.0,
                               text_len=128 if args.tiny else 1024, dtypes="bfloat16")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmpdir:
        tmp = Path(tmpdir)
        t0 = time.perf_counter()
        files, frames, edited, states, mask = parity_ltx.prepare(pargs, tmp, device)
        log(f"[speed] released files written in {time.perf_counter() - t0:.0f}s; {args.frames} frames "
            f"{args.size}x{args.size}, bf16, crf {args.crf}, prompt embedding cached on both sides")
        kw = dict(seed=0, height=args.size, width=args.size, num_frames=args.frames, frame_rate=25.0,
                  image=files.image, reference=files.reference, crf=args.crf)

        # ICLoraPipeline as shipped: its transformers are built (LoRAs fused) inside every call.
        pipe = official.make_pipeline(files.checkpoint, files.upsampler, files.sync["bfloat16"],
                                      files.distilled["bfloat16"], 1.0, device, dtype)
        ctx = official.prompt_context(pipe, tuple(s.to(dtype) for s in states), mask)
        _free()
        shipped, _ = _timed(lambda: ({}, official.run_as_shipped(pipe, ctx, **kw)), 1)
        log(f"[speed] ICLoraPipeline.__call__ as shipped (builds models per call): total {shipped['total_s']:.2f}s "
            f"peak {_peak():.1f} GiB")
        t0 = time.perf_counter()
        models = official.resident_models(pipe)
        log(f"[speed] ICLoraPipeline models built once in {time.perf_counter() - t0:.0f}s (both transformers)")
        _free()

        def official_run():
            marks = {}
            cap = official.run_stages(pipe, ctx, dtype=dtype, models=models, marks=marks, **kw)
            return marks, cap

        official_run()  # warm-up
        resident, off_cap = _timed(official_run, args.repeats)
        log(f"[speed] ICLoraPipeline stages, models resident: {_fmt(resident)} peak {_peak():.1f} GiB")
        models = pipe = ctx = None  # (not `del`: the closures above name them)
        _free()

        from synclora.config import PropagationSettings
        from synclora.propagate.base import Segment
        from synclora.propagate.ltx import SyncLoRAPropagator

        t0 = time.perf_counter()
        model = parity_ltx.build_ours(files, states, mask, pargs, device, dtype)
        log(f"[speed] ours: converted and built in {time.perf_counter() - t0:.0f}s")
        settings = PropagationSettings(backend="synclora", model="real", quality="full", seed=0)
        prop = SyncLoRAPropagator(settings, model=model)
        segment = Segment(frames=frames, edited=edited, fps=25.0, settings=settings)
        prop.propagate(segment)  # warm-up
        _free()

        def ours_run():
            result = prop.propagate(segment)
            return dict(prop.last_stats), result

        ours, out = _timed(ours_run, args.repeats)
        ours = {k: v for k, v in ours.items() if k.endswith("_s")}
        log(f"[speed] ours (bf16, resident): {_fmt(ours)} peak {_peak():.1f} GiB")
        diff = np.abs(out.astype(int) - off_cap.frames.astype(int))
        log(f"[speed] same video? frames max {diff.max()} mean {diff.mean():.3f} levels (bf16 vs bf16)")
        log(f"[speed] ratio ICLoraPipeline/ours: resident {resident['total_s'] / ours['total_s']:.2f}x, "
            f"as shipped {shipped['total_s'] / ours['total_s']:.2f}x (goal: >= 1.5x, ours <= 2.5 s at 81x512x512)")
        prop = model = None  # (not `del`: `ours_run` names them)
        _free()


# --- levers -----------------------------------------------------------------------------------------------------------
def phase_levers(args, log) -> None:
    from synclora.config import PropagationSettings
    from synclora.ltx import speed
    from synclora.propagate.base import Segment
    from synclora.propagate.ltx import SyncLoRAPropagator

    settings = PropagationSettings(backend="synclora", model="tiny" if args.tiny else "real", quality="full", seed=0)
    # (--tiny: the tiny LTX-2.3 VAE compresses only 4x in space and 2x in time, so it gets its own small clip)
    n, size = (9, 64) if args.tiny else (args.frames, args.size)
    frames = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    segment = Segment(frames=frames, edited=255 - frames[0], fps=25.0, settings=settings)
    bench_args = argparse.Namespace(tiny=args.tiny, sync_rank=4 if args.tiny else 256,
                                    distilled_rank=8 if args.tiny else 384)
    summary = []

    def measure(label: str, model, note: str = "") -> tuple[dict, np.ndarray]:
        prop = SyncLoRAPropagator(settings, model=model)
        prop.propagate(segment)  # warm-up (kernel selection, AoT package load)
        _free()
        best, out = None, None
        for _ in range(args.repeats):
            frames_out = prop.propagate(segment)
            if best is None or prop.last_stats["total_s"] < best["total_s"]:
                best, out = dict(prop.last_stats), frames_out
        peak = max((v for k, v in best.items() if k.endswith("_peak_gib")), default=_peak())
        log(f"[levers] {label:34s} {_fmt(best)} peak {peak:.2f} GiB {note}")
        summary.append((label, best["total_s"], peak))
        return best, out

    def build(memory: str, options=None):
        _free()
        t0 = time.perf_counter()
        model = bench_ltx.make_model(bench_args, memory, None, speed=options)
        return model, time.perf_counter() - t0

    model, _ = build("bf16")
    base, base_out = measure("bf16 today (SDPA + text mask)", model)

    def vs_base(out):
        d = np.abs(out.astype(int) - base_out.astype(int))
        return f"| vs today: max {d.max()} mean {d.mean():.3f} levels"

    backends = [b for b in args.attention.split(",") if b]
    for backend in backends:
        mask = model.pipe.connectors.mask
        try:
            speed.set_attention(model, backend)
            _, out = measure(f"bf16 attention={backend}", model)
            log(f"           {vs_base(out)}")
        except Exception as exc:  # noqa: BLE001 - a backend may not exist on this machine / for these shapes
            log(f"[levers] attention={backend}: unavailable ({type(exc).__name__}: {str(exc)[:160]})")
        finally:
            model.pipe.transformer.set_attention_backend("native")
            model.pipe.connectors.mask = mask

    if args.aot:
        t0 = time.perf_counter()
        try:
            inductor = {} if args.tiny else dict(speed.CUDA_INDUCTOR, max_autotune=args.aot == "full",
                                                 coordinate_descent_tuning=args.aot == "full")
            prop = SyncLoRAPropagator(settings, model=model)
            aot = speed.compile_aot(model, lambda: prop.propagate(segment), None, inductor=inductor, log=log)
            log(f"[levers] AoT compile (capture + both stages, {args.aot}) {time.perf_counter() - t0:.0f}s")
            _, out = measure(f"bf16 AoT blocks ({args.aot})", model)
            log(f"           {vs_base(out)}")
            aot.remove()
        except Exception as exc:  # noqa: BLE001 - reported, and the suite moves on to the next lever
            log(f"[levers] AoT: failed ({type(exc).__name__}: {str(exc)[:300]})")
    del model
    _free()

    for label, options in (("fp8 today (fp8 storage, bf16 matmul)", None),
                           ("fp8 real matmuls (scaled_mm)", speed.SpeedOptions(fp8_matmul=True))):
        try:
            model, secs = build("fp8", options)
            _, out = measure(label, model, note=" ".join(getattr(model, "speed_notes", [])))
            log(f"           {vs_base(out)}")
        except Exception as exc:  # noqa: BLE001 - reported, and the suite moves on to the next lever
            log(f"[levers] {label}: failed ({type(exc).__name__}: {str(exc)[:300]})")
        finally:
            model = None
            _free()

    log("[levers] summary (best total s, peak GiB, speed-up vs today's bf16):")
    for label, total, peak in summary:
        log(f"           {label:34s} {total:7.2f}s {peak:6.2f} GiB  x{base['total_s'] / total:.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny configs on the CPU: a smoke run of every phase")
    ap.add_argument("--phases", default="parity,speed,levers")
    ap.add_argument("--frames", type=int, default=0, help="default 81 (GPU) / 17 (tiny)")
    ap.add_argument("--size", type=int, default=0, help="default 512 (GPU) / 128 (tiny)")
    ap.add_argument("--repeats", type=int, default=0, help="default 3 (GPU) / 1 (tiny)")
    ap.add_argument("--crf", type=int, default=33)
    ap.add_argument("--parity-layers", type=int, default=8, help="transformer depth for the true-width parity run")
    ap.add_argument("--parity-mutations", default="no-crf,ref-positions")
    ap.add_argument("--attention", default="_flash_3,_flash_3_hub,flash,_native_cudnn,_native_flash,_native_efficient")
    ap.add_argument("--aot", default="fast", choices=["", "fast", "full"], help="AoT compile mode ('' skips)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--wheels", default=None, help="folder of wheels for the ltx-core side environment")
    ap.add_argument("--tmp", default=None, help="where the released files are written (needs ~50 GB at true size)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.tiny:
        args.device = "cpu"
        args.attention = args.attention if "--attention" in (argv or sys.argv) else "_native_math"
    args.frames = args.frames or (17 if args.tiny else 81)
    args.size = args.size or (128 if args.tiny else 512)
    args.repeats = args.repeats or (1 if args.tiny else 3)
    out = Path(args.out) if args.out else RESULTS / ("gpu_suite_tiny_cpu.txt" if args.tiny else "gpu_suite.txt")
    log = Report(out)
    dev = "CPU (tiny configs: code paths only, no speed claim)" if args.tiny else torch.cuda.get_device_name()
    log(f"\n## gpu_suite {time.strftime('%Y-%m-%d %H:%M')} on {dev}; torch {torch.__version__}; phases {args.phases}; "
        f"{args.frames}x{args.size}x{args.size}")
    start = time.perf_counter()
    for phase in args.phases.split(","):
        t0 = time.perf_counter()
        {"parity": phase_parity, "speed": phase_speed, "levers": phase_levers}[phase](args, log)
        log(f"[{phase}] phase wall {time.perf_counter() - t0:.0f}s")
    log(f"wall {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
