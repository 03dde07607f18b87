"""The app's last results: up to four kept with their verdicts, shown as one grid that is the source frame for frame
with its audio (the evaluation's grid), downloadable as one mp4."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from synclora.testing import media
from synclora.ui.gallery import MAX_KEPT, Gallery, short_label, verdict_of
from synclora.ui.glue import GradioPipeline
from synclora.ui.session import SessionFiles
from synclora.video import io

N = 20


class _Req:
    def __init__(self, session_hash: str) -> None:
        self.session_hash = session_hash


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gallery")
    frames, _ = media.talking_face_frames(N, size=(96, 128), fps=24.0, seed=5)
    source = media.write_clip(tmp / "talk.mp4", frames, 24, audio=media.tone(N / 24))
    results = []
    for i in range(5):
        tinted = np.clip(frames.astype(int) + 20 * (i + 1), 0, 255).astype(np.uint8)
        results.append(io.write_video(tmp / f"result{i}.mp4", tinted, 24, audio_from=source))
    other = media.write_clip(tmp / "other.mp4", frames[:12], 24)
    return source, results, other


@pytest.fixture
def gallery(tmp_path):
    return Gallery(GradioPipeline(files=SessionFiles(tmp_path / "sessions")))


def test_verdict_words():
    md = "#### In sync (mean r 0.99 over 5 moving cues).\nOverall lag **+0** frames"
    assert verdict_of(md) == "In sync (mean r 0.99 over 5 moving cues)."
    assert short_label(verdict_of(md)) == "In sync"
    assert short_label("Lags by 3 frames: mouth r 0.21") == "Lags by 3 frames: mouth r 0.21"
    assert len(short_label("x" * 80)) == 40


def test_keeps_the_last_four_and_shows_them_frame_for_frame(gallery, clips):
    source, results, other = clips
    kept = []
    verdicts = ["In sync (r 0.99).", "Lags by 3 frames.", "Mouth frozen.", "In sync (r 0.97).", "In sync (r 0.95)."]
    for res, v in zip(results, verdicts):
        kept, md = gallery.keep(str(source), str(res), f"#### {v}\nmore", kept)
    assert len(kept) == MAX_KEPT and [k["result"] for k in kept] == [str(r) for r in results[1:]]
    assert md.splitlines()[0].startswith("1\\. **Lags by 3 frames**")
    # a report placeholder (no verdict) adds nothing; the same result again moves to the end, not twice
    kept, _ = gallery.keep(str(source), str(results[1]), "*Run a propagation to see its sync report.*", kept)
    assert len(kept) == 3
    kept, _ = gallery.keep(str(source), str(results[1]), "#### Lags by 3 frames.", kept)
    assert [k["result"] for k in kept][-1] == str(results[1]) and len(kept) == 4
    path, note = gallery.show(kept, _Req("abc"))
    grid, src = io.probe(path), io.probe(source)
    assert (grid.n_frames, grid.fps, grid.has_audio) == (src.n_frames, src.fps, True)
    a, _ = io.audio_samples(path)
    b, _ = io.audio_samples(source)
    assert a.shape == b.shape and np.abs(a - b).max() < 1e-3
    assert "4 last result" in note
    assert Path(path).parent == gallery.app.files.dir_for("abc")


def test_results_of_another_clip_are_left_out_with_a_note(gallery, clips):
    source, results, other = clips
    kept, _ = gallery.keep(str(other), str(results[0]), "#### In sync.", [])
    kept, _ = gallery.keep(str(source), str(results[1]), "#### In sync.", kept)
    path, note = gallery.show(kept, _Req("s"))
    assert io.probe(path).n_frames == N and "another clip" in note


def test_nothing_kept_or_gone_is_one_sentence(gallery, clips, tmp_path):
    with pytest.raises(gr.Error, match="No results kept yet"):
        gallery.show([], _Req("s"))
    gone = [{"video": str(tmp_path / "nope.mp4"), "result": str(tmp_path / "gone.mp4"), "verdict": "In sync."}]
    with pytest.raises(gr.Error, match="no longer on the server"):
        gallery.show(gone, _Req("s"))
    assert Gallery.clear()[0] == []
