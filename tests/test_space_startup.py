"""The whole start-up path of a Space, offline: `python app.py` (a real process) with the Space's environment, the
weights where `preload_from_hub` leaves them and no manual command run before.

Tiny weights of the true architectures sit in a Hugging Face cache under the real repository and file names, with a
tiny Gemma 3 text encoder (what the app fetches when the prompt cache is missing). The app must make the `3d1t`
prompt cache itself, load Sync-LoRA through the real loader (on the CPU: SYNCLORA_ALLOW_CPU) and run a first
propagation for a `gradio_client` caller. With a corrupt and a missing file it must come up anyway, say which files
and what to run, and serve the CPU preview.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from synclora.ltx import hub
from synclora.testing import media
from synclora.video import io

pytestmark = [pytest.mark.slow, pytest.mark.server]
ROOT = Path(__file__).resolve().parents[1]
# What the Spaces runtime sets (gradio reads SYSTEM and SPACE_ID; `spaces` reads SPACES_ZERO_GPU, which stays off:
# ZeroGPU needs its device API, so here `spaces.GPU` is the pass-through it is on any non-ZeroGPU hardware).
SPACE_ENV = {"SYSTEM": "spaces", "SPACE_ID": "someone/synclora", "SPACE_AUTHOR_NAME": "someone",
             "SPACE_REPO_NAME": "synclora", "SPACE_HOST": "someone-synclora.hf.space"}


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory) -> Path:
    from synclora.ltx.tiny import write_tiny_hub_cache

    cache = tmp_path_factory.mktemp("preloaded") / "hub"
    write_tiny_hub_cache(cache)
    return cache


N_FRAMES = 9  # one model call of the smallest valid length: start-up is under test, chunking is tested elsewhere


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("clip")
    frames, _ = media.talking_face_frames(N_FRAMES, size=(128, 128), seed=3)
    src = media.write_clip(d / "talk.mp4", frames, 25, audio=media.tone(N_FRAMES / 25))
    edited = io.read_frame(src, 0).copy()
    edited[40:52, 40:88] = (255, 0, 0)
    Image.fromarray(edited).save(d / "edited.png")
    return src, d / "edited.png"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Space:
    """`python app.py` as a Space starts it, in its own folder (HF_HOME, /data, SYNCLORA_HOME)."""

    def __init__(self, root: Path, cache: Path):
        self.root = root
        shutil.copytree(cache, root / "hf" / "hub", symlinks=True)
        (root / "data").mkdir()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = root / "app.log"
        self.env = {**os.environ, **SPACE_ENV, "HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1",
                    "SYNCLORA_HOME": str(root / "home"), "SYNCLORA_PERSISTENT_DIR": str(root / "data"),
                    "SYNCLORA_ALLOW_CPU": "1", "SYNCLORA_CACHE_EXAMPLES": "0", "SYNCLORA_DISABLE_INSTRUCT": "1",
                    "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port),
                    "GRADIO_ANALYTICS_ENABLED": "False"}
        for name in ("HF_HUB_CACHE", "SYNCLORA_WEIGHTS_DIR", "SYNCLORA_MODEL", "SYNCLORA_BACKEND"):
            self.env.pop(name, None)
        self.proc: subprocess.Popen | None = None

    def blob(self, repo: str, name: str) -> Path:
        snap = self.root / "hf" / "hub" / ("models--" + repo.replace("/", "--")) / "snapshots"
        return next(snap.iterdir()).joinpath(name).resolve()

    def start(self, timeout: float = 600, *, until: tuple[str, ...] = ()) -> Space:
        """Start, and wait until the app answers (or, with `until`, until its log has one of those phrases)."""
        self.proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=self.env,
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"app.py exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if self._there(until):
                return self
            time.sleep(0.2)
        pytest.fail(f"app.py did not come up in {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def _there(self, until: tuple[str, ...]) -> bool:
        if until:
            return any(phrase in self.log.read_text() for phrase in until)
        try:
            return httpx.get(self.url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False, download_files=str(self.root / "downloads"))

    def stop(self, graceful: bool = True) -> str:
        """SIGTERM, as a Space is stopped; `graceful=False` kills a start read only for its start-up lines, where
        another start of the same test already checks the shutdown."""
        if self.proc is not None and self.proc.poll() is None and not graceful:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.log.read_text()


def _our_tracebacks(log: str) -> list[str]:
    """Tracebacks in the log other than "Exception ignored" notes about event loops gradio creates and drops."""
    parts = log.split("Traceback (most recent call last):")
    return [after[:800] for before, after in zip(parts, parts[1:]) if "BaseEventLoop.__del__" not in before[-200:]]


def test_a_space_comes_up_with_sync_lora_and_runs_a_first_propagation(tmp_path, tiny_cache, clip):
    from gradio_client import handle_file

    space = Space(tmp_path, tiny_cache)
    try:
        t0 = time.perf_counter()
        space.start()
        started = time.perf_counter() - t0
        client = space.client()
        status = client.predict(api_name="/backend_status")
        assert "**Sync-LoRA (LTX-2.3 IC-LoRA, generative, GPU)**: ready" in status, status
        assert "auto** uses **synclora" in status and "loaded in this process" in status
        assert "Prompt cache made at this start-up" in status and "Hugging Face Space someone/synclora" in status
        stored = tmp_path / "data" / "synclora" / "prompt-3d1t.safetensors"  # persistent storage, for the next start
        assert stored.is_file()

        src, edited = clip
        t1 = time.perf_counter()
        result, sbs, md = client.predict(handle_file(str(src)), handle_file(str(edited)), 0,
                                         api_name="/edit_video")
        took = time.perf_counter() - t1
        assert "**synclora**" in md, md
        a, b = io.probe(src), io.probe(result)
        assert (b.n_frames, b.fps, b.size, b.has_audio) == (a.n_frames, a.fps, a.size, True)
        print(f"space start-up {started:.0f} s (prompt cache made, model loaded), first propagation {took:.0f} s")
    finally:
        log = space.stop()
    assert "prompt cache made at this start-up" in log and "backend synclora loaded" in log
    assert not _our_tracebacks(log), log[-3000:]
    lock = (tmp_path / "home" / "weights.lock.json").read_text()
    assert hub.BASE_REPO in lock and hub.SYNC_REPO in lock  # what was found is pinned

    # The next start finds the cache in persistent storage and does not run Gemma again.
    again = Space(tmp_path / "again", tiny_cache)
    (again.root / "data" / "synclora").mkdir(parents=True)
    shutil.copy(stored, again.root / "data" / "synclora")
    try:  # read up to what it says of the prompt cache: found, or made again (which encodes first)
        again.start(until=("prompt cache found", "prompt cache made", "encoding `"))
    finally:
        log = again.stop(graceful=False)
    assert "prompt cache found (persistent storage)" in log and "encoding" not in log


def test_a_broken_download_leaves_the_cpu_preview_and_says_what_to_run(tmp_path, tiny_cache, clip):
    from gradio_client import handle_file

    space = Space(tmp_path, tiny_cache)
    lora = space.blob(hub.SYNC_REPO, hub.SYNC_LORA_FILE)
    data = lora.read_bytes()
    lora.write_bytes(data[: len(data) * 3 // 4])  # a download cut short
    shard = "connectors/diffusion_pytorch_model-00003-of-00003.safetensors"
    space.blob(hub.BASE_REPO, shard).unlink()  # and one that never came
    try:
        space.start()
        client = space.client()
        status = client.predict(api_name="/backend_status")
        assert "**cannot run here**" in status and "auto** uses **flow" in status
        assert f"{hub.SYNC_LORA_FILE} (CORRUPT): truncated" in status and f"{shard} (MISSING): missing" in status
        assert "preload_from_hub" in status  # on a Space, the fix is the front matter
        src, edited = clip
        result, _, md = client.predict(handle_file(str(src)), handle_file(str(edited)), 0, api_name="/edit_video")
        assert "**flow**" in md and io.probe(result).n_frames == N_FRAMES
    finally:
        log = space.stop()
    assert "backend flow loaded" in log and not _our_tracebacks(log), log[-3000:]
