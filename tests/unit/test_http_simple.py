"""http/simple.py: which request heads it takes from h11 (a subset of h11's grammar, bodiless), and the
response heads it builds (checked line by line, no value bringing a line of its own)."""

from __future__ import annotations

import pytest

from dockyard.http import simple

GO = (b"GET /v1.47/containers/abc/stats?stream=0 HTTP/1.1\r\nHost: api.moby.localhost\r\n"
      b"User-Agent: Docker-Client/28.2.2 (linux)\r\nAccept-Encoding: gzip\r\n\r\n")


def test_the_docker_clis_request() -> None:
    h = simple.parse_head(GO)
    assert h is not None and (h.method, h.target, h.keep_alive) == ("GET", "/v1.47/containers/abc/stats?stream=0", True)
    assert h.headers == {"host": "api.moby.localhost", "user-agent": "Docker-Client/28.2.2 (linux)",
                         "accept-encoding": "gzip"}
    h = simple.parse_head(b"POST /containers/x/start HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n"
                          b"X-A: 1\r\nx-a:  2 \r\nConnection: close\r\n\r\n")
    assert h is not None and h.headers["x-a"] == "1, 2" and not h.keep_alive
    h = simple.parse_head(b"HEAD /_ping HTTP/1.1\r\nHost: api.moby.localhost\r\n\r\n")  # every CLI command's first
    assert h is not None and (h.method, h.target) == ("HEAD", "/_ping")


@pytest.mark.parametrize("head", [
    b"GET / HTTP/1.0\r\nHost: d\r\n\r\n",  # 1.0's keep-alive rules: h11's
    b"GET / HTTP/1.1\r\n\r\n",  # no Host: h11 says 400
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: d\r\nContent-Length: 2\r\n\r\n",  # a body
    b"POST / HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: d\r\nExpect: 100-continue\r\n\r\n",
    b"POST /attach HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: d\r\nX-A: 1\r\n folded\r\n\r\n",  # obs-fold
    b"GET / HTTP/1.1\r\nHost: d\r\nX A: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: d\r\nX-A: a\nB: c\r\n\r\n",  # a bare LF
    b"GET /\x7f HTTP/1.1\r\nHost: d\r\n\r\n",
    b"GET http://d/ HTTP/1.1\r\nHost: d\r\n\r\n",  # absolute form
])
def test_anything_else_is_h11s(head: bytes) -> None:
    assert simple.parse_head(head) is None


def test_response_heads() -> None:
    assert simple.response_head(200, [("Api-Version", "1.47"), ("Content-Length", "2")]) == (
        b"HTTP/1.1 200 OK\r\nApi-Version: 1.47\r\nContent-Length: 2\r\n\r\n")
    assert simple.response_head(599, []) == b"HTTP/1.1 599 \r\n\r\n"
    for bad in ("a\r\nSet-Cookie: x", "a\nb", "a\rb", " lead", "trail ", "nul\x00", "é"):
        assert simple.response_head(200, [("X-Name", bad)]) is None, bad
    assert simple.response_head(200, [("X Name", "v")]) is None
    assert simple.response_head(101, []) is None  # not a final answer: h11 refuses it
