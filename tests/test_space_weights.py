"""Weights and the prompt cache as a Space finds them: the README's `preload_from_hub` is the loader's own list, files
in a Hugging Face cache are found (and pinned) without `fetch-weights` or a network, broken files are named with the
command that fixes them, and the `3d1t` prompt cache is validated, published or made at start-up.

Tiny weights of the true architectures are written in the real cache layout under the real repository and file
names (`write_tiny_hub_cache`), so the real lookup and the real loader run on them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from synclora.errors import ModelUnavailableError
from synclora.ltx import hub, prompt, weights

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory) -> Path:
    """A hub cache holding the tiny model (with its text encoder), written once; tests copy it before changing it."""
    from synclora.ltx.tiny import write_tiny_hub_cache

    cache = tmp_path_factory.mktemp("hf") / "hub"
    write_tiny_hub_cache(cache)
    return cache


@pytest.fixture
def env(tmp_path, monkeypatch, tiny_cache):
    """A private copy of the cache, an empty SYNCLORA_HOME, persistent storage, the CPU allowed, no network."""
    cache = tmp_path / "hub"
    shutil.copytree(tiny_cache, cache, symlinks=True)
    (tmp_path / "data").mkdir()
    for name, value in dict(HF_HUB_CACHE=cache, SYNCLORA_HOME=tmp_path / "home", HF_HUB_OFFLINE="1",
                            SYNCLORA_PERSISTENT_DIR=tmp_path / "data", SYNCLORA_ALLOW_CPU="1").items():
        monkeypatch.setenv(name, str(value))
    for name in ("SYNCLORA_WEIGHTS_DIR", "SYNCLORA_PROMPT_CACHE_REPO", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _blob(cache: Path, repo: str, name: str) -> Path:
    return hub.find(repo, name).resolve()


# ------------------------------------------------------------------------------------------------ one list of files
def test_readme_front_matter_preloads_exactly_what_the_loader_reads(env):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(text.split("---\n", 2)[1])
    entries = front["preload_from_hub"]
    assert entries == hub.preload_entries(), "README front matter: paste `python -m synclora hub-files` into it"
    listed = set()
    for entry in entries:
        repo, files, *rev = entry.split(" ")
        assert len(rev) <= 1 and all(len(r) == 40 for r in rev)
        listed |= {(repo, f) for f in files.split(",")}
    # The loader's needs, from a cache laid out like the Hub: the same set, not one file more or less.
    state = weights.inspect_weights()
    assert not state.problems
    assert {(f.repo, f.name) for f in state.files} == listed
    assert not any(part in name for _, name in listed for part in ("text_encoder/", "tokenizer/", "vocoder/"))
    from synclora.ltx.hub import PIPELINE_PARTS

    assert {name.split("/")[0] for repo, name in listed if repo == hub.BASE_REPO} == set(PIPELINE_PARTS)
    assert front["startup_duration_timeout"] == "1h"


def test_a_published_prompt_cache_joins_the_front_matter_list(monkeypatch):
    monkeypatch.setenv("SYNCLORA_PROMPT_CACHE_REPO", "someone/synclora-prompt")
    assert hub.preload_entries()[-1] == "someone/synclora-prompt prompt-3d1t.safetensors"
    assert hub.front_matter().startswith("preload_from_hub:\n  - diffusers/LTX-2.3-Diffusers ")


# ----------------------------------------------------------------------------------------- finding and pinning
def test_weights_in_the_cache_are_found_without_fetch_and_pinned(env, monkeypatch):
    import huggingface_hub

    def no_network(*a, **k):
        raise AssertionError("the loader must never download")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    monkeypatch.delenv("HF_HUB_OFFLINE")  # offline-safe by design, not only because the switch is on
    assert weights.read_lock() == {}
    paths = weights.resolve_weights()
    lock = weights.read_lock()["revisions"]
    cache = env / "hub"
    assert lock == {repo: (cache / f"models--{repo.replace('/', '--')}" / "refs" / "main").read_text()
                    for repo in (hub.BASE_REPO, hub.LTX_REPO, hub.SYNC_REPO)}
    assert paths.base_dir.name == lock[hub.BASE_REPO] and paths.sync_lora.parent.name == lock[hub.SYNC_REPO]
    assert (paths.base_dir / "transformer" / "config.json").is_file()

    # `main` moves on (a later preload): the pinned commit is still the one loaded while it is in the cache ...
    repo_dir = cache / "models--SagiPolaczek--LTX-2.3-Sync-LoRA"
    new = "f" * 40
    shutil.copytree(repo_dir / "snapshots" / lock[hub.SYNC_REPO], repo_dir / "snapshots" / new, symlinks=True)
    (repo_dir / "refs" / "main").write_text(new)
    assert weights.resolve_weights().sync_lora.parent.name == lock[hub.SYNC_REPO]
    # ... and when it is gone, the message says which commit is pinned, which one is cached, and what to run.
    shutil.rmtree(repo_dir / "snapshots" / lock[hub.SYNC_REPO])
    with pytest.raises(ModelUnavailableError, match=r"pins .* the cache has ffffffffff.*fetch-weights"):
        weights.resolve_weights()


@pytest.mark.parametrize("damage, says", [("truncate", "truncated"), ("delete", "missing"), ("garble", "header")])
def test_a_broken_file_is_named_with_the_command_that_fixes_it(env, damage, says):
    from synclora.config import PropagationSettings
    from synclora.propagate.ltx import availability

    name = "connectors/diffusion_pytorch_model-00002-of-00003.safetensors"
    blob = _blob(env / "hub", hub.BASE_REPO, name)
    data = blob.read_bytes()
    if damage == "truncate":
        blob.write_bytes(data[: len(data) // 2])
    elif damage == "delete":
        blob.unlink()
    else:
        blob.write_bytes(b"\xff" * 8 + data[8:])
    with pytest.raises(ModelUnavailableError) as e:
        weights.resolve_weights()
    assert name in str(e.value) and says in str(e.value) and "python -m synclora fetch-weights" in str(e.value)
    ok, why = availability(PropagationSettings(backend="synclora"))
    assert not ok and name in why
    assert weights.read_lock() == {}  # nothing incomplete is pinned


def test_safetensors_check_catches_what_a_cut_download_leaves(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "a.safetensors"
    save_file({"a": torch.zeros(64, 64), "b": torch.ones(3)}, str(path))
    assert hub.safetensors_problem(path) is None
    data = path.read_bytes()
    for cut, says in ((len(data) - 1, "truncated"), (20, "header"), (4, "truncated"), (0, "truncated")):
        path.write_bytes(data[:cut])
        assert says in hub.safetensors_problem(path)
    path.write_bytes(data + b"x")
    assert "truncated" in hub.safetensors_problem(path)  # sizes must add up exactly


def test_the_real_loader_builds_the_tiny_model_from_the_cache(env):
    """The tiny weights go through the real loader: sharded parts by their index, the upsampler with the config
    its own metadata carries, the prompt cache checked against the connectors' width."""
    from synclora.config import PropagationSettings
    from synclora.ltx.tiny import tiny_components
    from synclora.propagate.ltx import TINY_SPEC, load_model, spec_for

    prompt.ensure_prompt_cache(weights.resolve_weights().base_dir)
    settings = PropagationSettings(backend="synclora")
    assert spec_for(settings) == TINY_SPEC  # the CPU gets the tiny sizes
    model = load_model(settings)
    assert model.device.type == "cpu" and model.dtype == torch.float32
    tiny = tiny_components(seed=0)
    ours = model.pipe.vae.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in tiny["vae"].state_dict().items())
    assert model.upsample_pipe.latent_upsampler.config.mid_channels == 32


# ------------------------------------------------------------------------------------------------- prompt cache
def _valid_cache(path: Path, dim: int = 48, prompt_text: str = prompt.PROMPT, seq_len: int = prompt.PROMPT_MAX_LENGTH):
    embeds = torch.randn(1, seq_len, dim)
    mask = torch.zeros(1, seq_len, dtype=torch.long)
    mask[:, -3:] = 1
    return prompt.save_prompt_cache(path, embeds, mask, prompt=prompt_text)


def test_prompt_cache_validation_names_each_defect(tmp_path):
    good = _valid_cache(tmp_path / "good.safetensors")
    assert prompt.check_prompt_cache(good, 48) is None
    assert "width 48" in prompt.check_prompt_cache(good, 188160)
    assert "prompt" in prompt.check_prompt_cache(_valid_cache(tmp_path / "p.safetensors", prompt_text="hello"))
    assert "1024" in prompt.check_prompt_cache(_valid_cache(tmp_path / "l.safetensors", seq_len=16))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-10])
    assert "truncated" in prompt.check_prompt_cache(cut)


def test_corrupt_prompt_cache_is_skipped_and_made_again(env):
    base = weights.resolve_weights().base_dir
    stored = prompt.store_path()
    assert stored == env / "data" / "synclora" / prompt.PROMPT_CACHE_NAME  # persistent storage first
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"\0" * 100)
    found = prompt.find_prompt_cache(prompt.expected_dim(base))
    assert found.path is None and "persistent storage" in found.why_missing()
    said = []
    status = prompt.ensure_prompt_cache(base, say=said.append)
    assert status.ok and status.path == stored and prompt.check_prompt_cache(stored, 48) is None
    assert any("making a new one" in s for s in said)
    assert prompt.find_prompt_cache(48).path == stored
    # The text encoder was already in the cache (not fetched for this): it stays.
    assert (base / "text_encoder" / "config.json").is_file()


def test_a_published_prompt_cache_in_the_hub_cache_skips_gemma(env, monkeypatch):
    from synclora.ltx.tiny import _write_snapshot

    made = _valid_cache(env / "made.safetensors")
    _write_snapshot(env / "hub", "someone/synclora-prompt", {"prompt-3d1t.safetensors": made}, "a" * 40)
    monkeypatch.setenv("SYNCLORA_PROMPT_CACHE_REPO", "someone/synclora-prompt")

    def gemma(*args):
        raise AssertionError("Gemma must not run when a published prompt cache is there")

    status = prompt.ensure_prompt_cache(weights.resolve_weights().base_dir, encode=gemma)
    assert status.ok and "preloaded from the Hub (someone/synclora-prompt)" in status.message


def test_start_up_fetches_only_the_text_encoder_then_deletes_it(env, monkeypatch):
    """No text encoder in the cache: one download limited to text_encoder/ and tokenizer/ at the pinned commit,
    the cache is made, and the 49 GB are deleted again. The download is simulated at the network boundary."""
    import huggingface_hub

    base = weights.resolve_weights().base_dir
    keep = env / "te"
    for part in hub.TEXT_PARTS:
        shutil.copytree(base / part, keep / part)  # what the Hub would send
        for link in (base / part).iterdir():
            link.resolve().unlink()
            link.unlink()
        (base / part).rmdir()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    calls = []

    def download(repo, revision=None, cache_dir=None, allow_patterns=None, **kw):
        calls.append((repo, revision, sorted(allow_patterns)))
        from synclora.ltx.tiny import _write_snapshot

        files = {str(p.relative_to(keep)): p for p in keep.rglob("*") if p.is_file()}
        return str(_write_snapshot(Path(cache_dir), repo, files, revision))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    said = []
    status = prompt.ensure_prompt_cache(base, say=said.append)
    assert status.ok, status.message
    assert calls == [(hub.BASE_REPO, base.name, ["text_encoder/*", "tokenizer/*"])]
    assert not (base / "text_encoder").exists() and any("GB freed" in s for s in said)
    assert not weights.inspect_weights().problems  # the weights themselves are untouched


def test_no_gpu_no_prompt_cache_says_so_and_offline_says_why(env, monkeypatch):
    base = weights.resolve_weights().base_dir
    monkeypatch.setenv("SYNCLORA_ALLOW_CPU", "0")
    status = prompt.ensure_prompt_cache(base)
    assert not status.ok and "only on a GPU" in status.message
    monkeypatch.setenv("SYNCLORA_ALLOW_CPU", "1")
    for part in hub.TEXT_PARTS:
        shutil.rmtree(base / part)
    status = prompt.ensure_prompt_cache(base)
    assert not status.ok and "HF_HUB_OFFLINE" in status.message


# ------------------------------------------------------------------------------------------------------- doctor
def _doctor(env: Path, *args: str) -> subprocess.CompletedProcess:
    import os

    environment = {**os.environ, "HF_HUB_CACHE": str(env / "hub"), "SYNCLORA_HOME": str(env / "home"),
                   "SYNCLORA_PERSISTENT_DIR": str(env / "data"), "HF_HUB_OFFLINE": "1", "SYNCLORA_ALLOW_CPU": "1"}
    return subprocess.run([sys.executable, "-m", "synclora", "doctor", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_doctor_says_ready_or_what_to_run_with_its_exit_code(env):
    prompt.ensure_prompt_cache(weights.resolve_weights().base_dir)
    ok = _doctor(env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Sync-LoRA (LTX-2.3 IC-LoRA, generative, GPU): ready" in ok.stdout
    for fact in ("GPU", "weights: all", "(pinned)", "prompt cache", "disk", "packages", "diffusers 0.42.1"):
        assert fact in ok.stdout, fact
    assert len(ok.stdout.splitlines()) <= 40  # one screen

    blob = _blob(env / "hub", hub.SYNC_REPO, hub.SYNC_LORA_FILE)
    blob.write_bytes(blob.read_bytes()[:100])
    (env / "data" / "synclora" / prompt.PROMPT_CACHE_NAME).unlink()
    bad = _doctor(env, "--json")
    assert bad.returncode == 3 and "Traceback" not in bad.stderr
    report = json.loads(bad.stdout)
    assert not report["synclora_ready"] and "python -m synclora fetch-weights" in report["fixes"]
    assert "python -m synclora cache-prompt" in report["fixes"]
    text = _doctor(env).stdout
    assert f"[CORRUPT] {hub.SYNC_LORA_FILE}" in text and "[MISSING] `3d1t` prompt cache" in text
    assert "CPU preview (optical flow): ready" in text
