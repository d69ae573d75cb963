"""The API under bad input: schemathesis fuzzes every operation of moby's swagger that we serve
(tests/data/moby-api-v1.47.yaml) and no request may get a 5xx or take the daemon down; oversized
heads and bodies get 4xx; stalled clients do not block others.

The fuzzing runs against a daemon of its own (it prunes, deletes and creates at random).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Daemon, own_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a real daemon)")

SPEC = ROOT / "tests" / "data" / "moby-api-v1.47.yaml"
# per operation and generation mode: ~55 operations x 2 modes take ~40 s; 80 takes ~2.5 min
EXAMPLES = int(os.environ.get("DOCKYARD_FUZZ_EXAMPLES", "30"))

# Not fuzzed: they reach registries outside the machine (pull, push, auth, distribution, build's
# FROM), stream until the client leaves (events) or make host network devices from random options.
SKIP = {
    ("POST", "/images/create"), ("POST", "/images/{name}/push"), ("GET", "/distribution/{name}/json"),
    ("POST", "/auth"), ("POST", "/build"), ("GET", "/events"), ("POST", "/networks/create"),
}


@pytest.fixture(scope="module")
def fuzz_daemon() -> Iterator[Daemon]:
    with own_daemon() as d:
        yield d


def _operations() -> list[Any]:
    import schemathesis

    @schemathesis.serializer("application/x-tar")
    def _tar(ctx: Any, value: Any) -> bytes:  # no real tar: random bytes the daemon must refuse
        return value if isinstance(value, bytes) else json.dumps(value, default=str).encode()

    schema = schemathesis.openapi.from_path(str(SPEC))
    ops = [r.ok() for r in schema.get_all_operations()]  # type: ignore[union-attr]  # Err raises: a bad spec
    return [op for op in ops if (op.method.upper(), op.path) not in SKIP]


OPERATIONS = _operations()


def _send(client: Any, case: Any) -> Any:
    kw = case.as_transport_kwargs(base_url="http://d/v1.47")
    kw.pop("cookies", None)
    headers = {k: v for k, v in kw.pop("headers", {}).items() if k.lower() != "connection"}
    body: dict[str, Any] = {}
    if "json" in kw:
        body["content"] = json.dumps(kw.pop("json")).encode()
        headers.setdefault("Content-Type", "application/json")
    elif "data" in kw:
        data = kw.pop("data")
        body["content"] = data if isinstance(data, bytes) else str(data).encode()
    # query values arrive as str/int/bool/list (httpx takes those), objects, or (negative mode) a bare string
    params = kw.pop("params") or {}
    if isinstance(params, dict):
        params = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in params.items()}
    return client.request(kw["method"], kw["url"], params=params, headers=headers, **body)


@pytest.mark.parametrize("op", OPERATIONS, ids=[f"{o.method.upper()} {o.path}" for o in OPERATIONS])
def test_fuzz_no_5xx(fuzz_daemon: Daemon, op: Any) -> None:
    import httpx
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    failures: list[str] = []
    strategy = st.one_of(op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE))

    with httpx.Client(transport=httpx.HTTPTransport(uds=str(fuzz_daemon.sock)), timeout=60) as client:

        @given(case=strategy)
        @settings(max_examples=2 * EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            try:
                r = _send(client, case)
            except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
                return  # the client refused to send it: not a request the daemon ever sees
            except httpx.TransportError as e:  # e.g. a streamed answer cut short by an error
                failures.append(f"{case.method} {case.formatted_path} {case.query}: {e!r}")
                return
            if r.status_code >= 500:
                failures.append(f"{r.status_code} {r.request.method} {r.request.url}: {r.text[:300]}")

        fuzz()
    assert fuzz_daemon.proc is not None and fuzz_daemon.proc.poll() is None, "the daemon died"
    with fuzz_daemon.api() as c:
        assert c.get("/_ping").status_code == 200
    assert not failures, "\n".join(failures[:10])


# -- oversized and stalled requests ----------------------------------------------------------------


def _raw(sock_path: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(60)
        s.connect(str(sock_path))
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it answered (and closed) before reading it all: the answer is still there
        out = b""
        while b"\r\n\r\n" not in out and (chunk := s.recv(65536)):
            out += chunk
        return out


def _status(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


def test_oversized_headers_get_4xx(daemon: Daemon) -> None:
    big = b"GET /_ping HTTP/1.1\r\nHost: d\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
    assert 400 <= _status(_raw(daemon.sock, big)) < 500
    many = b"GET /_ping HTTP/1.1\r\nHost: d\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(2000))
    assert 400 <= _status(_raw(daemon.sock, many + b"\r\n")) < 500
    long_target = b"GET /_ping?" + b"q" * 200_000 + b" HTTP/1.1\r\nHost: d\r\n\r\n"
    assert 400 <= _status(_raw(daemon.sock, long_target)) < 500
    with daemon.api() as c:
        assert c.get("/_ping").status_code == 200


def test_oversized_json_body_gets_413(daemon: Daemon) -> None:
    # announced: refused before the body is read
    head = b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
    assert _status(_raw(daemon.sock, head + b"Content-Length: 100000000000\r\n\r\n{")) == 413
    # sent: refused once past the limit
    body = b'{"Image": "busybox", "Cmd": ["' + b"x" * (17 * 1024 * 1024) + b'"]}'
    with daemon.api() as c:
        r = c.post("/containers/create", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        assert c.get("/_ping").status_code == 200


def test_bad_json_gets_400(daemon: Daemon) -> None:
    with daemon.api() as c:
        for body in (b"{", b"[1,2]", b'"str"', b"\xff\xfe", b'{"Image": 5}', b'{"HostConfig": "x", "Image": "busybox"}',
                     b'{"Image": "busybox", "HostConfig": {"CapAdd": [5]}}', b'{"Image": "busybox", "Env": "A=1"}',
                     b'{"Image": "busybox", "HostConfig": {"Memory": "lots"}}'):
            r = c.post("/containers/create", content=body, headers={"Content-Type": "application/json"})
            assert 400 <= r.status_code < 500, (body, r.status_code, r.text)


def test_stalled_clients_do_not_block_others(daemon: Daemon) -> None:
    stalled: list[socket.socket] = []
    try:
        for i in range(50):
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(daemon.sock))
            if i % 3 == 0:
                s.sendall(b"GET /_pi")  # half a request line
            elif i % 3 == 1:
                s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\nX-Slow: ")  # half a head
            else:  # a head whose body never comes
                s.sendall(b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 1000\r\n\r\n{\"Image\":")
            stalled.append(s)
        with daemon.api() as c:
            for _ in range(5):
                assert c.get("/_ping").status_code == 200
            assert c.get("/containers/json").status_code == 200
        assert b"CONTAINER ID" in daemon.docker("ps").stdout
    finally:
        for s in stalled:
            s.close()
