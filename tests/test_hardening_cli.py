"""Bad input through the CLI: every case is a real file made here, and every one ends cleanly.

A rejected input gives exit code 2, exactly one line on stderr, no traceback, nothing at --out and no stray temp file
in the output folder. Inputs that are awkward but usable (rotation, VFR, odd sizes, alpha, 16-bit/CMYK/palette
images, unicode names, shell-like names) must *work*, keep frame count and fps, and say what was converted.
Most cases run `synclora.cli.main` in-process (fast); a few run `python -m synclora` for real. The table itself
(`support.bad_inputs`) is shared with the app's hardening tests.
"""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from synclora.cli import main
from synclora.errors import ModelUnavailableError
from synclora.testing import media
from synclora.video import io

from support.bad_inputs import CASES, FPS, Case, N, webm_alpha

ROOT = Path(__file__).resolve().parents[1]


def _listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_table(case: Case, base, tmp_path, capsys, monkeypatch):
    inputs = tmp_path / "in"
    inputs.mkdir()
    outdir = tmp_path / "out"
    outdir.mkdir()
    spec = case.make(inputs, base)
    for k, v in spec.get("env", {}).items():
        monkeypatch.setenv(k, v)
    source = spec.get("source", base["src"])
    edited = spec.get("edited", base["edited"])
    out = spec.get("out", outdir / spec.get("out_name", "out.mp4"))
    argv = ["propagate", str(source), "--edited", str(edited), "--out", str(out),
            "--edit-index", spec.get("edit_index", "0"), "--backend", "flow", "--quiet", *spec.get("extra", [])]
    before_in = _listing(inputs)
    monkeypatch.chdir(inputs)
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse rejects before main's handler
        rc = exc.code
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    assert rc == case.rc, cap.err
    assert not (inputs / "PWNED").exists() and not (outdir / "PWNED").exists()  # nothing reached a shell
    assert _listing(inputs) == before_in  # nothing written next to the inputs (no temp files, no partial results)
    if rc == 2:
        lines = cap.err.strip().splitlines()
        assert len(lines) == 1, cap.err
        assert "error:" in lines[0]
        assert case.says.lower() in lines[0].lower()
        assert not Path(out).exists() or Path(out) == base["src"]
        assert _listing(outdir) == set()  # no partial result, no hidden .part file
    else:  # stdout: the result's summary; stderr: its notices only
        assert all(line.startswith("note: ") for line in cap.err.strip().splitlines()), cap.err
        assert _listing(outdir) == {Path(out).name}
        src_info, out_info = io.probe(source), io.probe(out)
        assert out_info.n_frames == src_info.n_frames
        assert out_info.fps == src_info.fps
        assert (out_info.width, out_info.height) == io.even_size(src_info.width, src_info.height)
        assert "note:" not in cap.out and "result: " in cap.out, cap.out
        assert case.says.lower() in cap.err.lower(), cap.err


def test_table_is_broad():
    assert len(CASES) >= 30
    assert sum(c.rc == 2 for c in CASES) >= 20


def test_webm_alpha_is_noticed(base, tmp_path):
    src = webm_alpha(tmp_path, base)["source"]
    assert any("transparen" in n.lower() for n in io.probe(src).notices)


def test_corrupt_and_pickled_lora_are_refused_without_unpickling(tmp_path):
    """A truncated LoRA, a random file and a pickle renamed .safetensors all raise ModelUnavailableError; the pickle
    is never executed (safetensors has no code path that unpickles)."""
    from synclora.ltx.lora import read_lora
    from synclora.ltx.tiny import write_tiny_lora

    good = write_tiny_lora(tmp_path / "good.safetensors", rank=2, seed=0)
    data = Path(good).read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    import pickle

    class Boom:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "EXECUTED",))

    (tmp_path / "evil.safetensors").write_bytes(pickle.dumps(Boom()))
    for name in ("cut", "noise", "evil", "absent"):
        with pytest.raises(ModelUnavailableError) as err:
            read_lora(tmp_path / f"{name}.safetensors")
        assert f"{name}.safetensors" in str(err.value)
    assert not (tmp_path / "EXECUTED").exists()
    assert read_lora(good).state_dict  # the good one still loads


@pytest.mark.parametrize("argv,rc,says", [
    (["propagate", "{bad}", "--edited", "{edited}", "--out", "{out}", "--backend", "flow", "--quiet"], 2,
     "could not be"),
    (["propagate", "{src}", "--edited", "{edited}", "--out", "{out}", "--backend", "flow", "--quiet"], 0, ""),
], ids=["bad", "good"])
def test_real_subprocess(base, tmp_path, argv, rc, says):
    """`python -m synclora` as a user runs it: one stderr line and exit 2 for bad input; a good run works (its summary
    on stdout, its notices, if any, on stderr)."""
    bad = media.write_bad_files(tmp_path / "bad")["text"]
    out = tmp_path / "out" / "r.mp4"
    out.parent.mkdir()
    fill = dict(bad=bad, src=base["src"], edited=base["edited"], out=out)
    cmd = [sys.executable, "-m", "synclora", *(a.format(**fill) for a in argv)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == rc, p.stderr
    assert "Traceback" not in p.stderr
    if rc == 2:
        assert len(p.stderr.strip().splitlines()) == 1 and says in p.stderr
        assert _listing(out.parent) == set()
    else:
        assert all(line.startswith("note: ") for line in p.stderr.strip().splitlines()), p.stderr  # notices only
        assert p.stdout.startswith("result: ") and out.is_file()
        assert io.probe(out).n_frames == N and io.probe(out).fps == Fraction(FPS)
