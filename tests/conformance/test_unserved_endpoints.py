"""Paths dockerd knows and Dockyard has no engine for (plugins, BuildKit sessions), and swarm paths on a
node outside a swarm: the same status and message as the real dockerd there, never a bare "page not found"."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import httpx
import pytest

from tests.conftest import Daemon

# (method, path, body): what a client sends; the body None means no body at all.
CASES = [
    ("GET", "/swarm", None),
    ("POST", "/swarm/leave?force=1", None),
    ("POST", "/swarm/leave", None),
    ("POST", "/swarm/init", b"{}"),
    ("POST", "/swarm/init", None),
    ("POST", "/swarm/update?version=1", b"{}"),
    ("GET", "/swarm/unlockkey", None),
    ("GET", "/services", None),
    ("GET", "/services/x", None),
    ("POST", "/services/create", b"{}"),
    ("POST", "/services/x/update", b"{}"),
    ("DELETE", "/services/x", None),
    ("GET", "/services/x/logs", None),
    ("GET", "/services/x/logs?stdout=1", None),
    ("GET", "/nodes", None),
    ("GET", "/nodes/x", None),
    ("POST", "/nodes/x/update", b"{}"),
    ("GET", "/tasks", None),
    ("GET", "/tasks/x/logs?stderr=1", None),
    ("GET", "/secrets", None),
    ("POST", "/secrets/create", b"{}"),
    ("POST", "/secrets/x/update", b"{}"),
    ("GET", "/configs", None),
    ("GET", "/configs/x", None),
    ("GET", "/plugins", None),
    ("GET", "/plugins/x/json", None),
    ("DELETE", "/plugins/x", None),
    ("POST", "/plugins/x/disable", None),
    ("POST", "/session", None),
    ("POST", "/build/cancel?id=x", None),
    ("GET", "/networks/", None),
    ("OPTIONS", "/containers/json", None),
    ("GET", "/nosuch", None),
    ("GET", "/containers/nosuchcontainer/attach/ws", None),
]


def _client(host: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=host.removeprefix("unix://")), base_url="http://d/v1.41",
                        timeout=60)


@pytest.fixture(scope="module")
def both(daemon: Daemon, real_dockerd: str) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with _client(daemon.host) as ours, _client(real_dockerd) as ref:
        yield ours, ref


def _answer(c: httpx.Client, method: str, path: str, body: bytes | None) -> tuple[int, str | None]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    r = c.request(method, path, content=body, headers=headers)
    doc = r.json() if r.content.strip() and r.headers.get("content-type", "").startswith("application/json") else None
    return r.status_code, doc.get("message") if isinstance(doc, dict) else None


@pytest.mark.parametrize(("method", "path", "body"), CASES, ids=[f"{m} {p}" for m, p, _ in CASES])
def test_same_answer_as_dockerd(both: tuple[httpx.Client, httpx.Client], method: str, path: str,
                                body: bytes | None) -> None:
    ours, ref = both
    assert _answer(ours, method, path, body) == _answer(ref, method, path, body)


def test_unknown_method_on_any_path_is_not_options(both: tuple[httpx.Client, httpx.Client]) -> None:
    """The OPTIONS catch-all must not make every unknown path look known."""
    ours, _ = both
    r = ours.get("/no/such/path")
    assert (r.status_code, r.json()["message"]) == (404, "page not found")


def test_docker_py_leave_swarm_force_is_accepted(daemon: Daemon) -> None:
    c = docker.APIClient(base_url=daemon.host, version="1.41")
    try:
        assert c.leave_swarm(force=True) is True
        with pytest.raises(docker.errors.APIError) as e:
            c.inspect_swarm()
        assert e.value.response.status_code == 503
    finally:
        c.close()


def test_websocket_attach_refused_with_why(daemon: Daemon) -> None:
    with _client(daemon.host) as c:
        cid = c.post("/containers/create", json={"Image": "busybox", "Cmd": ["true"]}).json()["Id"]
        try:
            r = c.get(f"/containers/{cid}/attach/ws")
            assert r.status_code == 501 and "websocket" in r.json()["message"]
        finally:
            c.delete(f"/containers/{cid}")


def test_swarm_join_refused_with_why(daemon: Daemon) -> None:
    """A single-node swarm mode (tests/conformance/test_swarm_mode.py): joining another is refused."""
    with _client(daemon.host) as c:
        r = c.post("/swarm/join", json={"ListenAddr": "127.0.0.1:2377", "RemoteAddrs": ["127.0.0.1:2378"],
                                        "JoinToken": "SWMTKN-1-x"})
    assert r.status_code == 501 and "single node" in r.json()["message"]
