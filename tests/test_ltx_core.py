"""The LTX-2.3 core (`synclora.ltx`): the released LoRA format, the prompt cache, weight resolution, and the one
frame-resizing helper inference and training share. Offline, on the CPU, with the tiny model's shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synclora.errors import ModelUnavailableError


def test_alpha_is_folded_into_lora_b(tmp_path):
    from safetensors.torch import load_file, save_file

    from synclora.ltx.lora import read_lora
    from synclora.ltx.tiny import write_tiny_lora

    plain = read_lora(write_tiny_lora(tmp_path / "a.safetensors", rank=4, seed=5))
    same = read_lora(write_tiny_lora(tmp_path / "b.safetensors", rank=4, seed=5, with_alpha=True))  # alpha = rank
    assert set(same.state_dict) == set(plain.state_dict)
    for k in plain.state_dict:
        torch.testing.assert_close(same.state_dict[k], plain.state_dict[k])
    raw = load_file(tmp_path / "b.safetensors")
    raw = {k: (v * 2 if k.endswith(".alpha") else v) for k, v in raw.items()}  # alpha = 2 * rank
    save_file(raw, tmp_path / "c.safetensors", metadata={"reference_downscale_factor": "2"})
    doubled = read_lora(tmp_path / "c.safetensors")
    assert doubled.reference_downscale_factor == 2 and doubled.rank == 4
    for k, v in plain.state_dict.items():
        torch.testing.assert_close(doubled.state_dict[k], v * (2 if ".lora_B." in k else 1))

def test_released_key_format_round_trips_and_matches_diffusers():
    from diffusers import LTX2VideoTransformer3DModel
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_ltx2_lora_to_diffusers

    from synclora.ltx.lora import diffusers_to_released, released_to_diffusers
    from synclora.ltx.tiny import tiny_transformer_config

    with torch.device("meta"):
        transformer = LTX2VideoTransformer3DModel(**tiny_transformer_config())
    names = [n for n, m in transformer.named_modules() if isinstance(m, torch.nn.Linear)]
    peft_sd = {f"{n}.lora_{ab}.weight": torch.zeros(1) for n in names for ab in "AB"}
    released = diffusers_to_released(peft_sd)
    assert all(k.startswith("diffusion_model.") for k in released)
    assert released_to_diffusers(released).keys() == peft_sd.keys()
    theirs = _convert_non_diffusers_ltx2_lora_to_diffusers(released)
    assert {k.removeprefix("transformer.") for k in theirs} == set(peft_sd)
    # adapter names inside PEFT keys and a `transformer.` prefix are both accepted
    named = {f"transformer.{n}.lora_A.sync.weight": torch.zeros(1) for n in names}
    plain = {f"{n}.lora_A.weight": torch.zeros(1) for n in names}
    assert set(diffusers_to_released(named)) == set(diffusers_to_released(plain))

def test_prompt_cache_round_trips_to_the_same_connector_output(tmp_path):
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    from synclora.ltx.prompt import load_prompt_cache, save_prompt_cache
    from synclora.ltx.tiny import tiny_connectors_config, tiny_prompt_embeds

    embeds, mask = tiny_prompt_embeds(seed=7)
    path = save_prompt_cache(tmp_path / "p.safetensors", embeds, mask, text_encoder="tiny")
    assert path.stat().st_size < embeds.numel() * 4  # only the valid rows are stored
    back, back_mask, meta = load_prompt_cache(path)
    assert meta["prompt"] == "3d1t" and meta["text_encoder"] == "tiny"
    assert torch.equal(back_mask, mask)
    valid = mask[0].bool()
    assert torch.equal(back[0, valid], embeds[0, valid]) and torch.all(back[0, ~valid] == 0)
    torch.manual_seed(0)
    connectors = LTX2TextConnectors(**tiny_connectors_config()).eval()
    with torch.no_grad():
        ours = connectors(back, back_mask, padding_side="left")
        for a, b in zip(connectors(embeds, mask, padding_side="left"), ours):
            torch.testing.assert_close(a, b)

def test_missing_or_corrupt_files_raise_model_unavailable(tmp_path):
    from synclora.ltx.lora import read_lora
    from synclora.ltx.prompt import load_prompt_cache
    from synclora.ltx.tiny import write_tiny_lora

    with pytest.raises(ModelUnavailableError, match="not found"):
        read_lora(tmp_path / "nope.safetensors")
    path = write_tiny_lora(tmp_path / "t.safetensors")
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelUnavailableError, match="corrupt"):
        read_lora(tmp_path / "cut.safetensors")
    with pytest.raises(ModelUnavailableError, match="cache-prompt"):
        load_prompt_cache(tmp_path / "none.safetensors")

def test_weights_resolve_from_a_local_folder_or_say_how_to_get_them(tmp_path, monkeypatch):
    from synclora.ltx import weights

    monkeypatch.setenv("SYNCLORA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("SYNCLORA_WEIGHTS_DIR", raising=False)
    with pytest.raises(ModelUnavailableError, match="fetch-weights"):
        weights.resolve_weights()
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        weights.fetch_weights()

    root = tmp_path / "w"
    monkeypatch.setenv("SYNCLORA_WEIGHTS_DIR", str(root))
    with pytest.raises(ModelUnavailableError, match="is missing .* fetch-weights --to DIR"):
        weights.resolve_weights()
    _fill_like_the_hub(root / weights.LOCAL_BASE, root)
    paths = weights.resolve_weights()
    assert paths.sync_lora == root / weights.SYNC_LORA_FILE and not paths.missing()
    assert paths.base_dir == root / weights.LOCAL_BASE


def _fill_like_the_hub(base, root):
    """Every listed file, small but whole: safetensors with one tensor, indexes naming their shards, JSON configs."""
    import json

    from safetensors.torch import save_file

    from synclora.ltx import hub

    for h in hub.HUB_FILES:
        for name in h.files:
            path = (base if h.repo == hub.BASE_REPO else root) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if name.endswith(".index.json"):
                shards = [f.rsplit("/", 1)[1] for f in h.files if f.startswith(name.rsplit("/", 1)[0] + "/")
                          and "-of-" in f]
                path.write_text(json.dumps({"weight_map": {f"w{i}": s for i, s in enumerate(shards)}}))
            elif name.endswith(".json"):
                path.write_text("{}")
            else:
                save_file({"w": torch.zeros(2)}, str(path))


def test_training_and_inference_prepare_frames_with_the_same_resize():
    """`train.latents.frames_to_pixels` is `ltx.vae.resize_frames` (crop to the aspect, bilinear) in [-1, 1]."""
    import torch.nn.functional as F

    from synclora.ltx.vae import resize_frames
    from synclora.train.latents import ClipSize, frames_to_pixels

    frames = np.random.default_rng(0).integers(0, 256, (5, 48, 80, 3), dtype=np.uint8)
    # Same aspect: training's pixels are inference's, mapped to [-1, 1].
    same = resize_frames(frames, 24, 40)
    torch.testing.assert_close(frames_to_pixels(frames, ClipSize(40, 24, 5))[0], (same * 2 - 1).permute(1, 0, 2, 3))
    # Another aspect: inference stretches (the working size has the clip's aspect), training cuts the centre.
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    stretched = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(resize_frames(frames, 32, 32), stretched)
    cover = F.interpolate(x, size=(32, 53), mode="bilinear", align_corners=False)[..., 10:42]
    torch.testing.assert_close(resize_frames(frames, 32, 32, crop=True), cover)
    pixels = frames_to_pixels(frames, ClipSize(32, 32, 3))
    assert pixels.shape == (1, 3, 3, 32, 32) and pixels.min() >= -1 and pixels.max() <= 1


def test_vae_latents_round_trip_and_uint8_output():
    """encode → normalised latents → decode_normalized gives the VAE's own reconstruction; to_uint8 is ltx-core's
    (clamp, then truncate: training's sample frames and inference's frames share it)."""
    from synclora.ltx.tiny import tiny_components
    from synclora.ltx.vae import decode_normalized, encode_video, to_uint8

    vae = tiny_components(seed=0)["vae"]
    pixels = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    latents = encode_video(vae, pixels)
    with torch.no_grad():
        direct = vae.decode(vae.encode(pixels).latent_dist.mode(), None, return_dict=False)[0]
    torch.testing.assert_close(decode_normalized(vae, latents[None]), direct, rtol=1e-4, atol=1e-4)
    video = torch.tensor([-1.0, -0.5, 0.0, 1.0, 2.0]).view(1, 1, 5, 1, 1).expand(1, 3, 5, 1, 1)
    assert to_uint8(video)[:, 0, 0, 0].tolist() == [0, 63, 127, 255, 255]
