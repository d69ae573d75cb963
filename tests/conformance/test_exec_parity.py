"""Exec streams as clients read them, on our daemon and on the real dockerd with the same docker-py
calls: raw or multiplexed by the start request's Tty, socket=True, detach keys, inspect."""

from __future__ import annotations

import socket
import struct
from typing import Any

import docker
import docker.errors
import pytest

from tests.conftest import Engines


@pytest.fixture()
def pair(engines: Engines) -> list[tuple[docker.APIClient, str]]:
    """A running `cat` container on each engine: [(client, id) ours, (client, id) dockerd's]."""
    out = []
    for c in (engines.ours, engines.ref):
        cid = engines.create(c, command="cat", stdin_open=True)
        c.start(cid)
        out.append((c, cid))
    return out


def both(pair: list[tuple[docker.APIClient, str]], fn: Any) -> tuple[Any, Any]:
    return fn(*pair[0]), fn(*pair[1])


def read_all(sock: Any) -> bytes:
    raw = getattr(sock, "_sock", sock)
    buf = b""
    while chunk := raw.recv(65536):
        buf += chunk
    return buf


SCRIPT = "echo hello out; sleep 0.3; echo hello err >&2"


@pytest.mark.parametrize(("create_tty", "start_tty"), [(True, False), (True, True), (False, False), (False, True)])
def test_stream_framing_follows_the_start_request(pair: list[tuple[docker.APIClient, str]], create_tty: bool,
                                                  start_tty: bool) -> None:
    def run(c: docker.APIClient, cid: str) -> bytes:
        ex = c.exec_create(cid, ["sh", "-c", SCRIPT], tty=create_tty)
        sock = c.exec_start(ex, tty=start_tty, socket=True)
        try:
            return read_all(sock)
        finally:
            sock.close()

    ours, ref = both(pair, run)
    assert ours == ref
    if not start_tty:
        assert struct.unpack(">BxxxL", ours[:8])[0] in (1, 2)  # a multiplexing frame header


def test_exec_start_socket_frames_a_tty_exec(pair: list[tuple[docker.APIClient, str]]) -> None:
    def run(c: docker.APIClient, cid: str) -> tuple[int, int, bytes]:
        ex = c.exec_create(cid, ["printf", "yay"], tty=True)
        sock = c.exec_start(ex, socket=True)
        try:
            data = read_all(sock)
        finally:
            sock.close()
        stream, size = struct.unpack(">BxxxL", data[:8])
        return stream, size, data[8:8 + size]

    ours, ref = both(pair, run)
    assert ours == ref == (1, 3, b"yay")


def test_detach_keys_from_the_client_config(pair: list[tuple[docker.APIClient, str]]) -> None:
    """docker-py puts config.json's detachKeys into the exec body as `detachKeys` (Go matches any case)."""
    def run(c: docker.APIClient, cid: str) -> tuple[Any, ...]:
        c._general_configs["detachKeys"] = "ctrl-p"
        try:
            ex = c.exec_create(cid, "cat", stdin=True, tty=True, stdout=True)
        finally:
            del c._general_configs["detachKeys"]
        sock = c.exec_start(ex, tty=True, socket=True)
        raw: socket.socket = sock._sock
        try:
            raw.settimeout(30)
            raw.sendall(b"abc\x10")
            got = read_all(sock)  # the stream ends at the detach key
        finally:
            sock.close()
        info = c.exec_inspect(ex)
        return got, info["DetachKeys"], info["ProcessConfig"]["tty"]

    ours, ref = both(pair, run)
    assert ours == ref
    assert ours[1:] == ("EA==", True)  # ctrl-p, as Go's JSON shows bytes


def test_exec_inspect_process_config(pair: list[tuple[docker.APIClient, str]]) -> None:
    def run(c: docker.APIClient, cid: str) -> dict[str, Any]:
        ex = c.exec_create(cid, ["echo", "a", "b"], tty=True, user="nobody", privileged=False)
        return c.exec_inspect(ex)["ProcessConfig"]

    ours, ref = both(pair, run)
    assert ours == ref
