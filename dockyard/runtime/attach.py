"""Client side of conmon's attach socket (SOCK_SEQPACKET).

Each packet conmon sends is one frame: a stream byte (conmon 2.1: 2 stdout, 3 stderr) then the data;
we translate to Docker's 1 stdout / 2 stderr.
Packets we send are written to the container's stdin; shutting down our write side makes
conmon close the container's stdin (unless conmon runs with --leave-stdin-open).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

STDOUT, STDERR = 1, 2
# conmon tags packets with its pipe enum (1 stdin, 2 stdout, 3 stderr); we hand out Docker's numbers.
_CONMON_STREAMS = {2: STDOUT, 3: STDERR}
_MAX_PACKET = 65536
_STDIN_CHUNK = 4096  # conmon reads packets into an 8 KiB buffer; stay well below


def connect_seqpacket(path: str | os.PathLike[str]) -> socket.socket:
    """Connect to a unix seqpacket socket; long paths go through /proc/self/fd (108-byte sun_path)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    path = Path(path)
    try:
        if len(os.fsencode(str(path))) < 100:
            sock.connect(str(path))
        else:
            dfd = os.open(path.parent, os.O_PATH | os.O_CLOEXEC)
            try:
                sock.connect(f"/proc/self/fd/{dfd}/{path.name}")
            finally:
                os.close(dfd)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class AttachSocket:
    """One attach connection. `recv()` gives (stream, data) frames; None at EOF (conmon exited)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._closed = False

    async def recv(self) -> tuple[int, bytes] | None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                pkt = await loop.sock_recv(self.sock, _MAX_PACKET)
            except (ConnectionResetError, OSError):
                return None
            if not pkt:
                return None
            if len(pkt) > 1 and pkt[0] in _CONMON_STREAMS:
                return _CONMON_STREAMS[pkt[0]], pkt[1:]

    async def send(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        for i in range(0, len(data), _STDIN_CHUNK):
            await loop.sock_sendall(self.sock, data[i:i + _STDIN_CHUNK])

    def close_stdin(self) -> None:
        """Half-close: conmon sees EOF on our side and closes the container's stdin."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.sock.close()

    async def frames(self) -> AsyncIterator[tuple[int, bytes]]:
        while True:
            f = await self.recv()
            if f is None:
                return
            yield f

    async def __aenter__(self) -> AttachSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


async def frames(att: AttachSocket) -> AsyncIterator[tuple[int, bytes]]:
    """conmon frames → (stream, bytes) until conmon closes the socket."""
    async for f in att.frames():
        yield f


async def pump_stdin(att: AttachSocket, reader: asyncio.StreamReader) -> None:
    """Copy a client stream into the container's stdin, then half-close."""
    try:
        while True:
            chunk = await reader.read(_STDIN_CHUNK)
            if not chunk:
                break
            await att.send(chunk)
    finally:
        att.close_stdin()
