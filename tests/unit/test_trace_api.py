"""GET /dockyard/trace over a real unix socket: a session's stream gets its own requests' steps and
every later step of the objects they touched, nothing else; marks come after what was recorded."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator

import httpx
import pytest

from dockyard import trace
from dockyard.api import trace as trace_api
from dockyard.api.server import Request, Response, Router, Server, serve

WAIT = 30  # hang guard only


@pytest.fixture
def sock() -> Iterator[str]:
    with trace._lock:
        trace._rings.clear()
        trace._total = 0
    tmp = tempfile.mkdtemp(prefix="dy-trc-")
    path = os.path.join(tmp, "api.sock")
    router = Router()
    router.include(trace_api.TraceRoutes().routes())

    async def change(req: Request) -> Response:  # a service doing one host change about an object
        with trace.about(req.params["obj"]), trace.step("file", f"touch {req.params['obj']}", "test"):
            pass
        return Response(204)

    router.add("POST", "/change/{obj}", change)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server: Server = asyncio.run_coroutine_threadsafe(serve(router, [f"unix://{path}"], socket_group=None),
                                                      loop).result(WAIT)
    try:
        yield path
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(WAIT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        loop.close()
        shutil.rmtree(tmp)


def client(sock: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=sock), base_url="http://d", timeout=WAIT)


def test_a_session_stream_follows_its_requests_and_the_objects_they_touched(sock: str) -> None:
    got: list[dict[str, object]] = []
    opened = threading.Event()

    def follow() -> None:
        with client(sock) as c, c.stream("GET", "/dockyard/trace",
                                         params={"session": "s1", "mark": "s1", "follow": "1"}) as r:
            opened.set()
            for line in r.iter_lines():
                got.append(json.loads(line))
                if got[-1].get("Mark"):
                    return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    assert opened.wait(WAIT)
    with client(sock) as c:
        assert c.post("/change/container:a", headers={"X-Dockyard-Trace": "s1"}).status_code == 204
        c.post("/change/container:b")  # someone else's object: not in the session
        c.post("/change/container:a")  # later work on an object the session touched (e.g. its exit)
        c.post("/change/container:c", headers={"X-Dockyard-Trace": "s2"})  # another session
        assert c.post("/dockyard/trace/mark", params={"mark": "s1"}).status_code == 204
    t.join(WAIT)
    assert [(r.get("Op"), r.get("Session")) for r in got] == [
        ("touch container:a", "s1"), ("touch container:a", None), (None, None)]
    assert got[-1] == {"Mark": True}

    with client(sock) as c:  # replay by object: b's step, and nothing of a
        lines = [json.loads(x) for x in c.get("/dockyard/trace", params={"object": "b"}).text.splitlines()]
    assert [r["Object"] for r in lines] == ["container:b"]
