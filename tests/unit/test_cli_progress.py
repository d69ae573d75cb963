"""Progress as docker shows it: one redrawn line per layer on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io
import re

import pytest

from dockyard.cli.progress import ProgressError, show

EVENTS = [
    {"status": "Pulling from library/busybox", "id": "latest"},
    {"status": "Pulling fs layer", "id": "a3ed95caeb02"},
    {"status": "Pulling fs layer", "id": "b4c2d1e0f9a8"},
    {"status": "Downloading", "id": "a3ed95caeb02", "progressDetail": {"current": 12_300_000, "total": 48_100_000},
     "progress": "[====>      ]  12.3MB/48.1MB"},
    {"status": "Download complete", "id": "b4c2d1e0f9a8"},
    {"status": "Pull complete", "id": "a3ed95caeb02"},
    {"status": "Digest: sha256:abc"},
    {"status": "Status: Downloaded newer image for busybox:latest"},
]


def screen(text: str) -> list[str]:
    """What a terminal shows after `text`: enough of VT100 for cursor up/down, CR and erase-line."""
    lines, row, col = [""], 0, 0
    for tok in re.findall(r"\x1b\[(\d*)([ABK])|(\r)|(\n)|([^\x1b\r\n]+)", text):
        n, cmd, cr, nl, chars = tok
        if cmd == "A":
            row -= int(n or 1)
        elif cmd == "B":
            row += int(n or 1)
        elif cmd == "K":
            lines[row] = ""
        elif cr:
            col = 0
        elif nl:
            row, col = row + 1, 0
        if row >= len(lines):
            lines.append("")
        if chars:
            lines[row] = lines[row][:col] + chars + lines[row][col + len(chars):]
            col += len(chars)
    return [x for x in lines if x]


def test_terminal_keeps_one_line_per_layer() -> None:
    out = io.StringIO()
    assert show(EVENTS[:4], out, tty=True) == "Downloading"
    assert screen(out.getvalue()) == ["latest: Pulling from library/busybox",
                                      "a3ed95caeb02: Downloading [====>      ]  12.3MB/48.1MB",
                                      "b4c2d1e0f9a8: Pulling fs layer"]
    out = io.StringIO()
    show(EVENTS, out, tty=True)
    assert screen(out.getvalue()) == ["latest: Pulling from library/busybox", "a3ed95caeb02: Pull complete",
                                      "b4c2d1e0f9a8: Download complete", "Digest: sha256:abc",
                                      "Status: Downloaded newer image for busybox:latest"]


def test_plain_lines_without_a_terminal_and_quiet() -> None:
    out = io.StringIO()
    show(EVENTS, out, tty=False)
    assert "Downloading" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert out.getvalue().splitlines()[-1] == "Status: Downloaded newer image for busybox:latest"
    out = io.StringIO()
    assert show(EVENTS, out, tty=False, quiet=True).startswith("Status: Downloaded")
    assert out.getvalue() == ""


def test_error_in_the_stream() -> None:
    with pytest.raises(ProgressError, match="manifest unknown"):
        show([*EVENTS[:2], {"errorDetail": {"message": "manifest unknown"}, "error": "manifest unknown"}],
             io.StringIO(), tty=True)


def test_build_output_ends_the_redrawing() -> None:
    """A build's stream text is written as it comes; progress lines before it are not redrawn after it."""
    out = io.StringIO()
    show([{"stream": "Step 1/2 : FROM x\n"}, EVENTS[1], EVENTS[3], {"stream": "partial "}, {"stream": "line\n"},
          {**EVENTS[3], "progress": "[==========>]  48.1MB/48.1MB"}], out, tty=True)
    assert screen(out.getvalue()) == ["Step 1/2 : FROM x", "a3ed95caeb02: Downloading [====>      ]  12.3MB/48.1MB",
                                      "partial line", "a3ed95caeb02: Downloading [==========>]  48.1MB/48.1MB"]
