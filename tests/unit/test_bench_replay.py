"""bench/benchlib/replay: what the recorder keeps and the replay serves is what the engine sent, byte for byte."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from benchlib.replay import NOT_FOUND, Recorder, Replay  # noqa: E402

PING = b"HTTP/1.1 200 OK\r\nApi-Version: 1.47\r\nContent-Length: 2\r\n\r\n"
LIST = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n[]\n"
EVENTS = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab\n\r\n0\r\n\r\n"


def _engine(path: str) -> socket.socket:
    """A stand-in engine: HEAD /_ping, a list, a finished chunked body, then an events stream it keeps open."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(8)

    def serve(c: socket.socket) -> None:
        buf = b""
        while data := c.recv(65536):
            buf += data
            while b"\r\n\r\n" in buf:
                head, buf = buf.split(b"\r\n\r\n", 1)
                target = head.split(b" ")[1]
                c.sendall({b"/_ping": PING, b"/v1.47/containers/json": LIST, b"/chunked": CHUNKED}.get(target, EVENTS))

    def accept() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv


def _exchange(path: str, *requests: bytes, want: int) -> bytes:
    c = socket.socket(socket.AF_UNIX)
    c.connect(path)
    c.sendall(b"".join(b"GET " + r + b" HTTP/1.1\r\nHost: x\r\n\r\n" if not r.startswith(b"HEAD")
                       else r + b" HTTP/1.1\r\nHost: x\r\n\r\n" for r in requests))
    got = b""
    while len(got) < want:
        got += c.recv(65536)
    c.close()
    return got


def test_a_recorded_exchange_is_replayed_byte_for_byte(tmp_path: Path) -> None:
    srv = _engine(str(tmp_path / "engine.sock"))
    rec = Recorder(str(tmp_path / "engine.sock"), str(tmp_path / "rec.sock"))
    reqs = (b"HEAD /_ping", b"/v1.47/containers/json", b"/chunked", b"/v1.47/events")
    want = len(PING + LIST + CHUNKED + EVENTS)
    assert _exchange(str(tmp_path / "rec.sock"), *reqs, want=want) == PING + LIST + CHUNKED + EVENTS
    table = rec.table()
    srv.close()
    assert table == {b"HEAD /_ping HTTP/1.1": PING, b"GET /v1.47/containers/json HTTP/1.1": LIST,
                     b"GET /chunked HTTP/1.1": CHUNKED, b"GET /v1.47/events HTTP/1.1": EVENTS}
    floor = Replay(table, str(tmp_path / "floor.sock"))
    try:
        assert _exchange(floor.sock, *reqs, want=want) == PING + LIST + CHUNKED + EVENTS
        assert _exchange(floor.sock, b"/nope", want=len(NOT_FOUND)) == NOT_FOUND
    finally:
        floor.stop()
    assert not Path(floor.sock).exists()
