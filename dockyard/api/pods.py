"""Pod endpoints on podman's libpod paths (podman 4.3's pods router: create, json, inspect, exists,
start, stop, delete). Clients send them under `/v4.x.y/libpod/...` or bare `/libpod/...`."""

from __future__ import annotations

import asyncio

from dockyard.api.backends import PodBackend
from dockyard.api.server import Request, Response, Router, json_response
from dockyard.errors import InvalidParameter


def _filters(req: Request) -> dict[str, list[str]]:
    raw = req.qjson("filters") or {}
    if not isinstance(raw, dict):
        raise InvalidParameter("invalid filter")
    return {k: (list(v.keys()) if isinstance(v, dict) else list(v)) for k, v in raw.items()}


def register(router: Router, pods: PodBackend) -> None:
    async def pod_create(req: Request) -> Response:
        spec = await req.json() or {}
        if not isinstance(spec, dict):
            raise InvalidParameter("invalid JSON body: expected an object")
        return json_response(await pods.create(spec), 201)

    async def pod_list(req: Request) -> Response:
        return json_response(await asyncio.to_thread(pods.list, _filters(req)))

    async def pod_inspect(req: Request) -> Response:
        return json_response(await asyncio.to_thread(pods.inspect, req.params["name"]))

    async def pod_exists(req: Request) -> Response:
        await asyncio.to_thread(pods.inspect, req.params["name"])
        return Response(204)

    async def pod_start(req: Request) -> Response:
        return json_response(await pods.start(req.params["name"]))

    async def pod_stop(req: Request) -> Response:
        return json_response(await pods.stop(req.params["name"], req.qint("t")))

    async def pod_delete(req: Request) -> Response:
        return json_response(await pods.remove(req.params["name"], req.qbool("force"), req.qint("t")))

    router.add("POST", "/libpod/pods/create", pod_create)
    router.add("GET", "/libpod/pods/json", pod_list)
    router.add("GET", "/libpod/pods/{name}/json", pod_inspect)
    router.add("GET", "/libpod/pods/{name}/exists", pod_exists)
    router.add("POST", "/libpod/pods/{name}/start", pod_start)
    router.add("POST", "/libpod/pods/{name}/stop", pod_stop)
    router.add("DELETE", "/libpod/pods/{name}", pod_delete)
