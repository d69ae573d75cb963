"""Exec endpoints: create, start (hijacked), inspect, resize."""

from __future__ import annotations

from dockyard.api.backends import ExecBackend
from dockyard.api.server import Hijack, Request, Response, Router, json_response
from dockyard.errors import InvalidParameter


def register(router: Router, execs: ExecBackend) -> None:
    async def container_exec(req: Request) -> Response:
        body = await req.json()
        if not isinstance(body, dict):
            raise InvalidParameter("invalid exec config")
        return json_response(execs.create(req.params["id"], body), 201)

    async def exec_start(req: Request) -> Response | Hijack:
        body = await req.json() or {}
        if not isinstance(body, dict):
            raise InvalidParameter("invalid exec start config")
        handler = await execs.start(req.params["id"], bool(body.get("Detach")), body.get("Tty"))
        if handler is None:
            return Response(200, {"Content-Type": "application/json"}, b"")
        tty = bool(execs.get(req.params["id"]).config.get("Tty")) or bool(body.get("Tty"))
        return Hijack(handler, "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream")

    async def exec_inspect(req: Request) -> Response:
        return json_response(execs.inspect(req.params["id"]))

    async def exec_resize(req: Request) -> Response:
        execs.resize(req.params["id"], req.qint("h", 0) or 0, req.qint("w", 0) or 0)
        return Response(200, {"Content-Type": "text/plain"}, b"")  # dockerd answers 200 (API spec too)

    router.add("POST", "/containers/{id}/exec", container_exec)
    router.add("POST", "/exec/{id}/start", exec_start)
    router.add("GET", "/exec/{id}/json", exec_inspect)
    router.add("POST", "/exec/{id}/resize", exec_resize)
