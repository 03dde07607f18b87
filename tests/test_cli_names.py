"""One name per thing on the command line: the command is `propagate`, the edited frame's index is `--edit-index`,
and a part of a clip is `--span A:B` (inclusive) — the older spellings are refused, not quietly accepted."""

import pytest

from synclora.cli import main


@pytest.mark.parametrize("argv", [
    ["edit", "a.mp4", "--edited", "e.png", "--out", "o.mp4"],
    ["propagate", "a.mp4", "--edited", "e.png", "--out", "o.mp4", "--frame", "3"],
    ["report", "a.mp4", "b.mp4", "--frame", "3"],
    ["report", "a.mp4", "b.mp4", "--range", "0", "10"],
])
def test_old_spellings_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err or "unrecognized arguments" in err, err


def test_the_one_spellings_are_listed():
    from synclora.cli import build_parser

    text = build_parser().format_help()
    assert "propagate" in text and "{edit" not in text and ",edit," not in text
