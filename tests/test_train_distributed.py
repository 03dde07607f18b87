"""Two CPU processes really train one LoRA together (torchrun, gloo): gradients synchronised, one LoRA file written
once, and the same result as one process with the doubled batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synclora.video import io

pytestmark = pytest.mark.slow


def _run(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    support = str(Path(__file__).resolve().parent)  # the probe is `support.ddp_probe`, a test-only module
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(q for q in (support, os.environ.get("PYTHONPATH")) if q)}
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_processes_train_together_like_one_process_with_the_doubled_batch(tmp_path):
    from safetensors.torch import load_file

    from synclora.testing.media import indexed_frames

    pairs = tmp_path / "pairs"
    for i in range(4):
        src = indexed_frames(9, size=(32, 32), seed=i)
        tgt = 255 - src
        io.write_video(pairs / f"pair{i}" / "source.mp4", src, 25)
        io.write_video(pairs / f"pair{i}" / "target.mp4", tgt, 25)
    probe = ["-m", "support.ddp_probe", "--data", str(pairs), "--steps", "3"]
    _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *probe,
          "--out", str(tmp_path / "two")])
    _run([*probe, "--out", str(tmp_path / "one"), "--grad-accum", "2"])

    two, one = tmp_path / "two", tmp_path / "one"
    assert json.loads((two / "losses.json").read_text())["processes"] == 2  # really one group, not two lone runs
    rank0 = load_file(str(two / "weights-rank-0.safetensors"))
    rank1 = load_file(str(two / "weights-rank-1.safetensors"))
    alone = load_file(str(one / "weights-rank-0.safetensors"))
    assert rank0.keys() == rank1.keys() == alone.keys() and len(rank0) > 0
    # DDP averages the gradients before every step, so both replicas hold the very same weights.
    assert all(np.array_equal(rank0[k].numpy(), rank1[k].numpy()) for k in rank0)
    # One final LoRA file, written once, by the main process.
    assert (two / "lora-writes.txt").read_text().split() == ["0"]
    assert (two / "run" / "lora.safetensors").is_file()
    # Same draws (keyed by the global draw index) and the same maths as one process accumulating two micro-batches;
    # only the float32 summation order of the two gradients may differ (allreduce vs accumulation), which moves a
    # weight by rounding error, far below one Adam step (~lr = 1e-3 per weight). Tolerance: a thousandth of a step.
    # (Here the two runs agree bit for bit: halving is exact in binary floating point.)
    worst = max(float(np.abs(rank0[k].numpy() - alone[k].numpy()).max()) for k in rank0)
    assert worst <= 1e-6, worst
    moved = max(float(np.abs(alone[k].numpy()).max()) for k in alone if "lora_B" in k)
    assert moved > 1e-4  # lora_B starts at zero: the runs did train
    losses_two = json.loads((two / "losses.json").read_text())["losses"]
    losses_one = json.loads((one / "losses.json").read_text())["losses"]
    assert np.allclose(losses_two, losses_one, rtol=1e-6, atol=1e-7), (losses_two, losses_one)
