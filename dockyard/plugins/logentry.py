"""The log plugin FIFO's frames: a 4-byte big-endian length, then a protobuf `LogEntry`
(moby api/types/plugins/logdriver/entry.proto):

    message LogEntry { string source = 1; int64 time_nano = 2; bytes line = 3; bool partial = 4;
                       PartialLogEntryMetadata partial_log_metadata = 5; }

Four scalar fields need only protobuf's varint and length-delimited wire types, written here by
hand (~40 lines) rather than a protobuf runtime and generated code for one message. Unknown fields
are skipped when reading, as protobuf does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

MAX_FRAME = 1 << 20  # moby's binary decoder refuses larger messages (1e6 bytes); be as strict


@dataclass
class LogEntry:
    source: str = ""
    time_nano: int = 0
    line: bytes = b""
    partial: bool = False


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 goes as its two's complement, ten bytes when negative
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode(e: LogEntry) -> bytes:
    """One frame: length prefix and the message (proto3: zero values are left out)."""
    msg = bytearray()
    if e.source:
        src = e.source.encode()
        msg += b"\x0a" + _varint(len(src)) + src
    if e.time_nano:
        msg += b"\x10" + _varint(e.time_nano)
    if e.line:
        msg += b"\x1a" + _varint(len(e.line)) + e.line
    if e.partial:
        msg += b"\x20\x01"
    return struct.pack(">I", len(msg)) + bytes(msg)


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def decode_message(buf: bytes) -> LogEntry:
    e = LogEntry()
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(buf, i)
            if field == 2:
                e.time_nano = v - (1 << 64) if v >= 1 << 63 else v
            elif field == 4:
                e.partial = bool(v)
        elif wire == 2:
            n, i = _read_varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated field")
            data = buf[i:i + n]
            i += n
            if field == 1:
                e.source = data.decode(errors="replace")
            elif field == 3:
                e.line = bytes(data)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return e


class FrameReader:
    """Feed bytes as they come, take the whole entries out."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> Iterator[LogEntry]:
        self.buf += data
        while len(self.buf) >= 4:
            (n,) = struct.unpack(">I", self.buf[:4])
            if n > MAX_FRAME:
                raise ValueError(f"log entry of {n} bytes is larger than {MAX_FRAME}")
            if len(self.buf) < 4 + n:
                return
            msg, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
            yield decode_message(msg)
