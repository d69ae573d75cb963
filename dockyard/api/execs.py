"""Exec endpoints: create, start (hijacked), inspect, resize."""

from __future__ import annotations

from dockyard.api.backends import ExecBackend
from dockyard.api.server import Hijack, Request, Response, Route, json_response
from dockyard.errors import InvalidParameter


class ExecRoutes:
    """Exec endpoints over the ExecBackend."""

    def __init__(self, execs: ExecBackend) -> None:
        self.execs = execs

    async def container_exec(self, req: Request) -> Response:
        from dockyard.wire.container import exec_request

        body = await req.json()
        if not isinstance(body, dict):
            raise InvalidParameter("invalid exec config")
        return json_response(self.execs.create(req.params["id"], exec_request(body)), 201)

    async def exec_start(self, req: Request) -> Response | Hijack:
        from dockyard.wire.container import exec_start_request

        body = await req.json() or {}
        if not isinstance(body, dict):
            raise InvalidParameter("invalid exec start config")
        start = exec_start_request(body)
        # As dockerd: the start request's Tty alone says whether the stream is raw or multiplexed; the
        # process has a terminal if the exec was created with one.
        raw = start.tty
        handler = await self.execs.start(req.params["id"], start.detach, raw)
        if handler is None:
            return Response(200, {"Content-Type": "application/json"}, b"")
        return Hijack(handler, "application/vnd.docker.raw-stream" if raw else "application/vnd.docker.multiplexed-stream")

    async def exec_inspect(self, req: Request) -> Response:
        return json_response(self.execs.inspect(req.params["id"]))

    async def exec_resize(self, req: Request) -> Response:
        self.execs.resize(req.params["id"], req.qint("h", 0) or 0, req.qint("w", 0) or 0)
        return Response(200, {"Content-Type": "text/plain"}, b"")  # dockerd answers 200 (API spec too)

    def routes(self) -> list[Route]:
        return [
            ("POST", "/containers/{id}/exec", self.container_exec),
            ("POST", "/exec/{id}/start", self.exec_start),
            ("GET", "/exec/{id}/json", self.exec_inspect),
            ("POST", "/exec/{id}/resize", self.exec_resize),
        ]
