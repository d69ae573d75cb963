"""Volume endpoints (swagger operations VolumeList, VolumeCreate, VolumeInspect, VolumeDelete, VolumePrune)."""

from __future__ import annotations

import asyncio

from dockyard.api.backends import VolumeBackend
from dockyard.api.server import Request, Response, Router, json_response
from dockyard.errors import InvalidParameter


def register(router: Router, volumes: VolumeBackend) -> None:
    async def volume_list(req: Request) -> Response:
        return json_response(await asyncio.to_thread(volumes.list, req.qjson("filters")))

    async def volume_create(req: Request) -> Response:
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
            volumes.create, body.get("Name") or None, body.get("Driver") or "local",
            body.get("DriverOpts") or {}, body.get("Labels") or {},
        )
        return json_response(vol, 201)

    async def volume_inspect(req: Request) -> Response:
        return json_response(await asyncio.to_thread(volumes.inspect, req.params["name"]))

    async def volume_delete(req: Request) -> Response:
        await asyncio.to_thread(volumes.remove, req.params["name"], req.qbool("force"))
        return Response(204)

    async def volume_prune(req: Request) -> Response:
        return json_response(await asyncio.to_thread(volumes.prune, req.qjson("filters")))

    router.add("GET", "/volumes", volume_list)
    router.add("POST", "/volumes/create", volume_create)
    router.add("POST", "/volumes/prune", volume_prune)
    router.add("GET", "/volumes/{name}", volume_inspect)
    router.add("DELETE", "/volumes/{name}", volume_delete)
