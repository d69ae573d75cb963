"""Dockyard's own endpoint (not part of the Engine API): what a container is made of, read from the kernel.

Under /dockyard/ so it can never collide with a Docker path. Backs `dockyard explain`.
"""

from __future__ import annotations

import asyncio

from dockyard.api.backends import InternalsBackend
from dockyard.api.server import Request, Response, Router, json_response


def register(router: Router, internals: InternalsBackend) -> None:
    async def get_container_internals(req: Request) -> Response:
        return json_response(await asyncio.to_thread(internals.explain, req.params["id"]))

    async def get_network_internals(req: Request) -> Response:
        return json_response(await asyncio.to_thread(internals.explain_network, req.params["id"]))

    async def get_image_internals(req: Request) -> Response:
        return json_response(await asyncio.to_thread(internals.explain_image, req.params["name"]))

    async def get_volume_internals(req: Request) -> Response:
        return json_response(await asyncio.to_thread(internals.explain_volume, req.params["name"]))

    router.add("GET", "/dockyard/containers/{id}/internals", get_container_internals)
    router.add("GET", "/dockyard/networks/{id}/internals", get_network_internals)
    router.add("GET", "/dockyard/images/{name:path}/internals", get_image_internals)
    router.add("GET", "/dockyard/volumes/{name}/internals", get_volume_internals)
