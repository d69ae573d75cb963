"""The client's plain-socket HTTP/1.1 (unix:// and tcp:// without TLS) against the stdlib's HTTP server
on a unix socket: every way a body can be framed, kept-alive reuse, HEAD, and chunked uploads."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from dockyard.client.plainhttp import PlainHTTPConnection


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def address_string(self) -> str:
        return "unix"

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding") == "chunked":
            data = b""
            while size := int(self.rfile.readline().strip(), 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%b\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/close":  # no length: the body runs to the end of the connection
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until close")
            self.close_connection = True
        else:
            body = f"path={self.path} host={self.headers['Host']}".encode()
            self.send_response(404 if self.path == "/missing" else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "1234")  # what a GET would carry; a HEAD answer has no body
        self.send_header("X-Stat", "yes")
        self.end_headers()

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        out = f"{self.headers.get('Content-Length')}|{self.headers.get('Transfer-Encoding')}|".encode() + body
        self.send_response(201)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, list[socket.socket]]]:
    path = str(tmp_path / "s.sock")
    srv = Server(path, Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield path, []
    srv.shutdown()
    srv.server_close()
    thread.join()


def connection(server: tuple[str, list[socket.socket]]) -> PlainHTTPConnection:
    path, dialled = server

    def dial() -> socket.socket:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        dialled.append(s)
        return s

    return PlainHTTPConnection(dial, timeout=10)


def test_lengths_chunks_and_keep_alive(server: tuple[str, list[socket.socket]]) -> None:
    conn = connection(server)
    conn.request("GET", "/a?x=1")
    resp = conn.getresponse()
    assert (resp.status, resp.read(), resp.will_close) == (200, b"path=/a?x=1 host=localhost", False)
    conn.request("GET", "/chunked")
    resp = conn.getresponse()
    assert ("Transfer-Encoding", "chunked") in resp.getheaders()
    parts = []
    while data := resp.read1(4):  # a chunk read in pieces, never past its end
        assert len(data) <= 4
        parts.append(data)
    assert b"".join(parts) == b"hello chunked world"
    conn.request("HEAD", "/stat")
    resp = conn.getresponse()
    assert (resp.status, dict(resp.getheaders())["X-Stat"], resp.read()) == (200, "yes", b"")
    conn.request("GET", "/missing")
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (404, b"path=/missing host=localhost")
    assert len(server[1]) == 1  # all four on one connection
    conn.close()


def test_body_to_the_end_of_the_connection(server: tuple[str, list[socket.socket]]) -> None:
    conn = connection(server)
    conn.request("GET", "/close")
    resp = conn.getresponse()
    assert (resp.read(), resp.will_close) == (b"until close", True)
    conn.close()


def test_uploads(server: tuple[str, list[socket.socket]], tmp_path: Path) -> None:
    conn = connection(server)
    conn.request("POST", "/empty")
    assert conn.getresponse().read() == b"0|None|"  # as http.client: Content-Length: 0 on a bodiless POST
    conn.request("POST", "/bytes", body=b"abc", headers={"Content-Type": "application/json"})
    assert conn.getresponse().read() == b"3|None|abc"
    conn.request("POST", "/gen", body=iter([b"ab", b"", b"cd"]), headers={"Transfer-Encoding": "chunked"},
                 encode_chunked=True)
    assert conn.getresponse().read() == b"None|chunked|abcd"
    f = tmp_path / "f"
    f.write_bytes(b"x" * 200_000)
    with f.open("rb") as fh:
        conn.request("POST", "/file", body=fh, headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
        assert conn.getresponse().read() == b"None|chunked|" + b"x" * 200_000
    assert len(server[1]) == 1
    conn.close()


def test_a_closed_connection_before_any_answer(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sock")
    lsock = socket.socket(socket.AF_UNIX)
    lsock.bind(path)
    lsock.listen()

    def dial() -> socket.socket:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        return s

    conn = PlainHTTPConnection(dial, timeout=10)
    conn.request("GET", "/")
    peer, _ = lsock.accept()
    peer.recv(65536)
    peer.close()
    with pytest.raises(ConnectionResetError):  # what the client retries on a kept-alive connection
        conn.getresponse()
    conn.close()
    lsock.close()


def test_through_the_transport_socket(server: tuple[str, list[socket.socket]]) -> None:
    """unix:// dials with `_socket` (no socket.py at start-up): keep-alive reads and a chunked body."""
    from dockyard.client.transport import Host, open_connection

    conn = open_connection(Host("unix", server[0]), None, 10)
    for path in ("/a", "/chunked", "/b"):
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200
        body = resp.read()
        assert body == (b"hello chunked world" if path == "/chunked" else f"path={path} host=localhost".encode())
    conn.close()
