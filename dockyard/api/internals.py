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

    router.add("GET", "/dockyard/containers/{id}/internals", get_container_internals)
