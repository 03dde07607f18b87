"""How long one instruction edit takes on a GPU, with FLUX.2 [klein] 4B's exact architecture (random weights).

    python -m benchmarks.bench_instruct [--sizes 512 768 1024] [--runs 3]

Speed does not depend on the weights' values, so this measures the real model's latency and memory where its
weights cannot be downloaded: the transformer (klein-4B config: 5 double + 20 single blocks, 24×128 heads, text
dim 7680), the Flux2 VAE, and the Qwen3-4B text encoder (36 layers, hidden 2560) run as `Flux2KleinPipeline` does
for an edit: encode the prompt (512 tokens, hidden states of layers 9/18/27), encode the reference image, 4 steps,
decode. Prints one line per size and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import time


def _models(device: str, dtype):
    import torch
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    with torch.device(device):
        transformer = Flux2Transformer2DModel(
            in_channels=128, num_layers=5, num_single_layers=20, attention_head_dim=128, num_attention_heads=24,
            joint_attention_dim=7680, mlp_ratio=3.0, axes_dims_rope=(32, 32, 32, 32), rope_theta=2000,
            guidance_embeds=False,
        ).to(dtype)
        vae = AutoencoderKLFlux2().to(dtype)
        text_encoder = Qwen3ForCausalLM(Qwen3Config(
            hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
            num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True,
            max_position_embeddings=40960, rope_theta=1_000_000,
        )).to(dtype)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, shift=3.0)
    pipe = Flux2KleinPipeline(scheduler=scheduler, vae=vae, text_encoder=None, tokenizer=None,
                              transformer=transformer, is_distilled=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe, text_encoder


def main(argv: list[str] | None = None) -> None:
    import numpy as np
    import torch
    from PIL import Image

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 768, 1024])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--steps", type=int, default=4)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench_instruct needs a CUDA GPU")
    dev, dtype = "cuda", torch.bfloat16
    t0 = time.perf_counter()
    pipe, te = _models(dev, dtype)
    torch.cuda.synchronize()
    build_s = time.perf_counter() - t0
    params = {name: sum(p.numel() for p in m.parameters()) / 1e9
              for name, m in (("transformer", pipe.transformer), ("vae", pipe.vae), ("text_encoder", te))}
    weights_gib = torch.cuda.memory_allocated() / 2**30
    rng = np.random.default_rng(0)
    out = {"gpu": torch.cuda.get_device_name(), "params_b": params, "weights_gib": round(weights_gib, 2),
           "build_s": round(build_s, 1), "steps": args.steps, "sizes": {}}

    def encode() -> torch.Tensor:
        ids = torch.randint(0, 151936, (1, 512), device=dev)
        hs = te(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True).hidden_states
        return torch.cat([hs[9], hs[18], hs[27]], dim=-1)

    for size in args.sizes:
        image = Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        times, enc_times = [], []
        torch.cuda.reset_peak_memory_stats()
        for i in range(args.runs + 1):  # the first run warms up kernels and is not counted
            torch.cuda.synchronize()
            t = time.perf_counter()
            with torch.inference_mode():
                emb = encode()
                torch.cuda.synchronize()
                te_s = time.perf_counter() - t
                pipe(image=image, prompt_embeds=emb, height=size, width=size, num_inference_steps=args.steps,
                     guidance_scale=1.0, generator=torch.Generator(dev).manual_seed(i), output_type="np")
            torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t)
                enc_times.append(te_s)
        row = {"median_s": round(float(np.median(times)), 3), "min_s": round(min(times), 3),
               "text_encoder_s": round(float(np.median(enc_times)), 3),
               "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
        out["sizes"][f"{size}x{size}"] = row
        print(f"{size}×{size}: {row['median_s']:.3f} s per edit (min {row['min_s']:.3f}, text encoder "
              f"{row['text_encoder_s']:.3f} s), peak {row['peak_gib']:.1f} GiB", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
