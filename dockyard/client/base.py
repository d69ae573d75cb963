"""Request machinery: version negotiation, JSON calls, ndjson/raw/multiplexed streams, hijack."""

from __future__ import annotations

import _socket  # not socket, nor urllib.parse: each costs ~3 ms of every command's start-up
import json
import struct
import sys

from dockyard.client.transport import Host, open_connection, open_socket, parse_host, tls_context_from_env

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every command's start-up)
if TYPE_CHECKING:  # ssl and http.client are imported only by TLS and ssh endpoints (start-up time)
    import socket
    import ssl
    from collections.abc import Iterable, Iterator
    from typing import Any

    from dockyard.client.transport import Connection

MAX_API_VERSION = "1.47"
MIN_API_VERSION = "1.24"

STDIN, STDOUT, STDERR = 0, 1, 2


class APIError(Exception):
    """An error answer from the daemon; `message` is the daemon's own text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404


class ConnectError(Exception):
    """The daemon could not be reached."""


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


def _params(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    items: list[tuple[str, str]] = []
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, bool):
            v = "1" if v else "0"
        elif isinstance(v, dict):
            v = json.dumps(v)
        if isinstance(v, list):
            items.extend((k, str(x)) for x in v)
        else:
            items.append((k, str(v)))
    return "?" + "&".join(f"{_quote(k, ' ')}={_quote(v, ' ')}".replace(" ", "+") for k, v in items) if items else ""


def _error_message(status: int, body: bytes) -> str:
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and "message" in doc:
            return str(doc["message"])
    except ValueError:
        pass
    text = body.decode(errors="replace").strip()
    if text:
        return text
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def q(s: str) -> str:
    """Quote a path segment (names may hold '/' for images: keep it)."""
    return _quote(s, "/:@")


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def _quote(s: str, safe: str) -> str:
    """urllib.parse.quote(s, safe): UTF-8, %XX for every byte but RFC 3986's unreserved and `safe`."""
    ok = _UNRESERVED.union(safe.encode())
    raw = s.encode()
    if all(b in ok for b in raw):
        return s
    return "".join(chr(b) if b in ok else f"%{b:02X}" for b in raw)


class Stream:
    """An open streaming response; iterate chunks, lines, JSON objects or log frames."""

    def __init__(self, conn: Connection, resp: Any) -> None:
        self.conn = conn
        self.resp = resp
        self.headers = {k.lower(): v for k, v in resp.getheaders()}

    def chunks(self, size: int = 65536) -> Iterator[bytes]:
        while True:
            data = self.resp.read1(size)
            if not data:
                return
            yield data

    def lines(self) -> Iterator[bytes]:
        buf = b""
        for data in self.chunks():
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield line
        if buf:
            yield buf

    def json(self) -> Iterator[dict[str, Any]]:
        for line in self.lines():
            if line.strip():
                yield json.loads(line)

    def frames(self, tty: bool = False) -> Iterator[tuple[int, bytes]]:
        """(stream, data) pairs: demuxed 8-byte frames, or all stdout when the stream is raw."""
        multiplexed = not tty and self.headers.get("content-type") != "application/vnd.docker.raw-stream"
        if not multiplexed:
            for data in self.chunks():
                yield STDOUT, data
            return
        yield from demux(self.chunks())

    def close(self) -> None:
        self.conn.close()

    def interrupt(self) -> None:
        """Wake a thread blocked reading this stream (close() alone does not interrupt a recv in progress);
        any socket of ours is an _socket.socket (socket.socket and ssl's are subclasses)."""
        sock = getattr(self.conn, "sock", None)
        if isinstance(sock, _socket.socket):
            try:
                sock.shutdown(_socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self.close()
        except OSError:
            pass

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PendingStream:
    """A request sent (BaseClient.stream_sent) whose answer is not read yet."""

    def __init__(self, client: BaseClient, conn: Connection) -> None:
        self.client = client
        self.conn = conn

    def stream(self) -> Stream:
        """Its answer's status and headers (an error answer raised, as stream() does); the body left to read."""
        try:
            resp = self.conn.getresponse()
        except OSError as e:
            self.conn.close()
            raise ConnectError(self.client._connect_message(e)) from e
        if resp.status >= 400:
            raw = resp.read()
            self.conn.close()
            raise APIError(resp.status, _error_message(resp.status, raw))
        return Stream(self.conn, resp)

    def close(self) -> None:
        self.conn.close()


def demux(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """Docker's multiplexed stream: [stream, 0, 0, 0, size(be32)] then size bytes."""
    buf = b""
    for data in chunks:
        buf += data
        while len(buf) >= 8:
            kind = buf[0]
            (size,) = struct.unpack(">I", buf[4:8])
            if len(buf) < 8 + size:
                break
            yield kind, buf[8 : 8 + size]
            buf = buf[8 + size :]


class Hijacked:
    """A raw bidirectional socket after a 101/200 answer to an attach or exec start."""

    def __init__(self, sock: socket.socket | _socket.socket, initial: bytes, content_type: str) -> None:
        self.sock = sock
        self.initial = initial
        self.content_type = content_type

    def recv(self, size: int = 65536) -> bytes:
        if self.initial:
            data, self.initial = self.initial, b""
            return data
        return self.sock.recv(size)

    def chunks(self) -> Iterator[bytes]:
        while True:
            try:
                data = self.recv()
            except OSError:
                return
            if not data:
                return
            yield data

    def frames(self, tty: bool) -> Iterator[tuple[int, bytes]]:
        if tty:
            for data in self.chunks():
                yield STDOUT, data
            return
        yield from demux(self.chunks())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        """Half-close: the daemon sees stdin's end but keeps sending output."""
        try:
            ssl = sys.modules.get("ssl")  # not imported: not a TLS socket
            if ssl is not None and isinstance(self.sock, ssl.SSLSocket):
                return
            self.sock.shutdown(_socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class BaseClient:
    def __init__(
        self,
        host: str | None = None,
        tls: bool | ssl.SSLContext | None = None,
        api_version: str | None = None,
        timeout: float | None = None,
    ) -> None:
        if host is None and tls is None:
            # No explicit endpoint: docker's resolution ($DOCKER_HOST, $DOCKER_CONTEXT, current context).
            from dockyard.client.contexts import resolve

            ep = resolve()
            host, tls = ep.host, ep.tls.ssl_context() if ep.tls else False
        self.tls = tls_context_from_env(tls)
        self.host: Host = parse_host(host, tls=self.tls is not None)
        self.timeout = timeout
        self._api_version = None if api_version in (None, "auto") else api_version
        self._idle: Connection | None = None
        self.server_headers: dict[str, str] = {}
        self.extra_headers: dict[str, str] = {}  # sent on every request (dockyard --explain's trace token)

    # -- version negotiation -------------------------------------------------
    @property
    def api_version(self) -> str:
        if self._api_version is None:
            self._api_version = MAX_API_VERSION
            try:
                _, headers, _ = self._raw("GET", "/_ping")
            except APIError:
                headers = {}
            server = headers.get("api-version")
            if server and _vtuple(server) < _vtuple(MAX_API_VERSION):
                self._api_version = server
        return self._api_version

    def ping(self) -> str:
        _, _, body = self._raw("GET", "/_ping")
        return body.decode()

    # -- plain calls ---------------------------------------------------------
    def _connect(self) -> Connection:
        conn, self._idle = self._idle, None
        return conn or open_connection(self.host, self.tls, self.timeout)

    def _send(
        self,
        method: str,
        url: str,
        body: bytes | Iterable[bytes] | None,
        headers: dict[str, str],
        stream_timeout: bool = True,
    ) -> tuple[Connection, Any]:
        if self.extra_headers:
            headers = {**self.extra_headers, **headers}
        for attempt in (0, 1):
            reused = self._idle is not None
            conn = self._connect() if stream_timeout else open_connection(self.host, self.tls, None)
            try:
                if body is not None and not isinstance(body, bytes | bytearray):
                    headers = {**headers, "Transfer-Encoding": "chunked"}
                    conn.request(method, url, body=body, headers=headers, encode_chunked=True)
                else:
                    conn.request(method, url, body=body, headers=headers)
                return conn, conn.getresponse()
            except ConnectionError as e:  # http.client's RemoteDisconnected is one, BrokenPipeError too
                conn.close()
                if reused and attempt == 0 and (body is None or isinstance(body, bytes)):
                    continue  # a kept-alive connection the daemon had closed
                raise ConnectError(self._connect_message(e)) from e
            except (FileNotFoundError, OSError) as e:
                conn.close()
                raise ConnectError(self._connect_message(e)) from e
        raise AssertionError("unreachable")

    def _connect_message(self, e: Exception) -> str:
        if self.host.scheme == "unix":
            return (
                f"Cannot connect to the Docker daemon at {self.host.url}. Is the docker daemon running?"
            )
        if isinstance(e, ConnectionRefusedError | FileNotFoundError):
            return f"Cannot connect to the Docker daemon at {self.host.url}. Is the docker daemon running?"
        return f"Cannot connect to the Docker daemon at {self.host.url}: {e}"

    def _url(self, path: str, params: dict[str, Any] | None = None, versioned: bool = True) -> str:
        prefix = f"/v{self.api_version}" if versioned else ""
        return prefix + path + _params(params)

    def _raw(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        versioned: bool = False,
    ) -> tuple[int, dict[str, str], bytes]:
        url = self._url(path, params, versioned)
        conn, resp = self._send(method, url, body, dict(headers or {}))
        data = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if path == "/_ping":
            self.server_headers = hdrs
        if resp.will_close:
            conn.close()
        else:
            self._idle = conn
        if resp.status >= 400:
            raise APIError(resp.status, _error_message(resp.status, data))
        return resp.status, hdrs, data

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        data: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One call; returns parsed JSON (or None for an empty body, text for non-JSON)."""
        body, hdrs = _body(json_body, data, headers)
        _, _, raw = self._raw(method, path, params, body, hdrs, versioned=True)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params)

    def post(self, path: str, params: dict[str, Any] | None = None, json_body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, params, json_body, **kw)

    def put(self, path: str, params: dict[str, Any] | None = None, data: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, params, data=data, **kw)

    def delete(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("DELETE", path, params)

    def head(self, path: str, params: dict[str, Any] | None = None) -> dict[str, str]:
        _, hdrs, _ = self._raw("HEAD", path, params, versioned=True)
        return hdrs

    # -- streams -------------------------------------------------------------
    def stream(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        data: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Stream:
        """A response left open for reading (ndjson progress, logs, events, tar archives)."""
        body, hdrs = _body(json_body, data, headers)
        conn, resp = self._send(method, self._url(path, params), body, hdrs, stream_timeout=False)
        if resp.status >= 400:
            raw = resp.read()
            conn.close()
            raise APIError(resp.status, _error_message(resp.status, raw))
        return Stream(conn, resp)

    def stream_sent(self, method: str, path: str, params: dict[str, Any] | None = None) -> PendingStream:
        """A bodiless request sent now on a connection of its own, its answer read later (`.stream()`):
        another request can go out meanwhile (`run` sends the wait beside the attach, as docker's CLI)."""
        conn = open_connection(self.host, self.tls, None)
        try:
            conn.request(method, self._url(path, params), body=None, headers=dict(self.extra_headers))
        except OSError as e:
            conn.close()
            raise ConnectError(self._connect_message(e)) from e
        return PendingStream(self, conn)

    def hijack(
        self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None
    ) -> Hijacked:
        """Send the request with `Upgrade: tcp` on a plain socket and give back the raw socket."""
        url = self._url(path, params)
        payload = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {url} HTTP/1.1\r\nHost: docker\r\nUser-Agent: dockyard\r\n"
            "Connection: Upgrade\r\nUpgrade: tcp\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in self.extra_headers.items()) +
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        try:
            sock = open_socket(self.host, self.tls)
        except OSError as e:
            raise ConnectError(self._connect_message(e)) from e
        sock.sendall(head.encode() + payload)
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            if not data:
                sock.close()
                raise APIError(500, "connection closed before the daemon answered")
            buf += data
        header, rest = buf.split(b"\r\n\r\n", 1)
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if status >= 400:
            length = int(hdrs.get("content-length", "-1"))
            while length < 0 or len(rest) < length:
                data = sock.recv(65536)
                if not data:
                    break
                rest += data
            sock.close()
            raise APIError(status, _error_message(status, rest))
        return Hijacked(sock, rest, hdrs.get("content-type", ""))

    def close(self) -> None:
        if self._idle is not None:
            self._idle.close()
            self._idle = None


def _body(json_body: Any, data: bytes | Iterable[bytes] | None,
          headers: dict[str, str] | None) -> tuple[bytes | Iterable[bytes] | None, dict[str, str]]:
    """The request body and headers: JSON when json_body is given (bytes: encoded already, as the
    wire structs are), else the raw data."""
    hdrs = dict(headers or {})
    if json_body is None:
        return data, hdrs
    hdrs["Content-Type"] = "application/json"
    return (json_body if isinstance(json_body, bytes) else json.dumps(json_body).encode()), hdrs
