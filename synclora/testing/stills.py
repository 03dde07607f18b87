"""Portrait stills for the pair-generation tests: real faces MediaPipe finds (from `testing.faces`), in several
formats and framings, plus the bad inputs a stills folder meets (no face, not an image)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_portrait_stills(folder: str | Path, count: int = 4) -> list[Path]:
    """Up to 4 stills with a face: square PNG, JPEG, a wide PNG with the face off-centre, a mirrored WebP."""
    from PIL import Image

    from synclora.testing.faces import portrait
    from synclora.testing.media import textured_background

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    grace = portrait("grace_hopper", 256)[0]
    eileen = portrait("astronaut", 256)[0]
    wide = textured_background((416, 256), seed=3)
    wide[:, 160:] = grace  # face right of centre: the crop must follow it
    made = [("grace.png", grace), ("eileen.jpg", eileen), ("grace_wide.png", wide),
            ("eileen_mirror.webp", np.ascontiguousarray(eileen[:, ::-1]))]
    paths = []
    for name, image in made[:count]:
        Image.fromarray(image).save(folder / name, quality=95)
        paths.append(folder / name)
    return paths


def write_bad_stills(folder: str | Path) -> dict[str, Path]:
    """{"no_face": a textured wall, "unreadable": a .png that is not an image}."""
    from PIL import Image

    from synclora.testing.media import textured_background

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wall = folder / "wall.png"
    Image.fromarray(textured_background((160, 120), seed=1)).save(wall)
    broken = folder / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image at all")
    return {"no_face": wall, "unreadable": broken}
