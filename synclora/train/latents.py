"""Latent cache: every training video goes through the VAE once, and training only ever reads small tensors.

Why: at 512×512×81 the VAE encode of one clip costs about as much as several training steps and needs its own
memory; encoding each kept pair once (and again only when the file, the size or the VAE changes) makes training
pure transformer work, lets the VAE leave the GPU, and makes a resumed or repeated run start at once.

A cached latent is keyed by the video file's content hash, the pixel size and frame count it was encoded at and a
fingerprint of the VAE, so renaming or re-curating pairs never re-encodes, while a changed file or size always does.
Stored as safetensors (`latents`: normalized (C, F, H, W), the form the transformer sees; metadata: the clip facts).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synclora.errors import InputError
from synclora.ltx.vae import encode_video, resize_frames
from synclora.paths import atomic_output


@dataclass(frozen=True)
class ClipSize:
    """The pixel size and frame count a video is encoded at (frames: 8k+1 for LTX's 8x temporal VAE)."""

    width: int
    height: int
    frames: int

    def tag(self) -> str:
        return f"{self.width}x{self.height}x{self.frames}"


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of the file's bytes (links resolved), so a cache entry follows content, not names."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def vae_fingerprint(vae: torch.nn.Module) -> str:
    """A short hash of the VAE's config plus a few weight values: two different VAEs never share cache entries."""
    config = {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}  # `_use_default_values` is a set
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    params = list(vae.parameters())
    for p in (params[0], params[len(params) // 2], params[-1]):
        h.update(p.detach().flatten()[:64].float().cpu().numpy().tobytes())
    return h.hexdigest()[:12]


def usable_frames(n: int, wanted: int, step: int) -> int:
    """The longest `step*k + 1` count that is ≤ both the clip's frames and the wanted count (0 if none)."""
    m = min(n, wanted)
    return 0 if m < 1 else ((m - 1) // step) * step + 1


def frames_to_pixels(frames: np.ndarray, size: ClipSize) -> torch.Tensor:
    """(T, H, W, 3) uint8 → (1, 3, T, h, w) float in [-1, 1]: centre crop to the aspect, then bilinear resize.

    The very helper inference uses (`ltx.vae.resize_frames`, ltx-pipelines' recipe), so the model is trained on frames
    prepared exactly like the frames it is given at inference.
    """
    x = resize_frames(frames[: size.frames], size.height, size.width, crop=True) * 2.0 - 1.0
    return x.permute(1, 0, 2, 3).unsqueeze(0).contiguous()


class LatentCache:
    """Encode-once store of normalized video latents under `root`, one safetensors file per (video, size, VAE)."""

    def __init__(self, root: str | Path, vae: torch.nn.Module | None):
        self.root = Path(root)
        self.vae = vae
        self.vae_id = vae_fingerprint(vae) if vae is not None else None
        self._digests: dict[Path, str] = {}

    def key(self, video: Path, size: ClipSize) -> str:
        video = Path(video).resolve()
        if video not in self._digests:
            self._digests[video] = file_digest(video)
        return f"{self._digests[video][:32]}-{size.tag()}-{self.vae_id}"

    def path(self, video: Path, size: ClipSize) -> Path:
        return self.root / f"{self.key(video, size)}.safetensors"

    def get(self, video: Path, size: ClipSize) -> Path:
        """The cache file for `video` at `size`, encoding it first if it is not cached yet."""
        from safetensors.torch import save_file

        from synclora.video import io

        path = self.path(video, size)
        if path.is_file():
            return path
        if self.vae is None:
            raise InputError(f"{video} is not in the latent cache and no VAE was given to encode it")
        info = io.probe(video)
        if info.n_frames < size.frames:
            raise InputError(f"{Path(video).name} has {info.n_frames} frames, {size.frames} are needed")
        frames = io.read_frames(video, stop=size.frames)
        latents = encode_video(self.vae, frames_to_pixels(frames, size))
        self.root.mkdir(parents=True, exist_ok=True)
        meta = {"video": str(video), "fps": str(float(info.fps)), "size": size.tag(), "vae": self.vae_id or ""}
        with atomic_output(path) as tmp:
            save_file({"latents": latents.contiguous()}, str(tmp), metadata=meta)
        return path


def load_latents(path: Path) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(path))["latents"]
