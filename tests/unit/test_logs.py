"""k8s-file log reader and Docker's stream framing."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from dockyard.runtime.logs import frame, parse, read_logs

LOG = (
    b"2024-01-02T03:04:05.000000001+00:00 stdout F one\n"
    b"2024-01-02T03:04:06.000000000+00:00 stderr P par\n"
    b"2024-01-02T03:04:06.500000000+00:00 stdout F two\n"
    b"2024-01-02T03:04:07.000000000+00:00 stderr F tial\n"
    b"2024-01-02T03:04:08.000000000+00:00 stdout F \n"
)


def collect(path: Path, **kw: object) -> list[tuple[int, str, bytes]]:
    async def go() -> list[tuple[int, str, bytes]]:
        return [e async for e in read_logs(path, **kw)]  # type: ignore[arg-type]
    return asyncio.run(go())


def test_frame() -> None:
    assert frame(1, b"hi") == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
    assert frame(2, b"x" * 300)[:8] == b"\x02\x00\x00\x00\x00\x00\x01\x2c"


def test_parse_joins_partials() -> None:
    entries = list(parse(LOG.splitlines(keepends=True)))
    assert [(s, d) for s, _, d in entries] == [(1, b"one\n"), (1, b"two\n"), (2, b"partial\n"), (1, b"\n")]
    assert entries[2][1].startswith("2024-01-02T03:04:06")  # a joined line keeps its first timestamp


def test_read_filters(tmp_path: Path) -> None:
    p = tmp_path / "ctr.log"
    p.write_bytes(LOG)
    assert [d for _, _, d in collect(p, stderr=False)] == [b"one\n", b"two\n", b"\n"]
    assert [d for _, _, d in collect(p, tail=2)] == [b"partial\n", b"\n"]
    assert collect(p, tail=0) == []
    since = 1704164646.2  # 2024-01-02T03:04:06.2Z
    assert [d for _, _, d in collect(p, since=since, until=since + 1)] == [b"two\n"]
    ts = collect(p, timestamps=True)[0]
    assert ts[1] == "2024-01-02T03:04:05.000000001Z" and ts[2] == b"2024-01-02T03:04:05.000000001Z one\n"
    assert collect(tmp_path / "missing.log") == []


def test_follow_rotation_and_stop(tmp_path: Path) -> None:
    p = tmp_path / "ctr.log"
    p.write_bytes(b"2024-01-02T03:04:05.0+00:00 stdout F a\n")

    async def go() -> list[bytes]:
        stop = asyncio.Event()
        got: list[bytes] = []

        async def reader() -> None:
            async for _, _, d in read_logs(p, follow=True, stop=stop):
                got.append(d)

        task = asyncio.create_task(reader())
        while got != [b"a\n"]:
            await asyncio.sleep(0.01)
        with open(p, "ab") as f:
            f.write(b"2024-01-02T03:04:06.0+00:00 stdout P b")
            f.flush()
            f.write(b"1\n2024-01-02T03:04:06.0+00:00 stdout F b2\n")
        while len(got) < 2:
            await asyncio.sleep(0.01)
        # conmon's rotation: a new file renamed over the old path
        tmp = tmp_path / "ctr.log.tmp"
        tmp.write_bytes(b"2024-01-02T03:04:07.0+00:00 stderr F c\n")
        os.rename(tmp, p)
        while len(got) < 3:
            await asyncio.sleep(0.01)
        with open(p, "ab") as f:
            f.write(b"2024-01-02T03:04:08.0+00:00 stdout F last\n")
        stop.set()
        await asyncio.wait_for(task, 5)
        return got

    assert asyncio.run(go()) == [b"a\n", b"b1b2\n", b"c\n", b"last\n"]
