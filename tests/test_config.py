"""Settings from one source: `PropagationSettings` checks itself and every face (CLI, app, API, reproduce line) is
derived from its fields; the environment is read once into `Runtime`, documented in docs/CONFIG.md."""

from __future__ import annotations

import inspect
import re
from dataclasses import fields, replace
from pathlib import Path

import pytest

from synclora import config, runtime
from synclora.config import PropagationSettings
from synclora.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("values,says", [
    (dict(backend="magic"), "unknown backend 'magic'; choose one of: auto, synclora, flow"),
    (dict(quality="best"), "unknown quality 'best'; choose one of: full, preview"),
    (dict(fit="stretch"), "unknown fit 'stretch'"),
    (dict(time_mode="fast"), "unknown time mode 'fast'"),
    (dict(model="huge"), "unknown model 'huge'"),
    (dict(memory="fp4"), "unknown memory 'fp4'"),
    (dict(resolution=0), "resolution must be a whole number from 64 to 4096, got 0"),
    (dict(resolution=100_000), "from 64 to 4096"),
    (dict(resolution=512.5), "resolution must be a whole number"),
    (dict(chunk_overlap=-1), "chunk overlap must be a whole number from 0 to 40, got -1"),
    (dict(seed=True), "seed must be a whole number"),
    (dict(seed=10**30), "seed must be a whole number from"),
    (dict(lora=3), "lora must be the path"),
])
def test_bad_values_are_one_sentence(values, says):
    with pytest.raises(InputError) as err:
        PropagationSettings(**values)
    message = str(err.value)
    assert says in message and "\n" not in message


def test_loose_values_from_the_faces_are_coerced_or_refused():
    d = PropagationSettings(backend="flow", seed=3)
    s = PropagationSettings.from_values(dict(backend=None, seed="7", resolution=640.0, quality="", chunk_overlap=0), d)
    assert (s.backend, s.seed, s.resolution, s.quality, s.chunk_overlap) == ("flow", 7, 640, "full", 0)
    for bad in ("x", "1.5", float("nan"), float("inf")):
        with pytest.raises(InputError, match="seed must be a whole number"):
            PropagationSettings.from_values(dict(seed=bad))
    with pytest.raises(TypeError):
        PropagationSettings.from_values(dict(colour="red"))


def test_backend_choices_are_the_registry_backends():
    from synclora.propagate import base, registry

    assert set(config.choices("backend")) == {"auto", *(b.name for b in registry.backends())} == {"auto", *base.LABELS}


# ---------------------------------------------------------------------------------------------------- faces
def test_every_setting_is_a_cli_flag_and_the_reproduce_line_round_trips():
    from synclora.cli import build_parser

    s = PropagationSettings(backend="synclora", quality="preview", seed=11, fit="crop", resolution=640,
                            time_mode="resample", chunk_overlap=4, model="tiny", memory="fp8", lora="/x/own.lora")
    argv = ["propagate", "a.mp4", "--edited", "e.png", "--out", "o.mp4", *config.cli_args(s, "synclora")]
    assert config.from_args(build_parser().parse_args(argv)) == s
    flow = config.cli_args(s, "flow")  # model, memory and lora only matter for Sync-LoRA
    assert "--model" not in flow and "--memory" not in flow and "--lora" not in flow and "--seed" in flow
    help_text = build_parser()._subparsers._group_actions[0].choices["propagate"].format_help()
    for f in fields(PropagationSettings):
        assert config.flag(f.name) in help_text


def test_cli_rejects_a_bad_setting_with_the_dataclass_sentence(tmp_path, capsys):
    from synclora.cli import main

    rc = main(["propagate", str(tmp_path / "a.mp4"), "--edited", "e.png", "--out", str(tmp_path / "o.mp4"),
               "--quality", "best"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "unknown quality 'best'" in err[0]


def test_the_apps_api_parameters_are_the_settings_fields_in_order():
    from synclora.ui.glue import GradioPipeline

    params = list(inspect.signature(GradioPipeline.edit_video).parameters)
    names = [f.name for f in config.setting_fields(ui_only=True)]
    assert params[:4] == ["self", "video", "edited", "edit_index"]
    assert params[4: 4 + len(names)] == names
    assert "lora" not in names  # a server-side file path is not something a visitor may choose


def test_the_apps_widgets_carry_the_metadata(tmp_path):
    from synclora.ui.glue import GradioPipeline
    from synclora.ui.layout import build
    from synclora.ui.session import SessionFiles

    app = GradioPipeline(files=SessionFiles(tmp_path), instruct=None, defaults=PropagationSettings(backend="flow"))
    demo = build(app, cache_examples=False)
    fn = next(f for f in demo.fns.values() if f.api_name == "edit_video")
    widgets = fn.inputs[3:]
    assert [w.label for w in widgets] == [f.metadata["label"] for f in config.setting_fields(ui_only=True)]
    for w, f in zip(widgets, config.setting_fields(ui_only=True)):
        if f.metadata["choices"]:
            assert [v for _, v in w.choices] == config.choices(f.name)
        assert w.value == getattr(app.defaults, f.name)
    assert fn.api_description == config.api_description()


def test_docs_api_lists_the_settings_as_the_code_allows_them():
    text = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
    assert config.api_parameters() in text, f"docs/API.md's /edit_video row should list: {config.api_parameters()}"


def test_no_allowed_value_is_restated_in_the_faces():
    """The choice lists live in config.py only: no other module spells them out as a literal list."""
    pattern = re.compile(r"""["'](preview|crop|resample|offload)["']\s*,\s*["']""")
    for path in (ROOT / "synclora").rglob("*.py"):
        if path.name != "config.py":
            assert not pattern.search(path.read_text(encoding="utf-8")), path


# ---------------------------------------------------------------------------------------------------- runtime
def test_runtime_parses_the_environment_and_names_a_bad_variable(tmp_path):
    rt = runtime.Runtime.from_env({"SYNCLORA_QUEUE_SIZE": "3", "SYNCLORA_PRELOAD": "false",
                                   "SYNCLORA_HOME": str(tmp_path), "SYNCLORA_GPU_S_PER_CHUNK_FULL": "12.5",
                                   "HF_HUB_OFFLINE": "1"})
    got = (rt.queue_size, rt.preload, rt.home, rt.gpu_s_per_chunk_full, rt.hub_offline)
    assert got == (3, False, tmp_path, 12.5, True)
    assert runtime.Runtime.from_env({}) == runtime.Runtime()
    with pytest.raises(InputError, match="SYNCLORA_QUEUE_SIZE must be a whole number, got 'many'"):
        runtime.Runtime.from_env({"SYNCLORA_QUEUE_SIZE": "many"})
    with pytest.raises(InputError, match="SYNCLORA_COMPILE must be 1 or 0"):
        runtime.Runtime.from_env({"SYNCLORA_COMPILE": "maybe"})


def test_runtime_follows_the_environment(monkeypatch):
    monkeypatch.setenv("SYNCLORA_MAX_UPLOAD_MB", "7")
    assert runtime.current().max_upload_mb == 7.0
    monkeypatch.setenv("SYNCLORA_MAX_UPLOAD_MB", "9")
    assert runtime.current().max_upload_mb == 9.0
    assert runtime.current() is runtime.current()  # parsed once per environment


def test_app_defaults_limits_and_queue_come_from_the_runtime(monkeypatch):
    from synclora.ui.server import create_app, default_settings

    rt = replace(runtime.Runtime(), backend="flow", quality="preview", max_upload_mb=5, queue_size=3, preload=False,
                 cache_examples=False)
    assert default_settings(rt) == PropagationSettings(backend="flow", quality="preview")
    demo = create_app(rt)
    try:
        assert demo.synclora.max_upload_mb == 5 and demo.synclora.defaults.quality == "preview"
        assert demo._queue.max_size == 3
    finally:
        demo.synclora.files.close()
    with pytest.raises(Exception, match="SYNCLORA_BACKEND"):
        default_settings(replace(rt, backend="magic"))


def test_docs_config_lists_exactly_the_variables_the_code_reads():
    text = (ROOT / "docs" / "CONFIG.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| `([A-Z0-9_]+)` \|", text, flags=re.M)  # (digits: SYNCLORA_FP8_MATMUL)
    assert sorted(documented) == sorted(runtime.env_names())
    # No other module reads the environment for our variables, and messages only name variables that exist.
    known = set(runtime.env_names())
    for path in [*(ROOT / "synclora").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]:
        source = path.read_text(encoding="utf-8")
        assert set(re.findall(r"SYNCLORA_[A-Z0-9_]+[A-Z0-9]", source)) <= known, path
        if path.name != "runtime.py":
            assert not re.search(r"environ(\.get)?\(?\[?[\"']SYNCLORA_", source), path


def test_docs_config_states_the_defaults_the_code_uses():
    from synclora.edit import instruct

    text = (ROOT / "docs" / "CONFIG.md").read_text(encoding="utf-8")
    rt = runtime.Runtime()

    def row(name: str) -> str:
        return next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))

    assert f"| {rt.max_upload_mb:g} |" in row("SYNCLORA_MAX_UPLOAD_MB")
    assert f"| {rt.queue_size} |" in row("SYNCLORA_QUEUE_SIZE")
    seconds = dict(config.backend_record("synclora").seconds_per_chunk)
    assert f"| {seconds['full']:g} |" in row("SYNCLORA_GPU_S_PER_CHUNK_FULL")
    assert f"| {seconds['preview']:g} |" in row("SYNCLORA_GPU_S_PER_CHUNK_PREVIEW")
    assert f"`{instruct.DEFAULT_MODEL}`" in row("SYNCLORA_INSTRUCT_MODEL")
    d = PropagationSettings()
    for name in ("backend", "quality", "model"):
        assert f"| `{getattr(d, name)}` |" in row(f"SYNCLORA_{name.upper()}")


@pytest.mark.slow
def test_the_app_refuses_a_bad_environment_in_one_line():
    import os
    import subprocess
    import sys

    env = {**os.environ, "SYNCLORA_QUEUE_SIZE": "many", "SYNCLORA_PRELOAD": "0"}
    p = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1] == "error: SYNCLORA_QUEUE_SIZE must be a whole number, got 'many'"
