"""Pairs the paper's way: stills → instruction edit → image-to-video twice (tiny FLUX.2 [klein] + tiny LTX-2.3 on the
CPU), the plan every rank computes alone, the lists of instructions and prompts, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synclora.data.cluster import Ranks, stable_int
from synclora.errors import InputError
from synclora.video import io


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors; thread hand-offs cost more than the maths on a shared machine
    yield
    torch.set_num_threads(n)


def _lists(tmp_path, instructions: str | None = None, prompts: str | None = None):
    from synclora.data.stills import read_text_list

    ins = pr = None
    if instructions is not None:
        ins = tmp_path / "instructions.txt"
        ins.write_text(instructions, encoding="utf-8")
    if prompts is not None:
        pr = tmp_path / "prompts.txt"
        pr.write_text(prompts, encoding="utf-8")
    return read_text_list(ins, "instructions"), read_text_list(pr, "prompts")


# --- lists, plan, ranks ----------------------------------------------------------------------------------------
def test_shipped_lists_are_usable_and_files_replace_them(tmp_path):
    from synclora.data.stills import read_text_list

    ins, prompts = _lists(tmp_path)
    assert ins.source == "default" and len(ins) >= 20 and not any(ins.problems)
    assert len(prompts) >= 12 and not any(prompts.problems)
    assert all("camera" in p.lower() for p in prompts.items)  # motion and camera only: both clips share the prompt
    own, _ = _lists(tmp_path, "# my edits\n\nGive her a red hat.\n" + "x" * 600 + "\n  Add glasses.  \n")
    assert own.items[0] == "Give her a red hat." and own.items[2] == "Add glasses."
    assert own.where[1] == "instructions.txt line 4" and "600 characters" in own.problems[1]
    assert own.problems[0] is None and own.problems[2] is None

    for content, match in ((b"# only comments\n\n", "lists no instructions"),
                           (b"\x00\x01\x02binary", "not a text file"),
                           (b"\xff\xfe\xfa bad utf-8", "not readable UTF-8"),
                           (b"y" * 700, "no line of the instructions file")):
        bad = tmp_path / "bad.txt"
        bad.write_bytes(content)
        with pytest.raises(InputError, match=match):
            read_text_list(bad, "instructions")
    with pytest.raises(InputError, match="instructions file not found"):
        read_text_list(tmp_path / "missing.txt", "instructions")


def test_plan_is_deterministic_and_every_rank_takes_a_disjoint_share(tmp_path):
    from synclora.data.stills import plan_jobs

    stills = [tmp_path / f"s{i}.png" for i in range(7)] + [tmp_path / "s0.jpg"]
    ins, prompts = _lists(tmp_path)
    jobs = plan_jobs(stills, ins, prompts, seed=3, edits_per_still=3)
    assert len(jobs) == 24 and len({j.name for j in jobs}) == 24
    assert [j.name for j in jobs] == sorted(j.name for j in jobs)
    assert {"s0_png__e00", "s0_jpg__e00"} <= {j.name for j in jobs}  # same stem, two files: two names
    assert jobs == plan_jobs(stills, ins, prompts, seed=3, edits_per_still=3)  # every process plans the same
    for still in stills:  # the edits of one still draw different instructions
        mine = [j.instruction for j in jobs if j.still == still]
        assert len(set(mine)) == 3
    assert len({j.seed for j in jobs}) == 24 and all(0 <= j.seed < 2**32 for j in jobs)
    assert plan_jobs(stills, ins, prompts, seed=4, edits_per_still=3) != jobs
    # Adding a still leaves the other pairs' draws as they were (a resumed run with new stills stays consistent).
    more = {j.name: j for j in plan_jobs(stills + [tmp_path / "zz.png"], ins, prompts, seed=3, edits_per_still=3)}
    assert all(more[j.name] == j for j in jobs)
    for world in (1, 2, 3, 5):
        shares = [Ranks(r, world).mine(jobs) for r in range(world)]
        names = [j.name for share in shares for j in share]
        assert sorted(names) == sorted(j.name for j in jobs) and len(set(names)) == len(names)
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert stable_int("a", 1) == stable_int("a", 1) != stable_int("a", 2)

    ins_bad, _ = _lists(tmp_path, "Give her a red hat.\n" + "z" * 900 + "\n")
    bad = plan_jobs(stills[:2], ins_bad, prompts, edits_per_still=2)
    assert sorted(bool(j.problem) for j in bad) == [False, False, True, True]
    assert all("instructions.txt line 2 cannot be used: it is 900 characters" in j.problem for j in bad if j.problem)


def test_ranks_come_from_the_launcher_environment():
    assert Ranks.from_env({}) == Ranks(0, 1, 0)
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    ranks = Ranks.from_env(env)
    assert ranks == Ranks(3, 4, 1) and not ranks.is_main
    with pytest.raises(InputError, match="MASTER_ADDR"):
        Ranks.from_env({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(InputError, match="does not fit"):
        Ranks.from_env({**env, "RANK": "4"})
    with pytest.raises(InputError, match="whole numbers"):
        Ranks.from_env({"WORLD_SIZE": "two"})
    assert Ranks().gather_json({"a": 1}) == [{"a": 1}]


def test_still_is_cropped_around_its_face_and_bad_stills_are_input_errors(tmp_path):
    from synclora.data.stills import find_stills, prepare_still
    from synclora.testing.stills import write_bad_stills, write_portrait_stills

    paths = write_portrait_stills(tmp_path / "stills")
    wide = next(p for p in paths if p.name == "grace_wide.png")
    image, info = prepare_still(wide, 128, 128)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    left, top, w, h = info["crop"]
    x0, y0, x1, y1 = info["face_box"]
    assert (w, h) == (256, 256) and left <= x0 and x1 <= left + w and left > 100  # follows the face, not the centre
    assert info["still_size"] == [416, 256]
    bad = write_bad_stills(tmp_path / "bad")
    with pytest.raises(InputError, match="no face found in the still wall.png"):
        prepare_still(bad["no_face"], 64, 64)
    with pytest.raises(InputError, match="broken.png is not a readable image"):
        prepare_still(bad["unreadable"], 64, 64)
    assert [p.name for p in find_stills(tmp_path / "stills")] == sorted(p.name for p in paths)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match="no still images"):
        find_stills(tmp_path / "empty")
    with pytest.raises(InputError, match="stills folder not found"):
        find_stills(tmp_path / "nowhere")


def test_cli_refuses_missing_stills_and_flags_of_the_other_ways(tmp_path, capsys):
    from synclora.cli import main

    (tmp_path / "empty").mkdir()
    cases = [
        (["--stills", str(tmp_path / "nowhere")], "stills folder not found"),
        (["--stills", str(tmp_path / "empty")], "no still images"),
        ([], "give --stills"),
        (["--stills", str(tmp_path / "empty"), "--backend", "flow"], "--backend applies to --from-backend only"),
        (["--stills", str(tmp_path / "empty"), "--overwrite"], "--overwrite and --edit-index apply"),
        (["--stills", str(tmp_path / "empty"), "--from-backend"], "two ways of making pairs"),
        (["--from-backend"], "--from-backend needs --sources and --edits"),
        (["--stills", str(tmp_path / "empty"), "--model", "tiny", "--num-frames", "10"], "8k+1"),
        (["--stills", str(tmp_path / "empty"), "--model", "tiny", "--resolution", "96"], "multiple of 64"),
    ]
    for extra, message in cases:
        capsys.readouterr()
        assert main(["generate", "--out", str(tmp_path / "P"), *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (extra, err)


# --- the tiny models, end to end ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_generate_from_stills_tiny_makes_pairs_and_lists_bad_jobs(tmp_path, capsys):
    from synclora.cli import main
    from synclora.data.pairs import discover_pairs
    from synclora.testing.stills import write_bad_stills, write_portrait_stills

    stills = tmp_path / "stills"
    write_portrait_stills(stills, count=2)
    write_bad_stills(stills)
    instructions = tmp_path / "instructions.txt"
    instructions.write_text("Give the person round sunglasses.\n" + "w" * 600 + "\n", encoding="utf-8")
    out = tmp_path / "PAIRS"
    args = ["generate", "--stills", str(stills), "--out", str(out), "--model", "tiny", "--instructions",
            str(instructions), "--edits-per-still", "2", "--seed", "5"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "2 pairs made, 0 already there, 6 failed" in text, text
    summary = json.loads((out / "generate-summary.json").read_text())
    reasons = {f["name"]: f["reason"] for f in summary["failed"]}
    assert sorted(summary["made"]) == sorted(n for n in ("grace__e00", "grace__e01", "eileen__e00", "eileen__e01")
                                             if n not in reasons)
    # Each still's two edits draw both lines: the too-long one fails its job (for every still); the other job
    # fails too where the still itself is bad.
    bad_line = [n for n, r in reasons.items() if r.startswith("instructions.txt line 2 cannot be used")]
    assert sorted(n.split("__")[0] for n in bad_line) == ["broken", "eileen", "grace", "wall"]
    assert sorted(r for n, r in reasons.items() if n not in bad_line) == [
        "broken.png is not a readable image (UnidentifiedImageError); use PNG or JPEG",
        "no face found in the still wall.png"]
    assert summary["pairs_planned"] == 8 and summary["pairs_complete"] == 2 and len(summary["ranks"]) == 1

    pairs = discover_pairs(out)
    assert sorted(p.name for p in pairs) == sorted(summary["made"])
    assert not [p for p in out.iterdir() if p.name.startswith(".partial-")]  # nothing half-made is left
    for pair in pairs:
        meta = pair.meta
        assert meta["origin"] == "stills" and meta["instruction"] == "Give the person round sunglasses."
        assert meta["prompt"] and meta["prompt_from"].startswith("default prompts line")
        assert isinstance(meta["seed"], int) and meta["edit_index"] == 0
        assert meta["models"]["edit"].startswith("tiny FLUX.2") and "LTX-2.3" in meta["models"]["video"]
        s = meta["settings"]
        assert (s["width"], s["height"], s["num_frames"], s["fps"], s["guidance"]) == (64, 64, 9, 25.0, "none")
        src, tgt = io.probe(pair.source), io.probe(pair.target)
        assert src.n_frames == tgt.n_frames == 9 and src.fps == tgt.fps == 25 and src.size == tgt.size == (64, 64)
        from PIL import Image

        with Image.open(pair.edit) as im:
            assert im.size == (64, 64)

    # Rerun: finished pairs are skipped, the bad jobs are listed again, nothing is remade.
    before = {p.name: p.target.stat().st_mtime_ns for p in pairs}
    assert main(args) == 0
    assert "0 pairs made, 2 already there, 6 failed" in capsys.readouterr().out
    assert {p.name: p.target.stat().st_mtime_ns for p in discover_pairs(out)} == before


@pytest.mark.slow
def test_source_and_target_share_seed_prompt_and_settings(tmp_path):
    """With an edit that changes nothing, the two clips are identical: the only difference between source and target
    is the still they start from. A different still does change the clip, and the Sync-LoRA adapter is back on."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from synclora.data.stills import (
        PairMaker,
        PairOptions,
        generate_from_stills,
        plan_jobs,
        prepare_still,
        read_text_list,
    )
    from synclora.testing.stills import write_portrait_stills

    stills = write_portrait_stills(tmp_path / "stills", count=1)
    ins, prompts = read_text_list(None, "instructions"), read_text_list(None, "prompts")
    options = PairOptions.for_model("tiny", quality="preview")

    class KeepEditor:
        def edit(self, frame, instruction, settings):
            return frame.copy()

    def factory():
        maker = PairMaker(options, ins, prompts)
        maker.editor = KeepEditor()
        return maker

    jobs = plan_jobs(stills, ins, prompts)
    summary = generate_from_stills(jobs, tmp_path / "P", options, ins, prompts, maker_factory=factory)
    assert summary.made == ["grace__e00"]
    folder = tmp_path / "P" / "grace__e00"
    source = np.stack(list(io.iter_frames(folder / "source.mp4")))
    target = np.stack(list(io.iter_frames(folder / "target.mp4")))
    assert np.array_equal(source, target)

    maker = factory()
    still, _ = prepare_still(stills[0], 64, 64)
    other = still.copy()
    other[:, :32] = 255 - other[:, :32]
    a = maker.video(still, jobs[0].prompt, jobs[0].seed, options.clip)
    b = maker.video(other, jobs[0].prompt, jobs[0].seed, options.clip)
    assert np.abs(a.astype(int) - b).mean() > 0.5
    lora_layers = [m for m in maker.video.model.pipe.transformer.modules() if isinstance(m, BaseTunerLayer)]
    assert lora_layers and not any(m.disable_adapters for m in lora_layers)  # propagation gets its LoRA back


def test_a_pair_folder_appears_only_when_complete(tmp_path):
    """A pair whose making fails or is interrupted leaves no visible folder; a stale hidden one is cleared."""
    from synclora.data.pairs import PARTIAL_PREFIX
    from synclora.data.stills import PairOptions, generate_from_stills, plan_jobs, read_text_list

    stills = [tmp_path / "a.png", tmp_path / "b.png"]
    ins, prompts = read_text_list(None, "instructions"), read_text_list(None, "prompts")
    jobs = plan_jobs(stills, ins, prompts)
    (tmp_path / "P" / f"{PARTIAL_PREFIX}b__e00").mkdir(parents=True)  # left by a killed run
    (tmp_path / "P" / f"{PARTIAL_PREFIX}b__e00" / "source.mp4").write_bytes(b"half")

    class Maker:
        def make(self, job, folder: Path):
            (folder / "source.mp4").write_bytes(b"video")
            if job.still.name == "a.png":
                raise KeyboardInterrupt
            for name in ("target.mp4", "edit.png"):
                (folder / name).write_bytes(b"x")
            return {"origin": "test"}

    with pytest.raises(KeyboardInterrupt):
        generate_from_stills(jobs, tmp_path / "P", PairOptions.for_model("tiny"), ins, prompts,
                             maker_factory=Maker)
    assert sorted(p.name for p in (tmp_path / "P").iterdir()) == [f"{PARTIAL_PREFIX}b__e00"]  # a's: gone
    summary = generate_from_stills(jobs[1:], tmp_path / "P", PairOptions.for_model("tiny"), ins, prompts,
                                   maker_factory=Maker)
    assert summary.made == ["b__e00"]
    assert sorted(p.name for p in (tmp_path / "P").iterdir()) == ["b__e00", "generate-summary.json"]
    assert (tmp_path / "P" / "b__e00" / "source.mp4").read_bytes() == b"video"
