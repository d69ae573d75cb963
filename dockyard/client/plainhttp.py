"""HTTP/1.1 over a plain socket (unix:// and tcp:// without TLS): the part of http.client the client
uses, without importing it. http.client pulls in email.* (header parsing) and ssl, ~25-40 ms of every
CLI command's start-up; TLS and ssh endpoints still go through http.client, imported when used.

Same surface as http.client's: `request(...)`, `getresponse()`, `close()`, `.sock`; the response has
`status`, `getheaders()`, `read()`, `read1(n)` and `will_close`.
"""

from __future__ import annotations

import io

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every command's start-up)
if TYPE_CHECKING:
    import _socket
    import socket
    from collections.abc import Callable, Iterable
    from typing import Any

    Socket = socket.socket | _socket.socket

_BODY_METHODS = ("PATCH", "POST", "PUT")  # http.client sends Content-Length: 0 for these without a body


class PlainHTTPConnection:
    def __init__(self, dial: Callable[[], Socket], timeout: float | None = None,
                 host_header: str = "localhost") -> None:
        self.dial = dial
        self.host_header = host_header
        self.timeout = timeout
        self.sock: Socket | None = None
        self._resp: PlainHTTPResponse | None = None
        self._head = False  # the last request was a HEAD: its answer has no body whatever it says

    def connect(self) -> None:
        sock = self.dial()
        sock.settimeout(self.timeout)
        self.sock = sock

    def request(self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, *,
                encode_chunked: bool = False) -> None:
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        self._head = method.upper() == "HEAD"
        hdrs = {"Host": self.host_header, "Accept-Encoding": "identity", **(headers or {})}
        lower = {k.lower() for k in hdrs}
        if isinstance(body, str):
            body = body.encode("latin-1")
        if "content-length" not in lower and "transfer-encoding" not in lower:
            if isinstance(body, bytes | bytearray):
                hdrs["Content-Length"] = str(len(body))
            elif body is None and method.upper() in _BODY_METHODS:
                hdrs["Content-Length"] = "0"
        head = f"{method} {url} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        if isinstance(body, bytes | bytearray):
            self.sock.sendall(head.encode("latin-1") + body)
            return
        self.sock.sendall(head.encode("latin-1"))
        if body is None:
            return
        for chunk in _blocks(body):
            if not chunk:
                continue
            if isinstance(chunk, str):
                chunk = chunk.encode("latin-1")
            self.sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk) if encode_chunked else chunk)
        if encode_chunked:
            self.sock.sendall(b"0\r\n\r\n")

    def getresponse(self) -> PlainHTTPResponse:
        assert self.sock is not None
        if self._resp is not None:
            self._resp.close()  # the previous answer's reader, on this kept-alive socket
        self._resp = PlainHTTPResponse(io.BufferedReader(_SocketReader(self.sock)), self._head)
        return self._resp

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        if sock is not None:
            sock.close()


class _SocketReader(io.RawIOBase):
    """socket.makefile("rb")'s raw reader for a socket from `_socket` (which has no makefile): reads
    through recv_into; closing it leaves the socket open, as makefile's does."""

    def __init__(self, sock: Socket) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self._sock.recv_into(b)


def _blocks(body: Any) -> Iterable[bytes]:
    if hasattr(body, "read"):  # a file: blocks, as http.client reads it
        while block := body.read(65536):
            yield block
        return
    yield from body


class PlainHTTPResponse:
    def __init__(self, fp: Any, head_request: bool = False) -> None:
        self.fp = fp
        while True:  # skip 1xx interim answers
            line = fp.readline(65537)
            if not line:
                raise ConnectionResetError("Remote end closed connection without response")
            version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
            code, _, self.reason = rest.partition(" ")
            if not version.startswith("HTTP/") or not code.isdigit():
                raise ConnectionError(f"bad status line: {line!r}")
            self.status = int(code)
            self._headers: list[tuple[str, str]] = []
            while True:
                h = fp.readline(65537)
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                self._headers.append((k.strip(), v.strip()))
            if not 100 <= self.status < 200 or self.status == 101:
                break
        get = {k.lower(): v for k, v in self._headers}.get
        self.chunked = "chunked" in (get("transfer-encoding") or "").lower()
        length = get("content-length")
        self.length: int | None = int(length) if length and length.isdigit() and not self.chunked else None
        if head_request or self.status in (204, 304) or 100 <= self.status < 200:
            self.length, self.chunked = 0, False
        self.will_close = (version == "HTTP/1.0" or "close" in (get("connection") or "").lower()
                           or (self.length is None and not self.chunked))
        self._chunk_left = 0  # bytes left in the current chunk
        self._done = self.length == 0

    def getheaders(self) -> list[tuple[str, str]]:
        return list(self._headers)

    def read1(self, n: int = 65536) -> bytes:
        """Up to n bytes, at most one read from the socket; b"" at the end of the body."""
        if self._done:
            return b""
        if self.chunked:
            if self._chunk_left == 0:
                size = self.fp.readline(65537).split(b";", 1)[0].strip()
                if not size:
                    raise ConnectionError("connection closed in the middle of a chunked body")
                self._chunk_left = int(size, 16)
                if self._chunk_left == 0:
                    while self.fp.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    self._done = True
                    return b""
            data = self.fp.read1(min(n, self._chunk_left))
            if not data:
                raise ConnectionError("connection closed in the middle of a chunked body")
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                self.fp.readline(3)  # the CRLF after the chunk
            return bytes(data)
        want = n if self.length is None else min(n, self.length)
        data = self.fp.read1(want)
        if self.length is not None:
            if not data:
                raise ConnectionError(f"connection closed with {self.length} bytes of the body unread")
            self.length -= len(data)
            self._done = self.length == 0
        elif not data:
            self._done = True
        return bytes(data)

    def read(self) -> bytes:
        parts = []
        while data := self.read1(1 << 20):
            parts.append(data)
        return b"".join(parts)

    def close(self) -> None:
        self.fp.close()
