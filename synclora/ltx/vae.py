"""What goes into and comes out of the LTX-2.3 video VAE: frame resizing, tiling, latent (de)normalisation, uint8.

Inference and training prepare frames with the same helper (`resize_frames`: ltx-pipelines' bilinear
`F.interpolate`, align_corners=False), so the model is trained on frames prepared exactly like the frames it is given,
and turn VAE output into bytes with the same one (`to_uint8`: ltx-core's arithmetic). Tiling is a choice per use:
inference encodes and decodes whole, as ICLoraPipeline does (`tiling`, `decode`; docs/PARITY.md), training tiles
the real VAE for good (`enable_tiling`).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from synclora.memory import free_memory


def resize_frames(frames: np.ndarray, height: int, width: int, *, crop: bool = False) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, height, width) float in [0, 1], resized the ltx-pipelines way.

    `crop=False` stretches to the size (inference: the working size already has the clip's aspect); `crop=True`
    scales to cover it and cuts the centre (ltx-pipelines' `resize_and_center_crop`, used for training pairs).
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    _, _, h, w = x.shape
    if not crop:
        if (h, w) != (height, width):
            x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
        return x.clamp(0, 1)
    scale = max(height / h, width / w)
    rh, rw = max(height, round(h * scale)), max(width, round(w * scale))
    x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False)
    top, left = (rh - height) // 2, (rw - width) // 2
    return x[:, :, top: top + height, left: left + width].clamp(0, 1)


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """VAE output (1, 3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8, with ltx-core's `decode_video` arithmetic (in the
    decoder's dtype, clamped, then truncated), so equal latents give the official pipeline's very bytes. Truncation
    puts values half a level lower on average than rounding would: ltx-core's choice, invisible, and kept for
    everything the VAE shows (training's sample frames too), so there is one conversion, not two."""
    video = (((video[0] + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0).to(torch.uint8)
    return video.permute(1, 2, 3, 0).cpu().numpy()


def enable_tiling(vae: torch.nn.Module) -> None:
    """Encode and decode in temporal tiles from now on (spatial tiles only kick in above 512 px).

    Training's choice for the real VAE: it encodes whole 81-frame clips at full resolution, whose activations would
    otherwise need tens of GiB. Inference does not (see `tiling`). Not for the tiny VAE (it compresses 2x in time
    only; see `ltx.tiny`)."""
    vae.use_framewise_decoding = True
    vae.use_framewise_encoding = True
    vae.enable_tiling()


def disable_tiling(vae: torch.nn.Module) -> None:
    """Encode and decode whole from now on (what ICLoraPipeline does)."""
    vae.use_framewise_decoding = False
    vae.use_framewise_encoding = False
    vae.disable_tiling()


@contextlib.contextmanager
def tiling(vae: torch.nn.Module, on: bool):
    """Tiles on (or off) for the block, then the VAE's previous state.

    Tiles change the result: temporal tiles blend at their seams (up to 255 levels apart on random weights), and in
    diffusers 0.42.1 `encode` tiles whenever `use_framewise_decoding` is set (not the encoding flag), which moved
    the reference latents' last latent frame by O(1). So inference leaves tiling off for every encode and scopes it
    to a decode that needs it (`decode`)."""
    before = (vae.use_framewise_decoding, vae.use_framewise_encoding, vae.use_tiling)
    (enable_tiling if on else disable_tiling)(vae)
    try:
        yield
    finally:
        vae.use_framewise_decoding, vae.use_framewise_encoding, vae.use_tiling = before


def decode(vae: torch.nn.Module, latents: torch.Tensor, temb: torch.Tensor | None = None, *,
           tiled: bool = False) -> torch.Tensor:
    """VAE latents (1, C, F, h, w) -> (1, 3, T, H, W) in [-1, 1], whole (as ICLoraPipeline decodes) or in tiles
    (`tiled`: where memory decides). A whole decode that runs out of GPU memory (a large size on a small GPU) is
    retried in tiles rather than failing the run."""
    try:
        with tiling(vae, tiled):
            return vae.decode(latents, temb, return_dict=False)[0]
    except torch.OutOfMemoryError:
        if tiled:
            raise
    free_memory()  # (outside the handler: the failed attempt's frames and tensors are released first)
    with tiling(vae, True):
        return vae.decode(latents, temb, return_dict=False)[0]


def _stats(vae: torch.nn.Module, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = vae.latents_mean.view(1, -1, 1, 1, 1).to(like)
    std = vae.latents_std.view(1, -1, 1, 1, 1).to(like)
    return mean, std


@torch.no_grad()
def encode_video(vae: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """(1, 3, T, H, W) in [-1, 1] → normalized latents (C, F, h, w), as the LTX-2 pipelines normalize them."""
    param = next(vae.parameters())
    latents = vae.encode(pixels.to(param.device, param.dtype)).latent_dist.mode()
    mean, std = _stats(vae, latents)
    latents = (latents - mean) * vae.config.scaling_factor / std
    return latents[0].float().cpu()


@torch.no_grad()
def decode_normalized(vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Normalized latents (1, C, F, h, w) (the form the transformer sees) → VAE output (1, 3, T, H, W) in [-1, 1]."""
    mean, std = _stats(vae, latents)
    latents = latents * std / vae.config.scaling_factor + mean
    temb = torch.zeros(1, device=latents.device, dtype=vae.dtype) if vae.config.timestep_conditioning else None
    return vae.decode(latents.to(vae.dtype), temb, return_dict=False)[0]
