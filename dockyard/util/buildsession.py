"""The build session's wire format: Dockyard's small stand-in for BuildKit's gRPC session, so a
daemon on another host can reach the client's ssh agent (`RUN --mount=type=ssh`).

The CLI opens `POST /dockyard/build/session?id=ID&ssh=ID1,ID2` with `Upgrade: tcp` (101, then a raw
socket, as attach), then sends its build with the `X-Dockyard-Build-Session: ID` header. On the raw
socket both sides send frames: a 9-byte head (kind, stream, payload length; big endian) and the
payload. The daemon opens a stream for each connection a RUN step makes to its agent socket (OPEN,
payload: the ssh id); bytes go both ways as DATA; CLOSE ends one side's writing (both sides' CLOSE,
or the session's end, ends the stream). The client answers an OPEN of an id it does not hold with a
CLOSE at once.
"""

from __future__ import annotations

import struct

OPEN, DATA, CLOSE = 1, 2, 3
HEAD = struct.Struct(">BII")
MAX_PAYLOAD = 1 << 20  # agent messages are at most 256 KiB (OpenSSH's limit); DATA is chunked below this

PATH = "/dockyard/build/session"
HEADER = "X-Dockyard-Build-Session"
CONTENT_TYPE = "application/vnd.dockyard.build-session"


def frame(kind: int, stream: int, payload: bytes = b"") -> bytes:
    return HEAD.pack(kind, stream, len(payload)) + payload


def parse_head(head: bytes) -> tuple[int, int, int]:
    """(kind, stream, length) of a frame head; ValueError for what no peer of ours sends."""
    kind, stream, length = HEAD.unpack(head)
    if kind not in (OPEN, DATA, CLOSE) or length > MAX_PAYLOAD:
        raise ValueError(f"bad build session frame (kind {kind}, {length} bytes)")
    return kind, stream, length
