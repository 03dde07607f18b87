"""IC-LoRA trainer on the tiny LTX-2.3 model: learning, checkpoints/resume, the released format, the backend loads
it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synclora.video import io

W = H = 16  # training size: tiny VAE ×2 → 8×8 latents, 5 latent frames, 320 target + 320 reference tokens
FRAMES = 9


def _clip(seed: int, n: int = FRAMES, size: int = 32) -> np.ndarray:
    """A blob moving on a gradient: smooth, so the tiny VAE's latents carry the motion."""
    yy, xx = np.mgrid[0:size, 0:size]
    frames = []
    for t in range(n):
        cx, cy = size / 2 + 8 * np.sin(t / 3 + seed), size / 2 + 6 * np.cos(t / 4 + seed)
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        img = np.stack([np.clip(255 - d * 8, 0, 255), 80 + 40 * np.sin(xx / 5 + t / 2), 120 * np.ones_like(d)], -1)
        frames.append(img.astype(np.uint8))
    return np.stack(frames)


def _edit(frames: np.ndarray) -> np.ndarray:
    """The 'edit': a colour change that follows the motion exactly (what a perfect pair looks like)."""
    out = frames.copy()
    out[..., 2] = 255 - out[..., 2]
    out[..., 0] //= 2
    return out


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny tensors: thread hand-offs cost more than the maths, and badly so on a shared 2-core machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    for i in range(3):
        d = root / f"pair{i}"
        d.mkdir()
        src = _clip(i)
        io.write_video(d / "source.mp4", src, 25)
        io.write_video(d / "target.mp4", _edit(src), 25)
    return root


def _config(pairs, out, **kw):
    from synclora.train.config import TrainConfig

    base = dict(data=pairs, output=out, model="tiny", rank=8, alpha=8, width=W, height=H, num_frames=FRAMES,
                learning_rate=1e-2, lr_scheduler="constant", sample_steps=2, checkpoint_every=1000, seed=0)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained(pairs, tmp_path_factory):
    """30 steps on 3 fixed pairs; returns (trainer, result, eval loss before, eval loss after)."""
    from synclora.train.trainer import ICLoRATrainer

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    trainer = ICLoRATrainer(_config(pairs, out, steps=30, checkpoint_every=30), log=lambda s: None).prepare()
    before = trainer.eval_loss()
    result = trainer.train()
    return trainer, result, before, trainer.eval_loss()


def test_loss_goes_down(trained):
    trainer, result, before, after = trained
    losses = np.array(result.losses)
    assert result.step == 30 and len(losses) == 30 and result.start_step == 0
    assert after < 0.6 * before, (before, after)  # fixed σ and noise: a clean measure of learning
    assert losses[-10:].mean() < 0.75 * losses[:10].mean(), losses


def test_run_folder_has_log_checkpoint_sample_and_released_lora(trained):
    from safetensors import safe_open

    trainer, result, _, _ = trained
    out = trainer.config.output
    log = [json.loads(x) for x in (out / "loss.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log if "loss" in r]
    assert steps == list(range(1, 31))
    evals = [r for r in log if "eval_loss" in r]
    assert len(evals) == 1 and evals[0]["step"] == 30 and "sample" in evals[0]
    sample = io.probe(evals[0]["sample"])
    assert sample.n_frames == FRAMES and (sample.width, sample.height) == (W, H)
    ckpt = out / "checkpoints" / "step-00000030"
    assert {p.name for p in ckpt.iterdir()} == {"lora.safetensors", "optimizer.safetensors", "state.json"}
    with safe_open(str(result.lora), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
        dtypes = {f.get_tensor(k).dtype for k in keys}
    assert keys and all(k.startswith("diffusion_model.transformer_blocks.") for k in keys)
    assert all(k.endswith((".lora_A.weight", ".lora_B.weight")) for k in keys)
    assert meta["reference_downscale_factor"] == "1" and meta["rank"] == "8"
    assert dtypes == {torch.bfloat16}  # exported in bf16 (checkpoints keep fp32)
    # 2 blocks × 10 target modules × (A, B): attn1/attn2 q,k,v,out + ff in/out of the video stream, no audio
    assert len(keys) == 2 * 10 * 2 and not any("audio" in k for k in keys)


def _segment(settings):
    from synclora.propagate.base import Segment

    src = np.stack([np.kron(f, np.ones((2, 2, 1), np.uint8)) for f in _clip(5, FRAMES, 32)])  # 64×64
    return Segment(frames=src, edited=_edit(src)[0], fps=25.0, settings=settings)


def test_saved_lora_loads_into_backend_and_changes_output(trained, tmp_path):
    from synclora.config import PropagationSettings
    from synclora.ltx.lora import read_lora
    from synclora.ltx.recipe import build_model
    from synclora.ltx.tiny import tiny_components, tiny_prompt_embeds
    from synclora.propagate.ltx import SyncLoRAPropagator

    _, result, _, _ = trained
    lora = read_lora(result.lora, dtype=torch.float32)
    zero = read_lora(result.lora, dtype=torch.float32)  # same keys, lora_B = 0: the base model's output
    zero.state_dict = {k: (v * 0 if ".lora_B." in k else v) for k, v in zero.state_dict.items()}
    settings = PropagationSettings(backend="synclora", model="tiny", quality="preview", seed=0)
    embeds, mask = tiny_prompt_embeds()
    outs = []
    for sync in (lora, zero):
        # build_model raises if any LoRA tensor matches no module (the "no unmatched keys" contract)
        model = build_model(tiny_components(seed=0), embeds, mask, sync, None, device="cpu", dtype=torch.float32,
                            crf=0)
        outs.append(SyncLoRAPropagator(settings, model=model).propagate(_segment(settings)).astype(np.float32))
    assert outs[0].shape == (FRAMES, 64, 64, 3)
    assert np.abs(outs[0] - outs[1]).mean() > 1.0


def test_resume_continues_from_saved_step_and_matches_an_uninterrupted_run(pairs, tmp_path):
    from safetensors.torch import load_file

    from synclora.cli import main as cli_main
    from synclora.train.trainer import ICLoRATrainer

    full = ICLoRATrainer(_config(pairs, tmp_path / "full", steps=4, checkpoint_every=2, sample_every=0),
                         log=lambda s: None).train()
    part = ICLoRATrainer(_config(pairs, tmp_path / "part", steps=2, checkpoint_every=2, sample_every=0),
                         log=lambda s: None).train()
    assert (full.step, part.step) == (4, 2)
    # The second half through the CLI, as a user would after an interruption.
    rc = cli_main(["train", "--data", str(pairs), "--out", str(tmp_path / "part"), "--model", "tiny", "--rank", "8",
                   "--alpha", "8", "--width", str(W), "--height", str(H), "--num-frames", str(FRAMES), "--lr", "1e-2",
                   "--lr-scheduler", "constant", "--steps", "4", "--checkpoint-every", "2", "--sample-every", "0",
                   "--quiet"])
    assert rc == 0
    log = [json.loads(x) for x in (tmp_path / "part" / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]
    a = load_file(str(tmp_path / "full" / "checkpoints" / "step-00000004" / "lora.safetensors"))
    b = load_file(str(tmp_path / "part" / "checkpoints" / "step-00000004" / "lora.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
    full_losses = [r["loss"] for r in map(json.loads, (tmp_path / "full" / "loss.jsonl").read_text().splitlines())
                   if "loss" in r]
    assert np.allclose(full_losses, [r["loss"] for r in log if "loss" in r], rtol=1e-4)


def test_resume_refuses_another_rank_and_no_resume_sets_old_checkpoints_aside(pairs, tmp_path):
    from synclora.errors import InputError
    from synclora.train.trainer import ICLoRATrainer

    ICLoRATrainer(_config(pairs, tmp_path, steps=1, checkpoint_every=1, sample_every=0), log=lambda s: None).train()
    with pytest.raises(InputError, match="rank"):
        ICLoRATrainer(_config(pairs, tmp_path, steps=2, rank=4, alpha=4, sample_every=0), log=lambda s: None).train()
    # Starting over sets the old checkpoints aside instead of mixing them with the new run's.
    result = ICLoRATrainer(_config(pairs, tmp_path, steps=1, rank=4, alpha=4, sample_every=0, resume=False),
                           log=lambda s: None).train()
    assert result.start_step == 0 and len(list(tmp_path.glob("checkpoints.old-*/step-00000001"))) == 1
    assert [json.loads(x)["step"] for x in (tmp_path / "loss.jsonl").read_text().splitlines()] == [1, 1]


def test_manifest_limits_training_to_kept_pairs(pairs, tmp_path):
    from synclora.data.manifest import select_pairs
    from synclora.errors import InputError

    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in [
        {"name": "pair0", "keep": True}, {"name": "pair1", "keep": False}]) + "\n")
    kept, skipped = select_pairs(pairs, manifest)
    assert [p.name for p in kept] == ["pair0"]
    assert dict(skipped) == {"pair1": "rejected by curation", "pair2": "not in the manifest"}
    manifest.write_text(json.dumps({"name": "pair1", "keep": False}) + "\n")
    with pytest.raises(InputError, match="no pairs"):
        select_pairs(pairs, manifest)


def test_sigma_sampler_covers_the_unit_interval():
    from synclora.train.sigmas import rng, sample_sigma

    g = rng(0)
    s = np.array([sample_sigma(g, 2816) for _ in range(2000)])
    assert s.min() > 0 and s.max() <= 1
    assert 0.5 < np.median(s) < 0.95  # shifted towards noise for a 512²×81 token count
    assert (s < 0.2).mean() > 0.01  # the uniform share keeps low noise trained


def test_bad_settings_are_input_errors(pairs, tmp_path):
    from synclora.errors import InputError
    from synclora.train.trainer import ICLoRATrainer

    with pytest.raises(InputError, match="8k\\+1|2k\\+1"):
        ICLoRATrainer(_config(pairs, tmp_path, num_frames=8), log=lambda s: None).prepare()
    with pytest.raises(InputError, match="multiples"):
        ICLoRATrainer(_config(pairs, tmp_path, width=15), log=lambda s: None).prepare()
    with pytest.raises(InputError, match="not found"):
        ICLoRATrainer(_config(tmp_path / "nope", tmp_path), log=lambda s: None)
