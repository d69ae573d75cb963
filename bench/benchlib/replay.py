"""The docker CLI's floor for a command: the same CLI against a stand-in API server that answers the
bytes a real engine answered, with no engine behind it (bench/scale --floor-runs).

`Recorder` is a unix-socket proxy in front of an engine: the CLI commands run through it, and it keeps each
request line with the whole response the engine gave (head and body; for a stream that was still open at
the end, what had come). `Replay` serves such a table from a subprocess of its own, so its CPU is its own:
each request head gets the recorded response for its request line, at once. A stream (no length, no last
chunk) is sent as far as it was recorded and the connection then waits for the client to close it, as the
events stream of `docker stats` does.

  python bench/benchlib/replay.py TABLE SOCKET     # what Replay runs: serve TABLE (a pickle) on SOCKET
"""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

Table = dict[bytes, bytes]  # request line -> the whole response (head + body) the engine sent
NOT_FOUND = (b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 38\r\n\r\n"
             b'{"message":"not in the replay table"}\n')


def _split_requests(data: bytes) -> list[tuple[bytes, bool]]:
    """(request line, is HEAD) of each request a client sent on one connection (GET/HEAD, no bodies)."""
    out = []
    for head in data.split(b"\r\n\r\n")[:-1]:
        line = head.split(b"\r\n", 1)[0]
        out.append((line, line.startswith(b"HEAD ")))
    return out


def _split_responses(data: bytes, heads: list[bool]) -> list[bytes]:
    """The responses on one connection, one per request (`heads`: whether it was a HEAD, which has no body).
    The last one may be a stream cut off when the recording stopped: it is kept as it is."""
    out, pos = [], 0
    for is_head in heads:
        if pos >= len(data):
            break
        end = data.index(b"\r\n\r\n", pos) + 4
        fields = {ln.split(b":", 1)[0].strip().lower(): ln.split(b":", 1)[1].strip()
                  for ln in data[pos:end - 4].split(b"\r\n")[1:] if b":" in ln}
        if is_head:
            pass
        elif b"content-length" in fields:
            end += int(fields[b"content-length"])
        elif fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            while True:  # to the last chunk, or to the end of what was recorded
                nl = data.find(b"\r\n", end)
                if nl < 0:
                    end = len(data)
                    break
                size = int(data[end:nl].split(b";")[0], 16)
                end = nl + 2 + size + 2
                if size == 0 or end >= len(data):
                    end = min(end, len(data))
                    break
        else:
            end = len(data)
        out.append(data[pos:end])
        pos = end
    return out


class Recorder:
    """A unix-socket proxy to `upstream` (a socket path) on `listen`; `table()` once the clients are done."""

    def __init__(self, upstream: str, listen: str) -> None:
        self.upstream, self.listen = upstream, listen
        self._conns: list[tuple[bytearray, bytearray]] = []
        self.failed = 0  # connections the engine refused
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def host(self) -> str:
        return f"unix://{self.listen}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_unix_server(self._handle, self.listen, backlog=1024))
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        sent, got = bytearray(), bytearray()
        self._conns.append((sent, got))
        try:
            ur, uw = await asyncio.open_unix_connection(self.upstream)
        except OSError:
            self.failed += 1
            w.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bytearray) -> None:
            try:
                while b := await src.read(65536):
                    keep += b
                    dst.write(b)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(r, uw, sent), pipe(ur, w, got))

    def table(self) -> Table:
        """Every request line seen, with its response; stops the proxy."""
        time.sleep(0.2)  # the last responses' bytes through the proxy
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        os.unlink(self.listen)
        table: Table = {}
        for sent, got in self._conns:
            reqs = _split_requests(bytes(sent))
            for (line, _), resp in zip(reqs, _split_responses(bytes(got), [h for _, h in reqs]), strict=False):
                table.setdefault(line, resp)
        return table


class Replay:
    """A subprocess serving `table` on a unix socket at `sock`."""

    def __init__(self, table: Table, sock: str) -> None:
        self.sock = sock
        path = Path(sock + ".table")
        path.write_bytes(pickle.dumps(table))
        self.proc = subprocess.Popen([sys.executable, __file__, str(path), sock])
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the replay server did not start")
            time.sleep(0.01)
        self.pid = self.proc.pid
        self.host = f"unix://{sock}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        for p in (self.sock, self.sock + ".table"):
            Path(p).unlink(missing_ok=True)


class _Serve(asyncio.Protocol):
    table: Table = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (i := self.buf.find(b"\r\n\r\n")) >= 0:
            line = self.buf[:self.buf.find(b"\r\n")]
            self.buf = self.buf[i + 4:]
            self.t.write(self.table.get(line, NOT_FOUND))


def _serve(table_path: str, sock: str) -> None:
    _Serve.table = pickle.loads(Path(table_path).read_bytes())
    loop = asyncio.new_event_loop()
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock + ".new")
    os.rename(sock + ".new", sock)  # the socket appears when it is bound
    s.listen(1024)
    loop.run_until_complete(loop.create_unix_server(_Serve, sock=s, backlog=1024))
    loop.run_forever()


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])
