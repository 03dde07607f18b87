"""Identity: does the result keep the edited frame's face? dlib's ResNet face descriptor, weights from a package.

Why dlib: `face-recognition-models` ships the 128-D descriptor network and the 5-point aligner as plain .dat files
in the wheel, so this works offline with no hub download and no pickle. We skip dlib's (slow) detector and give it
the face boxes the face mesh already found. Distance < 0.6 is dlib's documented "same person" threshold (99.38 % on
LFW); we also report cosine similarity, which reads more naturally in a UI (1 = same descriptor).
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from synclora.errors import ModelUnavailableError


@dataclass
class IdentityScore:
    mean_similarity: float  # cosine similarity of descriptors, result frames vs the reference face
    min_similarity: float
    mean_distance: float  # Euclidean descriptor distance (dlib's metric; < 0.6 = same person)
    max_distance: float
    frames: list[int]  # result frames that were compared (a sample, see `sample_every`)
    sample_every: int
    same_person: bool

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("mean_similarity", "min_similarity", "mean_distance", "max_distance"):
            d[k] = round(float(d[k]), 4)
        return d


def _model_dir() -> Path:
    # Not `import face_recognition_models`: its __init__ needs pkg_resources, gone from current setuptools.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "identity scoring needs the face-recognition-models package (pip install face-recognition-models)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@lru_cache(maxsize=1)
def _models():
    try:
        import dlib
    except ImportError as e:
        raise ModelUnavailableError("identity scoring needs dlib (pip install dlib-bin)") from e
    d = _model_dir()
    shape, rec = d / "shape_predictor_5_face_landmarks.dat", d / "dlib_face_recognition_resnet_model_v1.dat"
    for f in (shape, rec):
        if not f.is_file():
            raise ModelUnavailableError(f"face model file missing: {f.name}; reinstall face-recognition-models")
    return dlib, dlib.shape_predictor(str(shape)), dlib.face_recognition_model_v1(str(rec))


def descriptor(frame: np.ndarray, box) -> np.ndarray:
    """128-D descriptor of the face in `box` (x0, y0, x1, y1 in pixels; e.g. the face-mesh landmark extent)."""
    dlib, sp, rec = _models()
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    shape = sp(np.ascontiguousarray(frame), dlib.rectangle(x0, y0, x1, y1))
    return np.asarray(rec.compute_face_descriptor(np.ascontiguousarray(frame), shape, 0, 0.25), dtype=np.float64)


def compare_descriptors(ref: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cosine similarity, Euclidean distance) of each row of `others` to `ref`."""
    others = np.atleast_2d(others)
    dist = np.linalg.norm(others - ref, axis=1)
    sim = others @ ref / (np.linalg.norm(others, axis=1) * np.linalg.norm(ref) + 1e-12)
    return sim, dist


def sample_frames(face: np.ndarray, max_frames: int) -> tuple[list[int], int]:
    """Every n-th frame with a face so that at most `max_frames` are compared (identity changes slowly)."""
    idx = np.flatnonzero(face)
    if len(idx) == 0:
        return [], 1
    every = max(1, int(np.ceil(len(idx) / max_frames)))
    return [int(i) for i in idx[::every]], every


def score_identity(ref_desc: np.ndarray, frames: dict[int, np.ndarray], boxes: np.ndarray, every: int,
                   max_distance: float) -> IdentityScore | None:
    """Compare the given result frames (index → RGB frame) to the reference descriptor."""
    return score_descriptors(ref_desc, {i: descriptor(frames[i], boxes[i]) for i in frames}, every, max_distance)


def score_descriptors(ref_desc: np.ndarray, descs: dict[int, np.ndarray], every: int,
                      max_distance: float) -> IdentityScore | None:
    """Compare result frames' descriptors (index → descriptor, made as the frames passed) to the reference's."""
    if not descs:
        return None
    idx = sorted(descs)
    sim, dist = compare_descriptors(ref_desc, np.stack([descs[i] for i in idx]))
    return IdentityScore(
        mean_similarity=float(sim.mean()),
        min_similarity=float(sim.min()),
        mean_distance=float(dist.mean()),
        max_distance=float(dist.max()),
        frames=idx,
        sample_every=every,
        same_person=bool(dist.mean() < max_distance),
    )
