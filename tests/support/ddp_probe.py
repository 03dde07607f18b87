"""Train the tiny IC-LoRA and record what each process ends with (tests/test_train_distributed.py runs it under
torchrun and alone).

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m support.ddp_probe --data P --out O
    python -m support.ddp_probe --data P --out O --grad-accum 2

Writes `O/weights-rank-K.safetensors` (process K's trainable LoRA weights after the last step), `O/lora-writes.txt`
(one line per export of the final LoRA file, naming the rank that wrote it) and, from the main process,
`O/losses.json`; the run folder itself is `O/run/`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import torch
    from safetensors.torch import save_file

    import synclora.train.trainer as trainer_module
    from synclora.train.config import TrainConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)

    export = trainer_module.save_lora  # the final LoRA export: count who calls it

    def recording_save_lora(path, *a, **kw):
        with open(args.out / "lora-writes.txt", "a", encoding="utf-8") as f:
            f.write(f"{os.environ.get('RANK', '0')}\n")
        return export(path, *a, **kw)

    trainer_module.save_lora = recording_save_lora
    config = TrainConfig(
        data=args.data, output=args.out / "run", model="tiny", rank=8, alpha=8, width=16, height=16, num_frames=9,
        learning_rate=args.lr, lr_scheduler="constant", steps=args.steps, grad_accum=args.grad_accum,
        checkpoint_every=1000, sample_every=0, save_dtype="fp32", seed=0,
    )
    trainer = trainer_module.ICLoRATrainer(config, log=lambda s: None).prepare()
    result = trainer.train()
    acc = trainer.accelerator
    weights = {n: t.detach().float().cpu().contiguous()
               for n, t in trainer.transformer_raw.named_parameters() if "lora_" in n}
    save_file(weights, str(args.out / f"weights-rank-{acc.process_index}.safetensors"))
    if acc.is_main_process:
        (args.out / "losses.json").write_text(json.dumps({"losses": result.losses, "processes": acc.num_processes}))
    acc.wait_for_everyone()
    acc.end_training()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
