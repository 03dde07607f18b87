"""`doctor`, the registry and the ZeroGPU sizing read each backend's record (`config.BACKENDS`): a backend added there
gets its section, its GPU memory check, its place in "auto" and its seconds of GPU without a line elsewhere."""

from __future__ import annotations

from dataclasses import replace

import pytest

from synclora import config, doctor
from synclora.config import BackendRecord, PropagationSettings
from synclora.ui import gpu

GIB = 2**30
# (its code: the CPU preview's class, standing in for a model)
BIG = BackendRecord("big", "Big model", "a test backend, GPU", gpu=True, generative=False, label="a test backend",
                    code="synclora.propagate.flow:FlowPropagator", needs=("gpu", "opencv"),
                    gpu_gib=(("bf16", 60), ("fp8", 32)), seconds_per_chunk=(("full", 96.0), ("preview", 48.0)))


@pytest.fixture
def a_gpu(monkeypatch):
    """A CUDA GPU with 30 GiB free of 80, as torch would report it."""
    torch = pytest.importorskip("torch")
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (30 * GIB, 80 * GIB))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")


def test_the_report_has_a_section_per_backend_with_the_checks_its_record_needs(a_gpu):
    report = doctor.diagnose(PropagationSettings(backend="flow"))
    assert [s.backend for s in report.sections] == [b.name for b in config.BACKENDS]
    for section, record in zip(report.sections, config.BACKENDS):
        assert section.title == record.heading
        shown = [c.what for c in section.checks if c.what != "model"]
        assert len(shown) == len([n for n in record.needs if n != "packages"])
    flow = next(s for s in report.sections if s.backend == "flow")
    assert [c.what for c in flow.checks] == ["OpenCV"] and flow.ready
    assert "Sync-LoRA (LTX-2.3 IC-LoRA, generative, GPU)" in report.to_text()


def test_the_gpu_check_compares_free_memory_with_the_records_modes(a_gpu):
    ltx = config.backend_record("synclora")
    check = doctor.gpu_check(ltx)  # 30 GiB free: too little for bf16 (40), enough for fp8 (24)
    assert check.status == "warn" and "use memory mode fp8 (bf16 needs ~40 GiB)" in check.detail
    check = doctor.gpu_check(BIG)  # 60 and 32 GiB: neither fits
    assert check.status == "missing" and "memory mode fp8 (~32 GiB)" in check.detail
    small = replace(BIG, gpu_gib=(("bf16", 20),))
    assert doctor.gpu_check(small).status == "ok"


def test_a_backend_added_to_the_records_is_in_the_report_the_registry_and_the_gpu_sizing(a_gpu, monkeypatch):
    from synclora.propagate import registry

    monkeypatch.setattr(config, "BACKENDS", (BIG, *config.BACKENDS))
    assert [b.name for b in registry.backends()] == ["big", "synclora", "flow"]
    assert registry.resolve(PropagationSettings(backend="auto")) == "big"  # first by preference, and it can run
    report = doctor.diagnose(PropagationSettings(backend="flow"))
    big = report.sections[0]
    assert big.title == "Big model (a test backend, GPU)" and big.backend == "big"
    assert [c.what for c in big.checks] == ["GPU", "OpenCV"] and not big.ready
    assert big.why.startswith("GPU: Test GPU") and "~32 GiB" in big.why
    assert not report.synclora_ready  # the first backend, by preference, cannot run here

    # "auto" runs the new backend: the GPU request is sized by its record
    settings = PropagationSettings(backend="auto", quality="full", resolution=512)
    assert gpu.chunk_estimate(settings) == 96.0
    assert gpu.chunk_estimate(replace(settings, quality="preview")) == 48.0
    monkeypatch.setattr(config, "BACKENDS", tuple(b for b in config.BACKENDS if b.name != "big"))
    assert registry.resolve(settings) == "flow"  # here: sized for the first GPU backend all the same
    assert gpu.chunk_estimate(settings) == dict(config.backend_record("synclora").seconds_per_chunk)["full"]
