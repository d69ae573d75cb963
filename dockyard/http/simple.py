"""The common exchange without h11: a bodiless HTTP/1.1 request with a plain head, answered with a
fixed-length body (a HEAD's answer: its head alone, the length a GET's body would have). h11 took ~40 % of a small request's CPU (its parse, its state machine, a regex
per header each way): `docker stats` of 500 containers is 500 such exchanges at once.

`parse_head` accepts a subset of what h11 accepts, by h11's own grammar (h11/_abnf.py); anything else
(a body, Expect, Upgrade, HTTP/1.0, a missing or doubled Host, ...) is None and goes to h11, which
answers or refuses it as before. `response_head` builds our headers and checks every line by the
same grammar h11 checks what it sends, so no value can bring a line of its own (header injection).
"""

from __future__ import annotations

import http
import re
from dataclasses import dataclass

_TOKEN = r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_FIELD_VALUE = r"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?"
# HEAD: every docker CLI command begins with `HEAD /_ping` (h11 would then keep the whole connection).
_REQUEST_LINE = re.compile(r"(GET|HEAD|POST|PUT|DELETE) (/[\x21-\x7e]*) HTTP/1\.1", re.ASCII)
_HEADER = re.compile(rf"({_TOKEN}):[ \t]*({_FIELD_VALUE})[ \t]*", re.ASCII)
_RESPONSE_HEADERS = re.compile(rf"(?:{_TOKEN}: {_FIELD_VALUE}\r\n)*".encode(), re.ASCII)
_UNSIMPLE = frozenset({"transfer-encoding", "expect", "upgrade", "te"})


@dataclass
class Head:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names; repeated ones joined with ", " (as h11's path gives them)
    keep_alive: bool


def parse_head(head: bytes) -> Head | None:
    """head: a request head up to and with its blank line (b"\\r\\n\\r\\n"); None: h11's to parse."""
    lines = head[:-4].decode("latin-1").split("\r\n")
    m = _REQUEST_LINE.fullmatch(lines[0])
    if m is None:
        return None
    headers: dict[str, str] = {}
    hosts = 0
    for line in lines[1:]:
        h = _HEADER.fullmatch(line)
        if h is None:
            return None  # obs-fold, a bare LF, a bad name: h11 knows what to say
        key, val = h[1].lower(), h[2]
        if key in headers:
            headers[key] = f"{headers[key]}, {val}"
        else:
            headers[key] = val
        hosts += key == "host"
    if hosts != 1 or not _UNSIMPLE.isdisjoint(headers) or headers.get("content-length", "0") != "0":
        return None
    connection = headers.get("connection", "keep-alive").lower()
    if connection not in ("keep-alive", "close"):
        return None
    return Head(m[1], m[2], headers, connection != "close")


_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in http.HTTPStatus}


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes | None:
    """The status line and header lines; None when a header breaks HTTP's grammar, or for a status h11
    would refuse (it then raises for them as before). Content-Length is among `headers`."""
    if not 200 <= status < 1000:
        return None
    try:
        block = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("ascii")
    except UnicodeEncodeError:
        return None
    if _RESPONSE_HEADERS.fullmatch(block) is None or block.count(b"\r\n") != len(headers):
        return None
    status_line = _STATUS_LINES.get(status) or f"HTTP/1.1 {status} \r\n".encode()
    return status_line + block + b"\r\n"
