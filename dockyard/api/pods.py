"""Pod endpoints on podman's libpod paths (podman 4.3's pods router: create, json, inspect, exists,
start, stop, delete). Clients send them under `/v4.x.y/libpod/...` or bare `/libpod/...`."""

from __future__ import annotations

import asyncio

from dockyard.api.backends import PodBackend
from dockyard.api.server import Request, Response, Route, json_response
from dockyard.errors import InvalidParameter


class PodRoutes:
    """libpod's pod endpoints over the PodBackend."""

    def __init__(self, pods: PodBackend) -> None:
        self.pods = pods

    async def pod_create(self, req: Request) -> Response:
        spec = await req.json() or {}
        if not isinstance(spec, dict):
            raise InvalidParameter("invalid JSON body: expected an object")
        return json_response(await self.pods.create(spec), 201)

    async def pod_list(self, req: Request) -> Response:
        return json_response(await asyncio.to_thread(self.pods.list, req.qfilters()))

    async def pod_inspect(self, req: Request) -> Response:
        return json_response(await asyncio.to_thread(self.pods.inspect, req.params["name"]))

    async def pod_exists(self, req: Request) -> Response:
        await asyncio.to_thread(self.pods.inspect, req.params["name"])
        return Response(204)

    async def pod_start(self, req: Request) -> Response:
        return json_response(await self.pods.start(req.params["name"]))

    async def pod_stop(self, req: Request) -> Response:
        return json_response(await self.pods.stop(req.params["name"], req.qint("t")))

    async def pod_delete(self, req: Request) -> Response:
        return json_response(await self.pods.remove(req.params["name"], req.qbool("force"), req.qint("t")))

    def routes(self) -> list[Route]:
        return [
            ("POST", "/libpod/pods/create", self.pod_create),
            ("GET", "/libpod/pods/json", self.pod_list),
            ("GET", "/libpod/pods/{name}/json", self.pod_inspect),
            ("GET", "/libpod/pods/{name}/exists", self.pod_exists),
            ("POST", "/libpod/pods/{name}/start", self.pod_start),
            ("POST", "/libpod/pods/{name}/stop", self.pod_stop),
            ("DELETE", "/libpod/pods/{name}", self.pod_delete),
        ]
