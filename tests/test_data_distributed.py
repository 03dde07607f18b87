"""`generate` and `curate` as real multi-process runs (torchrun, 2 CPU processes, gloo): the work is split by rank,
each pair is made exactly once, a killed rank's run resumes without any half pair, one summary / one manifest.

(On GPUs `accelerate launch --multi_gpu --num_processes N` starts the same processes; on a CPU-only machine
accelerate launches one process unless given mpirun, so the CPU tests use torchrun, which accelerate uses itself.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from synclora.data.pairs import PARTIAL_PREFIX, discover_pairs
from synclora.testing import faces
from synclora.video import io

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(cmd: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    return proc


def _worker(launcher: subprocess.Popen, rank: int):
    import psutil

    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank):
                return child
        except psutil.Error:
            continue
    return None


@pytest.mark.slow
def test_generate_on_two_ranks_survives_a_killed_rank_and_makes_each_pair_once(tmp_path):
    from synclora.data.cluster import Ranks
    from synclora.data.stills import find_stills, plan_jobs, read_text_list
    from synclora.testing.stills import write_portrait_stills

    stills = tmp_path / "stills"
    write_portrait_stills(stills, count=2)
    out = tmp_path / "PAIRS"
    cmd = [*TORCHRUN, "-m", "synclora", "generate", "--stills", str(stills), "--out", str(out), "--model", "tiny",
           "--quality", "preview", "--edits-per-still", "2", "--seed", "7"]
    jobs = plan_jobs(find_stills(stills), read_text_list(None, "instructions"), read_text_list(None, "prompts"),
                     seed=7, edits_per_still=2)
    owner = {j.name: r for r in range(2) for j in Ranks(r, 2).mine(jobs)}
    assert len(jobs) == 4 and sorted(owner.values()) == [0, 0, 1, 1]  # two pairs a rank: one made, one cut

    # Run 1: kill rank 1 (SIGKILL, like a preempted node) once it has finished a pair and is writing the next.
    launcher = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    killed = None
    deadline = time.time() + 600
    try:
        while time.time() < deadline and launcher.poll() is None:
            done = [p.name for p in discover_pairs(out)] if out.is_dir() else []
            partial = [p.name[len(PARTIAL_PREFIX):] for p in out.glob(f"{PARTIAL_PREFIX}*")] if out.is_dir() else []
            if any(owner[n] == 1 for n in done) and any(owner[n] == 1 for n in partial):
                worker = _worker(launcher, 1)
                if worker is not None:
                    worker.send_signal(signal.SIGKILL)
                    killed = [n for n in partial if owner[n] == 1]
                    break
            time.sleep(0.1)
        log = launcher.communicate(timeout=300)[0]
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert killed, "rank 1 never had a finished pair and one in progress"
    assert launcher.returncode != 0, log[-3000:]  # the launcher stops the group when a rank dies
    visible = {p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert all(p.is_complete() for p in discover_pairs(out, include_incomplete=True))  # no half pair is visible
    left = [p.name[len(PARTIAL_PREFIX):] for p in out.glob(f"{PARTIAL_PREFIX}*")]
    assert any(owner[n] == 1 for n in left)  # the killed rank's pair in progress is hidden, not half-visible
    first = {n: (out / n / "target.mp4").stat().st_mtime_ns for n in visible}
    assert first and len(first) < 4

    # Run 2: the same command finishes the job; finished pairs are not made again.
    proc = _run(cmd)
    assert "pairs made by 2 ranks" in proc.stdout, proc.stdout
    pairs = discover_pairs(out)
    assert sorted(p.name for p in pairs) == sorted(owner)  # every pair exists, once
    assert not list(out.glob(f"{PARTIAL_PREFIX}*"))  # and nothing half-made is left
    for pair in pairs:
        assert pair.meta["rank"] == owner[pair.name]  # made by its own rank, in whichever run
        assert io.probe(pair.source).n_frames == io.probe(pair.target).n_frames == 9
        assert (pair.root / "edit.png").is_file()
        if pair.name in first:
            assert (pair.target).stat().st_mtime_ns == first[pair.name]
    plan = {j.name: j for j in jobs}
    assert all(p.meta["seed"] == plan[p.name].seed and p.meta["instruction"] == plan[p.name].instruction
               and p.meta["prompt"] == plan[p.name].prompt for p in pairs)  # each rank planned the same
    summary = json.loads((out / "generate-summary.json").read_text())
    assert sorted(summary["made"]) == sorted(set(owner) - set(first))
    assert sorted(summary["skipped"]) == sorted(first) and summary["failed"] == []
    assert summary["pairs_complete"] == 4 and [r["rank"] for r in summary["ranks"]] == [0, 1]
    assert sum(r["made"] + r["skipped"] for r in summary["ranks"]) == 4


def _talking_pairs(root: Path) -> Path:
    clip = faces.talking_clip("grace_hopper", 24, size=160, seed=1, blinks=(10,)).frames
    other = faces.talking_clip("astronaut", 24, size=160, seed=2, blinks=(15,)).frames
    warm = lambda f: np.clip(f.astype(np.float32) * [1.0, 0.85, 0.7] + [20, 0, 0], 0, 255).astype(np.uint8)  # noqa: E731
    targets = {"good": (clip, warm(clip)), "lagged": (clip, warm(faces.delay(clip, 2))),
               "other_good": (other, warm(other)), "swapped": (clip, warm(other))}
    for name, (src, tgt) in targets.items():
        io.write_video(root / name / "source.mp4", src, 25)
        io.write_video(root / name / "target.mp4", tgt, 25)
    (root / "half").mkdir(parents=True)
    io.write_video(root / "half" / "source.mp4", clip[:9], 25)
    return root


@pytest.mark.slow
def test_curate_with_workers_and_with_two_ranks_writes_the_same_single_manifest(tmp_path):
    from synclora.cli import main
    from synclora.data.curate import curate
    from synclora.data.manifest import read_manifest

    pairs = _talking_pairs(tmp_path / "PAIRS")
    alone = curate(pairs, tmp_path / "alone.jsonl", plot=None)
    assert alone.total == 5 and alone.measured == 4 and alone.errors == 1
    reference = read_manifest(tmp_path / "alone.jsonl")
    assert reference["good"]["keep"] and not reference["lagged"]["keep"] and not reference["swapped"]["keep"]

    assert main(["curate", str(pairs), "--out", str(tmp_path / "workers.jsonl"), "--workers", "2", "--no-plot",
                 "--quiet"]) == 0
    _run([*TORCHRUN, "-m", "synclora", "curate", str(pairs), "--out", str(tmp_path / "ranks.jsonl"), "--quiet"])
    for name in ("workers.jsonl", "ranks.jsonl"):
        lines = (tmp_path / name).read_text().splitlines()
        assert [json.loads(x)["name"] for x in lines] == sorted(reference)  # one manifest, in pair order
        assert read_manifest(tmp_path / name) == reference, name
    assert not list(tmp_path.glob(".*.rank-*.jsonl"))  # the ranks' logs were merged and removed
    assert (tmp_path / "ranks.png").is_file()

    again = _run([*TORCHRUN, "-m", "synclora", "curate", str(pairs), "--out", str(tmp_path / "ranks.jsonl"),
                  "--quiet", "--no-plot"])
    assert "(0 measured now" in again.stdout, again.stdout  # nothing measured again (the unreadable pair is retried)
    assert again.stdout.count("pairs kept") == 1  # one summary, from the main process


def _score(name: str) -> dict:
    return {"pose": 0.95, "mouth": 0.9 if name != "b" else 0.1, "gaze": None, "eyes": None, "blink": 1.0, "lag": 0,
            "motion_ratio": 0.9, "identity": None, "face_lost": 0.0, "source_faces": 9}


def test_curate_reuses_a_crashed_multi_rank_run_and_a_rescore_ignores_it(tmp_path):
    from synclora.data.curate import SCORE_VERSION, curate
    from synclora.data.manifest import read_manifest

    for name in ("a", "b", "c"):
        (tmp_path / "P" / name).mkdir(parents=True)
        for f in ("source.mp4", "target.mp4"):
            (tmp_path / "P" / name / f).write_bytes(b"x")
    manifest = tmp_path / "m.jsonl"
    # What rank 1 of a killed 3-rank run left: its log of the one pair it measured (and a torn last line).
    stale = {"name": "b", "scores": _score("b"), "score_version": SCORE_VERSION}
    (tmp_path / ".m.jsonl.rank-00001.jsonl").write_text(json.dumps(stale) + "\n{\"name\": \"c\", \"sco")
    calls = []

    def scorer(pair, th):
        calls.append(pair.name)
        return _score(pair.name)

    summary = curate(tmp_path / "P", manifest, plot=None, scorer=scorer)
    assert sorted(calls) == ["a", "c"] and summary.measured == 2  # b came from the crashed run's log
    records = read_manifest(manifest)
    assert records["b"]["scores"] == _score("b") and not records["b"]["keep"] and records["a"]["keep"]
    assert not list(tmp_path.glob(".m.jsonl.rank-*"))  # merged into the one manifest, then removed

    (tmp_path / ".m.jsonl.rank-00004.jsonl").write_text(json.dumps({**stale, "name": "a"}) + "\n")
    calls.clear()
    summary = curate(tmp_path / "P", manifest, plot=None, scorer=scorer, rescore=True, workers=1)
    assert sorted(calls) == ["a", "b", "c"]  # a rescore measures everything again ...
    assert read_manifest(manifest)["a"]["keep"]  # ... and trusts nothing older than itself
