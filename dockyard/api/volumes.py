"""Volume endpoints (swagger operations VolumeList, VolumeCreate, VolumeInspect, VolumeDelete, VolumePrune)."""

from __future__ import annotations

import asyncio

from dockyard.api.backends import VolumeBackend
from dockyard.api.server import Request, Response, Route, json_response
from dockyard.errors import InvalidParameter


class VolumeRoutes:
    """Volume endpoints over the VolumeBackend."""

    def __init__(self, volumes: VolumeBackend) -> None:
        self.volumes = volumes

    async def volume_list(self, req: Request) -> Response:
        return json_response(await asyncio.to_thread(self.volumes.list, req.qjson("filters")))

    async def volume_create(self, req: Request) -> Response:
        body = await req.json() or {}
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON body")
        for key in ("Name", "Driver"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise InvalidParameter(f"{key} must be a string")
        for key in ("DriverOpts", "Labels"):
            if body.get(key) is not None and not isinstance(body[key], dict):
                raise InvalidParameter(f"{key} must be an object")
            if not all(isinstance(v, str) for v in (body.get(key) or {}).values()):
                raise InvalidParameter(f"{key} values must be strings")
        vol = await asyncio.to_thread(
            self.volumes.create, body.get("Name") or None, body.get("Driver") or "local",
            body.get("DriverOpts") or {}, body.get("Labels") or {},
        )
        return json_response(vol, 201)

    async def volume_inspect(self, req: Request) -> Response:
        return json_response(await asyncio.to_thread(self.volumes.inspect, req.params["name"]))

    async def volume_delete(self, req: Request) -> Response:
        await asyncio.to_thread(self.volumes.remove, req.params["name"], req.qbool("force"))
        return Response(204)

    async def volume_prune(self, req: Request) -> Response:
        return json_response(await asyncio.to_thread(self.volumes.prune, req.qjson("filters")))

    def routes(self) -> list[Route]:
        return [
            ("GET", "/volumes", self.volume_list),
            ("POST", "/volumes/create", self.volume_create),
            ("POST", "/volumes/prune", self.volume_prune),
            ("GET", "/volumes/{name}", self.volume_inspect),
            ("DELETE", "/volumes/{name}", self.volume_delete),
        ]
