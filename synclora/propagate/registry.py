"""Which backends exist, which can run here, and the one loaded instance of each.

Backends are built lazily and kept, so a model is loaded once per process (the app preloads at start-up).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from synclora.config import BACKENDS, PropagationSettings, backend_record
from synclora.errors import ModelUnavailableError
from synclora.propagate.base import LABELS, BackendSpec, Propagator


@dataclass(frozen=True)
class BackendInfo:
    name: str
    label: str
    available: bool
    why: str  # empty when available


def _flow_available(settings: PropagationSettings) -> tuple[bool, str]:
    return True, ""


def _flow_build(settings: PropagationSettings) -> Propagator:
    from synclora.propagate.flow import FlowPropagator

    return FlowPropagator(settings)


def _flow_spec(settings: PropagationSettings) -> BackendSpec:
    from synclora.propagate.flow import FlowPropagator

    return FlowPropagator.spec


def _ltx_spec(settings: PropagationSettings) -> BackendSpec:
    from synclora.propagate.ltx import spec_for

    return spec_for(settings)


def _ltx_available(settings: PropagationSettings) -> tuple[bool, str]:
    from synclora.propagate.ltx import availability

    return availability(settings)


def _ltx_build(settings: PropagationSettings) -> Propagator:
    from synclora.propagate.ltx import SyncLoRAPropagator

    return SyncLoRAPropagator(settings)


# name -> (can it run here, build it, its input constraints without building it); names, order and what the app shows
# of each are `config.BACKENDS`
_BACKENDS: dict[str, tuple[Callable, Callable, Callable]] = {
    "synclora": (_ltx_available, _ltx_build, _ltx_spec),
    "flow": (_flow_available, _flow_build, _flow_spec),
}
_instances: dict[tuple, Propagator] = {}
_lock = threading.Lock()


def backends(settings: PropagationSettings | None = None) -> list[BackendInfo]:
    """All backends, in order of preference, with whether each can run here."""
    settings = settings or PropagationSettings()
    out = []
    for name in (b.name for b in BACKENDS):
        available = _BACKENDS[name][0]
        try:
            # A loaded backend runs whatever happened to its files since (ZeroGPU may prune them after packing).
            ok, why = (True, "") if _key(name, settings) in _instances else available(settings)
        except ImportError as exc:  # an optional dependency is missing
            ok, why = False, f"missing dependency: {exc.name}"
        out.append(BackendInfo(name, LABELS[name], ok, "" if ok else why))
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
    """The loaded backend for these settings (built on first use, then reused)."""
    name = resolve(settings)
    available, build, _ = _BACKENDS[name]
    key = _key(name, settings)
    with _lock:
        if key not in _instances:
            ok, why = available(settings)
            if not ok:
                raise ModelUnavailableError(f"the {name} backend cannot run here: {why}")
            _instances[key] = build(settings)
        return _instances[key]


def spec(settings: PropagationSettings) -> BackendSpec:
    """The input constraints of the backend `settings` resolve to, without loading any model."""
    return _BACKENDS[resolve(settings)][2](settings)


def preload(settings: PropagationSettings) -> str:
    """Load the backend `settings` resolve to, so the first request doesn't pay for it. Returns its name."""
    return get(settings).name
