"""A test logging plugin (LogDriver.*): keeps each container's lines in --root/<container id>.jsonl.

StartLogging opens the daemon's FIFO and reads length-prefixed protobuf LogEntry messages from it
until the daemon closes it; ReadLogs sends the kept lines back in the same framing (`--no-read`:
Capabilities say it cannot read). The protobuf wire format is decoded here on its own (a generic
field walk), not with Dockyard's code, so the test checks one implementation against another.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
from pathlib import Path
from typing import Any

import pluginhttp


def fields(msg: bytes) -> dict[int, Any]:
    """Every field of a protobuf message: {number: int (varint) | bytes (length-delimited)}."""
    out: dict[int, Any] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        value, shift = 0, 0
        while True:
            byte = msg[pos]
            pos += 1
            value += (byte & 127) << shift
            shift += 7
            if byte < 128:
                return value

    while pos < len(msg):
        tag = varint()
        if tag & 7 == 0:
            out[tag >> 3] = varint()
        elif tag & 7 == 2:
            size = varint()
            out[tag >> 3] = msg[pos:pos + size]
            pos += size
        else:
            raise ValueError(f"wire type {tag & 7}")
    return out


def message(source: str, time_nano: int, line: bytes, partial: bool) -> bytes:
    def varint(v: int) -> bytes:
        b = b""
        while v > 127:
            b += bytes([(v & 127) | 128])
            v >>= 7
        return b + bytes([v])

    body = b"\x0a" + varint(len(source)) + source.encode() + b"\x10" + varint(time_nano)
    body += b"\x1a" + varint(len(line)) + line + (b"\x20\x01" if partial else b"")
    return struct.pack(">I", len(body)) + body


def main() -> None:
    a = pluginhttp.args("test logging plugin")
    can_read = "--no-read" not in sys.argv
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)

    def pump(fifo: str, cid: str) -> None:
        with open(fifo, "rb") as f, open(root / f"{cid}.jsonl", "a") as out:
            while head := f.read(4):
                (n,) = struct.unpack(">I", head)
                fl = fields(f.read(n))
                out.write(json.dumps({"source": fl.get(1, b"").decode(), "time_nano": fl.get(2, 0),
                                      "line": fl.get(3, b"").decode(), "partial": bool(fl.get(4, 0))}) + "\n")
                out.flush()

    def start(b: Any) -> dict[str, Any]:
        (root / f"{b['Info']['ContainerID']}.info.json").write_text(json.dumps(b["Info"]))
        threading.Thread(target=pump, args=(b["File"], b["Info"]["ContainerID"]), daemon=True).start()
        return {"Err": ""}

    def read_logs(b: Any, wfile: Any) -> None:
        path = root / f"{b['Info']['ContainerID']}.jsonl"
        entries = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        tail = int(b["Config"].get("Tail", -1))
        if tail >= 0:
            entries = entries[len(entries) - tail:] if tail else []
        for e in entries:
            wfile.write(message(e["source"], e["time_nano"], e["line"].encode(), e["partial"]))
        wfile.flush()

    handlers = {
        "/LogDriver.StartLogging": start,
        "/LogDriver.StopLogging": lambda _b: {"Err": ""},
        "/LogDriver.Capabilities": lambda _b: {"Cap": {"ReadLogs": can_read}},
    }
    pluginhttp.serve(a, ["LogDriver"], handlers, streams={"/LogDriver.ReadLogs": read_logs} if can_read else {})


if __name__ == "__main__":
    os.umask(0o077)
    main()
