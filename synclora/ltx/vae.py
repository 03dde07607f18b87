"""What goes into and comes out of the LTX-2.3 video VAE: frame resizing, tiling, latent (de)normalisation, uint8.

Inference and training prepare frames with the same helper (`resize_frames`: ltx-pipelines' bilinear
`F.interpolate`, align_corners=False), so the model is trained on frames prepared exactly like the frames it is given.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


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


def to_pil(x: torch.Tensor) -> list:
    """(T, 3, H, W) float in [0, 1] -> T PIL images (what the diffusers pipelines take as conditions)."""
    from PIL import Image

    arr = (x.permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)
    return [Image.fromarray(a) for a in arr]


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """VAE output (1, 3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    video = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return video.permute(1, 2, 3, 0).cpu().numpy()


def enable_tiling(vae: torch.nn.Module) -> None:
    """Encode/decode 81 frames in temporal tiles: the full-resolution decoder activations would otherwise need several
    GiB; spatial tiles only kick in above 512 px. Not for the tiny VAE (it compresses 2x only; see `ltx.tiny`)."""
    vae.use_framewise_decoding = True
    vae.use_framewise_encoding = True
    vae.enable_tiling()


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
