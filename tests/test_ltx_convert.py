"""The released-checkpoint converter, checked against ltx-core's real key layout without ltx-core installed.

`tests/data/ltx23_released_keys.json.gz` holds the names and shapes of every tensor a released LTX-2.3 checkpoint
carries, for the true 22B config and for the parity harness's small config, as ltx-core 1.0.0's own configurators
build them (regenerate: `python benchmarks/parity_ltx.py --write-key-fixture tests/data/ltx23_released_keys.json.gz`).
The tests build the diffusers modules our converter derives from the same config metadata and demand a one-to-one,
shape-exact match. One test drives real ltx-core modules when the parity side environment is installed.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from synclora.ltx import convert
from synclora.ltx.convert import ConversionError

FIXTURE = Path(__file__).parent / "data" / "ltx23_released_keys.json.gz"
COMPONENTS = ("transformer", "connectors", "vae", "audio_vae")


@pytest.fixture(scope="module")
def layouts() -> dict:
    with gzip.open(FIXTURE, "rt") as f:
        return json.load(f)


def _meta(shapes: dict) -> dict:
    return {k: torch.empty(shape, device="meta") for k, shape in shapes.items()}


@pytest.mark.parametrize("which", ["tiny", "true"])
@pytest.mark.parametrize("component", COMPONENTS + ("latent_upsampler",))
def test_every_released_tensor_lands_exactly_once(layouts, which, component):
    layout = layouts[which]
    if component == "latent_upsampler":
        tensors, config = _meta(layout["upsampler"]), layout["upsampler_config"]
    else:
        tensors, config = convert.split_components(_meta(layout["checkpoint"]))[component], layout["config"]
    mapping = convert.key_map(component, tensors, config)
    targets = [new for new in mapping.values() if new is not None]
    assert len(targets) == len(set(targets)), "two checkpoint tensors map to one diffusers tensor"
    with torch.device("meta"):
        module = convert.diffusers_class(component)(**convert.component_config(component, config))
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    got = {mapping[k]: tuple(v.shape) for k, v in tensors.items() if mapping[k] is not None}
    assert sorted(set(expected) - set(got)) == [], "diffusers tensors the checkpoint does not fill"
    assert sorted(set(got) - set(expected)) == [], "checkpoint tensors with no place in diffusers"
    assert got == expected


def test_split_covers_the_whole_checkpoint(layouts):
    keys = layouts["true"]["checkpoint"]
    parts = convert.split_components(_meta(keys))
    assert sum(len(p) for p in parts.values()) == len(keys)
    assert all(parts[name] for name in convert.COMPONENTS)
    # The true transformer is LTX-2.3's: 48 blocks; its connectors 8 layers on each side.
    assert {k.split(".")[1] for k in parts["transformer"] if k.startswith("transformer_blocks.")} == {
        str(i) for i in range(48)}
    assert any(k.startswith("video_embeddings_connector.transformer_1d_blocks.7.") for k in parts["connectors"])


@pytest.mark.parametrize("released, component, expected", [
    ("adaln_single.linear.weight", "transformer", "time_embed.linear.weight"),
    ("transformer_blocks.3.attn1.q_norm.weight", "transformer", "transformer_blocks.3.attn1.norm_q.weight"),
    ("prompt_adaln_single.linear.bias", "transformer", "prompt_adaln.linear.bias"),
    ("av_ca_a2v_gate_adaln_single.linear.weight", "transformer", "av_cross_attn_video_a2v_gate.linear.weight"),
    ("transformer_blocks.0.scale_shift_table_a2v_ca_video", "transformer",
     "transformer_blocks.0.video_a2v_cross_attn_scale_shift_table"),
    ("text_embedding_projection.audio_aggregate_embed.weight", "connectors", "audio_text_proj_in.weight"),
    ("video_embeddings_connector.transformer_1d_blocks.2.attn1.k_norm.weight", "connectors",
     "video_connector.transformer_blocks.2.attn1.norm_k.weight"),
    ("encoder.down_blocks.0.res_blocks.3.conv1.conv.weight", "vae",
     "encoder.down_blocks.0.resnets.3.conv1.conv.weight"),
    ("encoder.down_blocks.5.conv.conv.weight", "vae", "encoder.down_blocks.2.downsamplers.0.conv.conv.weight"),
    ("encoder.down_blocks.8.res_blocks.1.conv2.conv.bias", "vae", "encoder.mid_block.resnets.1.conv2.conv.bias"),
    ("decoder.up_blocks.0.res_blocks.0.conv1.conv.weight", "vae", "decoder.mid_block.resnets.0.conv1.conv.weight"),
    ("decoder.up_blocks.7.conv.conv.weight", "vae", "decoder.up_blocks.3.upsamplers.0.conv.conv.weight"),
    ("decoder.up_blocks.8.res_blocks.2.conv2.conv.weight", "vae", "decoder.up_blocks.3.resnets.2.conv2.conv.weight"),
    ("per_channel_statistics.std-of-means", "vae", "latents_std"),
    ("per_channel_statistics.mean-of-stds", "vae", None),
])
def test_known_renames(layouts, released, component, expected):
    assert convert.key_map(component, [released], layouts["true"]["config"])[released] == expected


def test_lora_and_weights_share_one_table(layouts):
    from synclora.ltx.lora import released_to_diffusers

    linears = [k[: -len(".weight")] for k, shape in layouts["true"]["checkpoint"].items()
               if k.startswith("model.diffusion_model.transformer_blocks.0.") and len(shape) == 2
               and k.endswith(".weight")]
    assert len(linears) > 20
    for name in linears:
        lora_key = name.removeprefix("model.") + ".lora_A.weight"
        mapped = next(iter(released_to_diffusers({lora_key: None})))
        assert mapped == convert.transformer_key(name.removeprefix("model.diffusion_model.") + ".weight").replace(
            ".weight", ".lora_A.weight")


def test_derived_configs_are_ltx23(layouts):
    config = layouts["true"]["config"]
    t = convert.transformer_config(config)
    assert (t["num_layers"], t["num_attention_heads"], t["attention_head_dim"]) == (48, 32, 128)
    assert t["vae_scale_factors"] == (8, 32, 32) and t["rope_type"] == "split" and t["rope_double_precision"]
    assert t["gated_attn"] and t["cross_attn_mod"] and not t["use_prompt_embeddings"]
    v = convert.vae_config(config)
    assert v["block_out_channels"] == (256, 512, 1024, 1024)
    assert v["decoder_block_out_channels"] == (256, 512, 512, 1024)
    assert v["upsample_type"] == ("spatiotemporal", "spatiotemporal", "temporal", "spatial")
    assert (v["spatial_compression_ratio"], v["temporal_compression_ratio"]) == (32, 8)
    u = convert.upsampler_config(layouts["true"]["upsampler_config"])
    assert u["mid_channels"] == 1024 and not u["use_rational_resampler"]


def _tiny_file(layouts, tmp_path, drop: str | None = None, extra: str | None = None, reshape: str | None = None):
    from safetensors.torch import save_file

    layout = layouts["tiny"]
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(shape, generator=g).to(torch.bfloat16) for k, shape in layout["checkpoint"].items()}
    if drop:
        sd.pop(drop)
    if extra:
        sd[extra] = torch.zeros(2)
    if reshape:
        sd[reshape] = torch.zeros(3, 3, dtype=torch.bfloat16)
    ckpt = tmp_path / "ckpt.safetensors"
    save_file(sd, str(ckpt), metadata={"config": json.dumps(layout["config"])})
    ups = {k: torch.randn(shape, generator=g) for k, shape in layout["upsampler"].items()}
    upsf = tmp_path / "ups.safetensors"
    save_file(ups, str(upsf), metadata={"config": json.dumps(layout["upsampler_config"])})
    return ckpt, upsf, sd, ups


def test_load_released_puts_each_tensor_where_it_belongs(layouts, tmp_path):
    ckpt, upsf, sd, ups = _tiny_file(layouts, tmp_path)
    comps = convert.load_released(ckpt, upsf, dtype=torch.float32)
    assert set(comps) == {"transformer", "connectors", "vae", "audio_vae", "latent_upsampler", "scheduler"}
    checks = {
        ("transformer", "time_embed.linear.weight"): "model.diffusion_model.adaln_single.linear.weight",
        ("connectors", "video_text_proj_in.bias"): "text_embedding_projection.video_aggregate_embed.bias",
        ("vae", "decoder.up_blocks.0.upsamplers.0.conv.conv.weight"): "vae.decoder.up_blocks.1.conv.conv.weight",
        ("vae", "latents_mean"): "vae.per_channel_statistics.mean-of-means",
        ("audio_vae", "latents_std"): "audio_vae.per_channel_statistics.std-of-means",
    }
    for (component, key), released in checks.items():
        assert torch.equal(comps[component].state_dict()[key], sd[released].float()), key
    assert torch.equal(comps["latent_upsampler"].state_dict()["final_conv.weight"], ups["final_conv.weight"])
    assert not any(p.device.type == "meta" for m in comps.values() if isinstance(m, torch.nn.Module)
                   for p in m.parameters())


def test_incomplete_or_foreign_checkpoints_are_refused(layouts, tmp_path):
    key = "model.diffusion_model.transformer_blocks.1.ff.net.2.weight"
    ckpt, upsf, _, _ = _tiny_file(layouts, tmp_path, drop=key)
    with pytest.raises(ConversionError, match="missing"):
        convert.load_released(ckpt)
    ckpt, _, _, _ = _tiny_file(layouts, tmp_path, extra="model.diffusion_model.made_up.weight")
    with pytest.raises(ConversionError, match="unexpected"):
        convert.load_released(ckpt)
    ckpt, _, _, _ = _tiny_file(layouts, tmp_path, extra="lora_unet.weight")
    with pytest.raises(ConversionError, match="no known LTX-2.3 component"):
        convert.load_released(ckpt)
    ckpt, _, _, _ = _tiny_file(layouts, tmp_path, reshape="vae.encoder.conv_in.conv.bias")
    with pytest.raises(ConversionError, match="shape"):
        convert.load_released(ckpt)


def test_unsupported_layouts_are_named(layouts):
    config = json.loads(json.dumps(layouts["tiny"]["config"]))
    config["vae"]["encoder_blocks"].insert(1, ["res_x", {"num_layers": 1}])
    with pytest.raises(ConversionError, match="block layout"):
        convert.vae_config(config)
    config = json.loads(json.dumps(layouts["tiny"]["config"]))
    config["transformer"]["caption_proj_before_connector"] = False
    with pytest.raises(ConversionError, match="connectors"):
        convert.connectors_config(config)


# --- against ltx-core itself (requirements-test.txt installs it; or the parity side environment) ----------------------
@pytest.fixture(scope="module")
def official():
    from benchmarks import ltx_official  # importable: pyproject's pytest `pythonpath` holds the repository root

    if not ltx_official.side_env_available():
        pytest.fail("ltx-core is not installed: `pip install -r requirements-test.txt` (it pins ltx-core 1.0.0)")
    ltx_official.ensure_side_env()
    return ltx_official


def test_fixture_is_what_ltx_core_builds(official, layouts):
    assert official.key_fixture(*official.tiny_config())["checkpoint"] == layouts["tiny"]["checkpoint"]


def test_converted_modules_compute_what_ltx_core_computes(official, tmp_path):
    cfg, ups = official.tiny_config()
    mods = official.build_official(cfg, ups, seed=0)
    ckpt = official.write_checkpoint(tmp_path / "c.safetensors", mods, cfg, dtype=torch.float32)
    upsf = official.write_upsampler(tmp_path / "u.safetensors", mods, ups, dtype=torch.float32)
    comps = convert.load_released(ckpt, upsf, dtype=torch.float32)
    vae = comps["vae"]
    g = torch.Generator().manual_seed(1)
    video = torch.rand(1, 3, 9, 64, 64, generator=g) * 2 - 1
    mean, std = vae.latents_mean.view(1, -1, 1, 1, 1), vae.latents_std.view(1, -1, 1, 1, 1)
    with torch.no_grad():
        z_official = mods["encoder"](video)
        z_ours = (vae.encode(video).latent_dist.mode() - mean) / std
        torch.testing.assert_close(z_ours, z_official, rtol=0, atol=1e-5)
        torch.testing.assert_close(vae.decode(z_ours * std + mean, None, return_dict=False)[0],
                                   mods["decoder"](z_official), rtol=0, atol=1e-4)
        from ltx_core.model.upsampler import upsample_video

        torch.testing.assert_close((comps["latent_upsampler"](z_ours * std + mean) - mean) / std,
                                   upsample_video(z_official, mods["encoder"], mods["upsampler"]), rtol=0, atol=1e-4)
