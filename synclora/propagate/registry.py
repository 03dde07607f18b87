"""Which backends exist (the records in `config.BACKENDS`, each naming its class), which can run here, and the one
loaded instance of each.

Backends are built lazily and kept, so a model is loaded once per process (the app preloads at start-up).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from synclora import config
from synclora.config import PropagationSettings, backend_record
from synclora.errors import ModelUnavailableError
from synclora.propagate.base import BackendSpec, ProgressFn, Propagator, Segment, no_progress


@dataclass(frozen=True)
class BackendInfo:
    name: str
    label: str
    available: bool
    why: str  # empty when available


def _code(name: str) -> type[Propagator]:
    """The `Propagator` class of backend `name`, as its record in `config.BACKENDS` names it (imported when first
    asked: the generative backend's module imports torch)."""
    module, _, cls = backend_record(name).code.partition(":")
    return getattr(importlib.import_module(module), cls)


_instances: dict[tuple, Propagator] = {}
_lock = threading.Lock()


def backends(settings: PropagationSettings | None = None) -> list[BackendInfo]:
    """All backends, in order of preference, with whether each can run here."""
    settings = settings or PropagationSettings()
    out = []
    for name in (b.name for b in config.BACKENDS):
        try:
            # A loaded backend runs whatever happened to its files since (ZeroGPU may prune them after packing).
            ok, why = (True, "") if _key(name, settings) in _instances else _code(name).availability(settings)
        except ImportError as exc:  # an optional dependency is missing
            ok, why = False, f"missing dependency: {exc.name}"
        out.append(BackendInfo(name, backend_record(name).label, ok, "" if ok else why))
    return out


def resolve(settings: PropagationSettings) -> str:
    """The backend name `settings.backend` means here ("auto": Sync-LoRA when it can run, else the CPU preview)."""
    if settings.backend == "auto":
        for info in backends(settings):
            if info.available:
                return info.name
        raise ModelUnavailableError("no propagation backend can run here")
    return settings.backend  # a known name: `PropagationSettings` checks it


def _key(name: str, settings: PropagationSettings) -> tuple:
    # Only what changes the loaded model; seed/quality/fit are per call.
    record = backend_record(name)
    return (name, settings.model, settings.memory, settings.lora) if record and record.generative else (name,)


def loaded(settings: PropagationSettings) -> bool:
    """Whether the backend `settings` resolve to is already loaded in this process."""
    try:
        return _key(resolve(settings), settings) in _instances
    except ModelUnavailableError:
        return False


def get(settings: PropagationSettings) -> Propagator:
    """The loaded backend for these settings (built on first use, then reused); inside `calls_through(call)`, the
    same backend with each of its segments run by `call`."""
    name = resolve(settings)
    code = _code(name)
    key = _key(name, settings)
    with _lock:
        if key not in _instances:
            ok, why = code.availability(settings)
            if not ok:
                raise ModelUnavailableError(f"the {name} backend cannot run here: {why}")
            _instances[key] = code(settings)
        backend = _instances[key]
    call = _calls.get()
    return backend if call is None else CallPerSegment(backend, call)


# (segment) -> (frames, facts): how each segment runs while `calls_through` is active (None: in this process, now).
SegmentCall = Callable[[Segment], "tuple[np.ndarray, dict]"]
_calls: contextvars.ContextVar[SegmentCall | None] = contextvars.ContextVar("synclora_segment_call", default=None)


@contextlib.contextmanager
def calls_through(call: SegmentCall | None) -> Iterator[None]:
    """Backends got while this is active run each segment (one model chunk) through `call` — on a ZeroGPU Space one
    `spaces.GPU` call per chunk, for a clip longer than one call may take. `call` itself gets the plain backend
    (`calls_through(None)`)."""
    token = _calls.set(call)
    try:
        yield
    finally:
        _calls.reset(token)


def run_segment(segment: Segment) -> tuple[np.ndarray, dict]:
    """One segment on the plain backend for its settings, here: the body of a per-chunk call. Returns the frames and
    what the backend learned (`Segment.facts`), which the caller's segment gets back."""
    with calls_through(None):
        backend = get(segment.settings)
    frames = backend.propagate(segment)
    return frames, dict(segment.facts)


class CallPerSegment(Propagator):
    """A backend whose segments each run through a call (see `calls_through`); everything else is the backend's."""

    def __init__(self, backend: Propagator, call: SegmentCall):
        self.backend, self.call = backend, call
        self.name, self.label, self.spec = backend.name, backend.label, backend.spec
        self.calls = 0

    def propagate(self, segment: Segment, progress: ProgressFn = no_progress) -> np.ndarray:
        self.calls += 1
        progress(0.0, f"waiting for the GPU (call {self.calls})")
        frames, facts = self.call(segment)
        segment.facts.update(facts)
        progress(1.0, f"GPU call {self.calls} done")
        return frames

    def notices(self, facts: list[dict]) -> list[str]:
        return self.backend.notices(facts)


def spec(settings: PropagationSettings) -> BackendSpec:
    """The input constraints of the backend `settings` resolve to, without loading any model."""
    return _code(resolve(settings)).spec_for(settings)


def preload(settings: PropagationSettings) -> str:
    """Load the backend `settings` resolve to, so the first request doesn't pay for it. Returns its name."""
    return get(settings).name


def unload(settings: PropagationSettings) -> bool:
    """Drop the loaded backend for these settings and free its memory (an evaluation of several LoRAs loads one at a
    time; a training run gets its GPU back). Returns whether one was loaded."""
    from synclora.memory import free_memory

    try:
        key = _key(resolve(settings), settings)
    except ModelUnavailableError:
        return False
    with _lock:
        instance = _instances.pop(key, None)
    if instance is None:
        return False
    del instance
    free_memory()
    return True
