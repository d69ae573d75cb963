"""conmon's k8s-file log: `<RFC3339Nano> stdout|stderr F|P <text>\\n` lines.

P marks a partial line (conmon splits long lines and lines cut by its buffer); the next
entries of the same stream continue it until an F. `read_logs` yields whole lines with their
newline, like Docker's json-file driver, and can follow the file across conmon's rotation
(--log-size-max makes conmon write a new file and rename it over the old path).
"""

from __future__ import annotations

import asyncio
import collections
import os
import struct
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

from dockyard.util.timefmt import parse_rfc3339

STDIN, STDOUT, STDERR = 0, 1, 2
_STREAMS = {b"stdout": STDOUT, b"stderr": STDERR}
POLL_INTERVAL = 0.1


def frame(stream: int, data: bytes) -> bytes:
    """Docker's multiplexed stream frame: [stream, 0, 0, 0, uint32 BE length] + data."""
    return struct.pack(">BxxxI", stream, len(data)) + data


def docker_timestamp(ts: str) -> str:
    """conmon's `...+00:00` → Docker's `...Z` (always 9 fraction digits)."""
    main, _, rest = ts.partition(".")
    n = 0
    while n < len(rest) and rest[n].isdigit():
        n += 1
    digits, tz = rest[:n], rest[n:]
    if tz in ("+00:00", "Z", ""):
        return f"{main}.{digits.ljust(9, '0')[:9]}Z"
    return ts


class _Joiner:
    """Turns raw k8s-file lines into (stream, timestamp, line) joining P continuations."""

    def __init__(self) -> None:
        self.pending: dict[int, tuple[str, bytes]] = {}

    def feed(self, raw: bytes) -> tuple[int, str, bytes] | None:
        parts = raw.split(b" ", 3)
        if len(parts) < 3 or parts[1] not in _STREAMS:
            return None
        ts, stream, tag = parts[0].decode(errors="replace"), _STREAMS[parts[1]], parts[2]
        text = parts[3] if len(parts) == 4 else b""
        first_ts, buf = self.pending.pop(stream, (ts, b""))
        buf += text
        if tag == b"P":
            self.pending[stream] = (first_ts, buf)
            return None
        return stream, first_ts, buf + b"\n"

    def flush(self) -> list[tuple[int, str, bytes]]:
        """Partial lines still held: the output's last bytes when they did not end in a newline
        (`printf x`). They go out as they are, as dockerd's json-file gives them."""
        held = sorted(((ts, stream, buf) for stream, (ts, buf) in self.pending.items()), key=lambda t: t[0])
        self.pending.clear()
        return [(stream, ts, buf) for ts, stream, buf in held if buf]


def parse(lines: Iterable[bytes]) -> Iterator[tuple[int, str, bytes]]:
    j = _Joiner()
    for raw in lines:
        e = j.feed(raw.rstrip(b"\n"))
        if e:
            yield e


def _want(e: tuple[int, str, bytes], stdout: bool, stderr: bool, since: float, until: float) -> bool:
    if (e[0] == STDOUT and not stdout) or (e[0] == STDERR and not stderr):
        return False
    if since or until:
        t = parse_rfc3339(e[1])
        if since and t < since:
            return False
        if until and t > until:
            return False
    return True


def _out(e: tuple[int, str, bytes], timestamps: bool) -> tuple[int, str, bytes]:
    if not timestamps:
        return e  # conmon's own timestamp: nobody reads it, and converting each line costs
    ts = docker_timestamp(e[1])
    return e[0], ts, ts.encode() + b" " + e[2]


Entry = tuple[int, str, bytes]
READ_CHUNK = 1 << 20  # bounded memory for any log size (a tail keeps only its last N entries)


async def read_logs(path: str | os.PathLike[str], stdout: bool = True, stderr: bool = True,
                    since: float = 0, until: float = 0, tail: int = -1, timestamps: bool = False,
                    follow: bool = False, stop: asyncio.Event | None = None) -> AsyncIterator[Entry]:
    """Yield (stream, timestamp, data) for each log line: read_log_batches, one at a time."""
    async for batch in read_log_batches(path, stdout, stderr, since, until, tail, timestamps, follow, stop):
        for e in batch:
            yield e


async def read_log_batches(path: str | os.PathLike[str], stdout: bool = True, stderr: bool = True,
                           since: float = 0, until: float = 0, tail: int = -1, timestamps: bool = False,
                           follow: bool = False, stop: asyncio.Event | None = None
                           ) -> AsyncIterator[list[Entry]]:
    """Lists of (stream, timestamp, data), one per read of the file (the timestamp in Docker's form
    with `timestamps`, else conmon's). With `follow`, keep reading
    new lines until `stop` is set (the container exited), then drain what is left and return.
    `timestamps` prefixes data with the timestamp as `docker logs -t` prints it. Batches, not lines:
    a 100k-line log goes out in a few writes, not 100k."""
    path = Path(path)
    joiner = _Joiner()

    def take(data: bytes, last: bool = False) -> list[Entry]:
        entries = [joiner.feed(raw) for raw in data.split(b"\n") if raw] + (joiner.flush() if last else [])
        return [_out(e, timestamps) for e in entries if e and _want(e, stdout, stderr, since, until)]

    try:
        f = open(path, "rb")  # noqa: SIM115 - kept open across the follow loop
    except FileNotFoundError:
        if not follow:
            return
        f = None
    try:
        buf = b""
        if f is not None:
            kept: collections.deque[Entry] | None = collections.deque(maxlen=tail) if tail >= 0 else None
            while data := await asyncio.to_thread(f.read, READ_CHUNK):
                complete, _, buf = (buf + data).rpartition(b"\n")
                batch = take(complete)
                if kept is not None:
                    kept.extend(batch)
                elif batch:
                    yield batch
            if not follow:
                batch = take(buf, last=True)
                if kept is not None:
                    kept.extend(batch)
                elif batch:
                    yield batch
            if kept:
                yield list(kept)
        if not follow:
            return
        ino = os.fstat(f.fileno()).st_ino if f else None
        while True:
            stopping = stop is not None and stop.is_set()
            if f is None:
                try:
                    f = open(path, "rb")  # noqa: SIM115
                    ino = os.fstat(f.fileno()).st_ino
                except FileNotFoundError:
                    pass
            if f is not None:
                chunk = f.read(READ_CHUNK)
                if chunk:
                    complete, _, buf = (buf + chunk).rpartition(b"\n")
                    batch = take(complete)
                    if batch:
                        yield batch
                    continue
                try:
                    st = os.stat(path)
                    if st.st_ino != ino or st.st_size < f.tell():  # rotated or truncated
                        f.close()
                        f, buf = open(path, "rb"), b""  # noqa: SIM115
                        ino = os.fstat(f.fileno()).st_ino
                        continue
                except FileNotFoundError:
                    pass
            if stopping:
                if batch := take(buf, last=True):
                    yield batch
                return
            if stop is not None:
                try:
                    await asyncio.wait_for(stop.wait(), POLL_INTERVAL)
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(POLL_INTERVAL)
    finally:
        if f is not None:
            f.close()
