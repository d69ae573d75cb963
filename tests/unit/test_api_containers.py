"""The container routes over fake backends (api/backends.py Protocols): what each request asks of
the services, with no daemon. The services themselves run in tests/integration and conformance."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dockyard.api import containers
from dockyard.errors import InvalidParameter
from dockyard.http.messages import Request, Response
from dockyard.http.routing import Router
from dockyard.wire.container import Config


class Calls:
    """Records each call made on it as (name, args, kwargs); answers with `answers[name]`."""

    def __init__(self, **answers: Any) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.answers = answers

    def _record(self, name: str, *args: Any, **kw: Any) -> Any:
        self.calls.append((name, args, kw))
        return self.answers.get(name)


class FakeContainer:
    id = "c" * 64
    config = Config(tty=False)


class FakeContainers(Calls):
    def get(self, ref: str) -> FakeContainer:
        self._record("get", ref)
        return FakeContainer()

    async def stop(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        self._record("stop", ref, timeout, sig)

    async def restart(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        self._record("restart", ref, timeout, sig)

    async def kill(self, ref: str, sig: str | int | None = None) -> None:
        self._record("kill", ref, sig)

    async def remove(self, ref: str, force: bool = False, volumes: bool = False, link: bool = False,
                     quiet: bool = False) -> None:
        self._record("remove", ref, force=force, volumes=volumes, link=link)

    async def wait(self, ref: str, condition: str = "not-running") -> dict[str, Any]:
        self._record("wait", ref, condition)
        return {"StatusCode": 3, "Error": None}


class FakeIO(Calls):
    def logs(self, cid: str, **kw: Any) -> AsyncIterator[bytes]:
        self._record("logs", cid, **kw)

        async def gen() -> AsyncIterator[bytes]:
            yield b"x"
        return gen()


def router(cs: FakeContainers, io: FakeIO | None = None) -> Router:
    r = Router()
    r.include(containers.ContainerRoutes(cs, io or FakeIO(), Calls(), Calls(), Calls(), Calls()).routes())  # type: ignore[arg-type]
    return r


def call(r: Router, method: str, path: str, **query: str) -> Any:
    handler, params = r.match(method, path)
    return asyncio.run(handler(Request(method, path, query={k: [v] for k, v in query.items()}, params=params)))


def test_stop_restart_kill_and_remove_pass_the_query_on() -> None:
    cs = FakeContainers()
    r = router(cs)
    assert call(r, "POST", "/containers/web/stop", t="5", signal="SIGINT").status == 204
    assert call(r, "POST", "/containers/web/restart").status == 204
    assert call(r, "POST", "/containers/web/kill").status == 204
    assert call(r, "DELETE", "/containers/web", force="1", v="true").status == 204
    assert cs.calls == [("stop", ("web", 5, "SIGINT"), {}), ("restart", ("web", None, None), {}),
                        ("kill", ("web", "KILL"), {}),
                        ("remove", ("web",), {"force": True, "volumes": True, "link": False})]


def test_wait_answers_at_once_and_the_code_at_exit() -> None:
    cs = FakeContainers()
    resp: Response = call(router(cs), "POST", "/containers/web/wait", condition="next-exit")
    assert resp.status == 200 and ("wait", (FakeContainer.id, "next-exit"), {}) not in cs.calls  # not yet

    async def body() -> bytes:
        assert not isinstance(resp.body, bytes)
        return b"".join([chunk async for chunk in resp.body])
    assert asyncio.run(body()) == b'{"StatusCode": 3, "Error": null}\n'
    assert ("wait", (FakeContainer.id, "next-exit"), {}) in cs.calls


def test_logs_needs_a_stream_and_streams_multiplexed_without_tty() -> None:
    io = FakeIO()
    r = router(FakeContainers(), io)
    with pytest.raises(InvalidParameter, match="at least one stream"):
        call(r, "GET", "/containers/web/logs")
    resp = call(r, "GET", "/containers/web/logs", stdout="1", tail="10")
    assert resp.headers["Content-Type"] == "application/vnd.docker.multiplexed-stream"
    assert io.calls[0][2]["tail"] == "10" and io.calls[0][2]["raw"] is False
