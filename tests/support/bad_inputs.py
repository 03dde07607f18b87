"""Bad (and awkward but usable) inputs for a propagation, as a table shared by the CLI and the app hardening tests.

Every case makes real files on the fly from `base` (`make_base`: a small talking-face clip and an edit of its frame 0)
and says how a propagation must end: rejected with one sentence containing `says` (rc 2), or handled (rc 0; `says`
then names a notice the user must get). Awkward inputs (rotation, VFR, odd sizes, alpha, 16-bit/CMYK/palette images,
unicode and shell-like names) must work and keep frame count and fps.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from synclora import limits
from synclora.testing import media
from synclora.video import io

N, W, H, FPS = 8, 64, 48, 25


def make_base(d: Path) -> dict:
    """A small talking-face clip in `d`, its frame 0 with a red patch as PNG, and the frames themselves."""
    frames, _ = media.talking_face_frames(N, size=(W, H), seed=1)
    src = media.write_clip(d / "src.mp4", frames, FPS)
    frame0 = io.read_frame(src, 0)
    edited = frame0.copy()
    edited[20:28, 24:40] = (255, 0, 0)
    ed = d / "edited.png"
    Image.fromarray(edited).save(ed)
    return {"dir": d, "src": src, "edited": ed, "frame0": edited, "frames": frames}


@dataclass
class Case:
    id: str
    make: Callable[[Path, dict], dict]  # (case folder, base) -> overrides of source/edited/out/extra args
    rc: int  # 2: rejected with one line; 0: handled
    says: str = ""  # a word the stderr line (rc 2) or a stdout note (rc 0) must contain (case-insensitive)


# --- builders ---------------------------------------------------------------------------------------------------------
def bad_video(kind: str):
    def make(d: Path, b: dict) -> dict:
        return {"source": media.write_bad_files(d / "bad")[kind]}

    return make


def clip(frames_fn, name="clip.mp4", fps=FPS, edited_from_clip=True, **kw):
    """A source clip; the edited frame is its own frame 0 with a red patch (display size)."""

    def make(d: Path, b: dict) -> dict:
        src = media.write_clip(d / name, frames_fn(b), fps, **kw)
        out = {"source": src}
        if edited_from_clip:
            f = io.read_frame(src, 0).copy()
            h, w = f.shape[:2]
            f[h // 3: h // 2, w // 3: w // 2] = (255, 0, 0)
            Image.fromarray(f).save(d / "edited.png")
            out["edited"] = d / "edited.png"
        return out

    return make


def image(save: Callable[[Path, np.ndarray], Path]):
    """An edited frame saved in an awkward format from the base edit."""

    def make(d: Path, b: dict) -> dict:
        return {"edited": save(d, b["frame0"])}

    return make


def pil(mode: str, name: str, convert=None, **save_kw):
    def save(d: Path, rgb: np.ndarray) -> Path:
        im = Image.fromarray(rgb)
        im = convert(im) if convert else im.convert(mode)
        assert im.mode == mode
        im.save(d / name, **save_kw)
        return d / name

    return image(save)


def _i16(im: Image.Image) -> Image.Image:
    grey = np.asarray(im.convert("L"), dtype=np.uint16) * 257
    return Image.fromarray(grey, mode="I;16")


def _rgba(im: Image.Image) -> Image.Image:
    a = im.convert("RGBA")
    px = np.asarray(a).copy()
    px[:5, :, 3] = 0
    return Image.fromarray(px, mode="RGBA")


def _p_transparent(im: Image.Image) -> Image.Image:
    p = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    p.info["transparency"] = 0
    return p


def _png16_rgb(d: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(d / "rgb48.png"), rgb[:, :, ::-1].astype(np.uint16) * 257)
    return d / "rgb48.png"


def _gif_animated(d: Path, rgb: np.ndarray) -> Path:
    a, b = Image.fromarray(rgb), Image.fromarray(255 - rgb)
    a.save(d / "anim.gif", save_all=True, append_images=[b], duration=40, loop=0)
    return d / "anim.gif"


def _exif_rotated(d: Path, rgb: np.ndarray) -> Path:
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(rgb, 1)))  # a camera's sideways pixels...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...that EXIF turns 90° clockwise back to the frame's size
    stored.save(d / "exif.jpg", exif=exif, quality=95)
    return d / "exif.jpg"


def _resized(w: int, h: int):
    def save(d: Path, rgb: np.ndarray) -> Path:
        Image.fromarray(rgb).resize((w, h)).save(d / f"resized{w}x{h}.png")
        return d / f"resized{w}x{h}.png"

    return image(save)


def _bytes(name: str, data: bytes):
    def save(d: Path, rgb: np.ndarray) -> Path:
        (d / name).write_bytes(data)
        return d / name

    return image(save)


def _truncated_png(d: Path, rgb: np.ndarray) -> Path:
    Image.fromarray(rgb).save(d / "full.png")
    data = (d / "full.png").read_bytes()
    (d / "cut.png").write_bytes(data[: len(data) // 2])
    return d / "cut.png"


def _bomb(d: Path, rgb: np.ndarray) -> Path:
    Image.new("L", (9000, 9000)).save(d / "bomb.png")  # 81 MP of zeros: a few KB on disk
    return d / "bomb.png"


def _png_as_mp4(d: Path, b: dict) -> dict:
    Image.fromarray(b["frame0"]).save(d / "picture.png")
    (d / "picture.mp4").write_bytes((d / "picture.png").read_bytes())
    return {"source": d / "picture.mp4"}


_made: dict[str, Path] = {}


def _once(name: str, write: Callable[[Path], Path]) -> Callable[[Path, dict], dict]:
    """A case whose file depends on nothing given: written once per test process (seconds each), copied per test."""

    def make(d: Path, b: dict) -> dict:
        if name not in _made:
            keep = Path(tempfile.mkdtemp(prefix="synclora-cases-"))
            atexit.register(shutil.rmtree, keep, True)
            _made[name] = write(keep / name)
        return {"source": Path(shutil.copy(_made[name], d / name))}

    return make


def _eight_k(path: Path) -> Path:
    f = np.zeros((2, 4320, 7680, 3), np.uint8)
    f[:, ::64] = 200
    return media.write_clip(path, f, FPS, video_codec="mpeg4")


def _long(path: Path) -> Path:
    n = limits.MAX_FRAMES + 1
    f = np.zeros((n, 16, 16, 3), np.uint8)
    f[..., 0] = (np.arange(n) % 256)[:, None, None]
    return media.write_clip(path, f, 240, crf=51)


def _rotated(d: Path, b: dict) -> dict:
    stored = np.ascontiguousarray(np.rot90(b["frames"], k=1, axes=(1, 2)))  # 48×64 stored, 64×48... turned
    src = media.write_clip(d / "phone.mp4", stored, FPS, rotation=90)
    f = io.read_frame(src, 0).copy()
    f[10:20, 10:20] = (255, 0, 0)
    Image.fromarray(f).save(d / "edited.png")
    return {"source": src, "edited": d / "edited.png"}


def _vfr(d: Path, b: dict) -> dict:
    frames, _ = media.talking_face_frames(16, size=(W, H), seed=2)
    src, _ = media.write_vfr_clip(d / "vfr.mp4", frames, 30)
    f = io.read_frame(src, 0).copy()
    f[10:20, 10:20] = (255, 0, 0)
    Image.fromarray(f).save(d / "edited.png")
    return {"source": src, "edited": d / "edited.png"}


def webm_alpha(d: Path, b: dict) -> dict:
    rgba = np.full((N, H, W, 4), 255, np.uint8)
    rgba[..., :3] = b["frames"]
    rgba[:, :10, :, 3] = 0  # a transparent band at the top
    path = d / "alpha.webm"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libvpx-vp9", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuva420p"
        for i, im in enumerate(rgba):
            vf = av.VideoFrame.from_ndarray(im, format="rgba")
            vf.pts = i
            for p in s.encode(vf):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return {"source": path}


def _two_faces(b: dict) -> np.ndarray:
    a, _ = media.talking_face_frames(N, size=(W // 2, H), seed=3)
    c, _ = media.talking_face_frames(N, size=(W // 2, H), seed=4)
    return np.concatenate([a, c], axis=2)


def _no_face(b: dict) -> np.ndarray:
    return np.stack([np.roll(media.textured_background((W, H), seed=5), i, axis=1) for i in range(N)])


def _named(name: str, out_name: str = "out.mp4"):
    """Source, edit and result with awkward names (copies of the base files)."""

    def make(d: Path, b: dict) -> dict:
        src, ed = d / name, d / (Path(name).stem + " edit.png")
        src.write_bytes(b["src"].read_bytes())
        ed.write_bytes(b["edited"].read_bytes())
        return {"source": src, "edited": ed, "out_name": out_name}

    return make


def _dotdot(d: Path, b: dict) -> dict:
    """Relative paths that climb out and back in (the test runs in the input folder)."""
    (d / "clip.mp4").write_bytes(b["src"].read_bytes())
    return {"source": Path("../in/../in/clip.mp4"), "out": Path("../out/../out/./out.mp4")}


def _args(*extra: str, **over):
    def make(d: Path, b: dict) -> dict:
        return {"extra": list(extra), **over}

    return make


def _out(name: str):
    return lambda d, b: {"out_name": name}


def _missing_weights(d: Path, b: dict) -> dict:
    (d / "weights").mkdir()
    return {"extra": ["--backend", "synclora", "--model", "real"], "env": {"SYNCLORA_WEIGHTS_DIR": str(d / "weights")}}


CASES = [
    # --- the source video
    Case("zero-byte", bad_video("empty"), 2, "empty"),
    Case("text-as-mp4", bad_video("text"), 2, "could not be opened"),
    Case("truncated-mp4", bad_video("truncated"), 2, "truncated.mp4"),
    Case("random-bytes-mov", bad_video("random"), 2, "random.mov"),
    Case("audio-only", bad_video("audio_only"), 2, "no video"),
    Case("image-renamed-mp4", _png_as_mp4, 2, "picture.mp4"),
    Case("one-frame", clip(lambda b: b["frames"][:1], "one.mp4"), 2, "at least 2 frames"),
    Case("too-long", _once("long.mp4", _long), 2, f"at most {limits.MAX_FRAMES}"),
    Case("8k", _once("8k.mp4", _eight_k), 2, "megapixels"),
    Case("missing-source", lambda d, b: {"source": d / "nope.mp4"}, 2, "not found"),
    Case("source-is-folder", lambda d, b: {"source": d}, 2, "is a folder"),
    Case("tiny-16x16", clip(lambda b: media.talking_face_frames(N, size=(16, 16), seed=1)[0], "tiny.mp4"), 0),
    Case("odd-size-65x49", clip(lambda b: media.talking_face_frames(N, size=(65, 49), seed=1)[0], "odd.mp4",
                                pix_fmt="yuv444p", video_codec="libx264"), 0, "odd"),
    Case("size-210x118-half-odd", clip(lambda b: media.talking_face_frames(4, size=(210, 118), seed=1)[0],
                                       "wide.mp4"), 0),
    Case("vfr", _vfr, 0, "variable frame rate"),
    Case("rotation-90", _rotated, 0, "rotation"),
    Case("webm-alpha", webm_alpha, 0),
    Case("gif-source", clip(lambda b: b["frames"], "clip.gif"), 0),
    Case("no-face", clip(_no_face, "texture.mp4"), 0),
    Case("two-faces", clip(_two_faces, "faces.mp4"), 0),
    Case("unicode-spaces-names", _named("clip vidéo 日本 ✓.mp4", "résultat final ✓.mp4"), 0),
    Case("shell-chars-names", _named("a;$(touch PWNED)`id` 'q'.mp4", "out $(touch PWNED).mp4"), 0),
    Case("dotdot-in-paths", _dotdot, 0),
    # --- the edit index (which frame was edited)
    Case("frame-negative", _args(edit_index="-1"), 2, "out of range"),
    Case("frame-too-large", _args(edit_index=str(N)), 2, "out of range"),
    Case("frame-huge", _args(edit_index="9" * 30), 2, "out of range"),
    Case("frame-not-a-number", _args(edit_index="abc"), 2, "whole number"),
    Case("frame-fraction", _args(edit_index="1.5"), 2, "whole number"),
    # --- the edited frame
    Case("edited-16bit-grey", pil("I;16", "grey16.png", convert=_i16), 0, "16-bit"),
    Case("edited-16bit-rgb", image(_png16_rgb), 0),
    Case("edited-cmyk-jpeg", pil("CMYK", "cmyk.jpg", quality=95), 0, "cmyk"),
    Case("edited-palette", pil("P", "palette.png", convert=lambda im: im.convert("P", palette=Image.Palette.ADAPTIVE)),
         0),
    Case("edited-palette-transparent", pil("P", "ptrans.png", convert=_p_transparent), 0),
    Case("edited-greyscale", pil("L", "grey.png"), 0, "greyscale"),
    Case("edited-grey-alpha", pil("LA", "la.png"), 0),
    Case("edited-rgba-transparent", pil("RGBA", "rgba.png", convert=_rgba), 0, "transparent"),
    Case("edited-exif-rotated", image(_exif_rotated), 0),
    Case("edited-other-size-same-aspect", _resized(2 * W, 2 * H), 0, "resized"),
    Case("edited-other-aspect", _resized(W, W), 2, "aspect"),
    Case("edited-tiny-other-aspect", _resized(16, 16), 2, "aspect"),
    Case("edited-animated-gif", image(_gif_animated), 2, "animated"),
    Case("edited-zero-byte", _bytes("empty.png", b""), 2, "empty"),
    Case("edited-text-as-png", _bytes("text.png", b"not an image\n" * 10), 2, "not a readable image"),
    Case("edited-truncated-png", image(_truncated_png), 2, "cut.png"),
    Case("edited-decompression-bomb", image(_bomb), 2, "megapixels"),
    Case("edited-missing", lambda d, b: {"edited": d / "nope.png"}, 2, "not found"),
    # --- output and options
    Case("out-not-mp4", _out("out.avi"), 2, ".mp4"),
    Case("out-is-source", lambda d, b: {"out": b["src"]}, 2, "source"),
    Case("out-folder-missing", _out("no/such/folder/out.mp4"), 2, "does not exist"),
    Case("unknown-backend", _args("--backend", "magic"), 2, "unknown backend"),
    Case("seed-not-a-number", _args("--seed", "x"), 2, "whole number"),
    Case("resolution-zero-synclora", _args("--backend", "synclora", "--resolution", "0"), 2, "resolution must be"),
    Case("resolution-negative", _args("--resolution", "-512"), 2, "resolution must be"),
    Case("chunk-overlap-negative", _args("--chunk-overlap", "-1"), 2, "chunk overlap must be"),
    Case("out-name-too-long", _out("r" * 240 + ".mp4"), 2, "bytes long"),
    Case("side-by-side-is-source", lambda d, b: {"extra": ["--side-by-side", str(b["src"])]}, 2, "source video"),
    Case("model-files-missing", _missing_weights, 2, "synclora"),
]
