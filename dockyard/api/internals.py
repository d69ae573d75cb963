"""Dockyard's own endpoint (not part of the Engine API): what a container is made of, read from the kernel.

Under /dockyard/ so it can never collide with a Docker path. Backs `dockyard explain`.
"""

from __future__ import annotations

import asyncio

from dockyard.api.backends import InternalsBackend
from dockyard.api.server import Request, Response, Route, json_response


class InternalsRoutes:
    """`dockyard explain`'s endpoints over the InternalsBackend."""

    def __init__(self, internals: InternalsBackend) -> None:
        self.internals = internals

    async def get_container_internals(self, req: Request) -> Response:
        return json_response(await asyncio.to_thread(self.internals.explain, req.params["id"]))

    async def get_network_internals(self, req: Request) -> Response:
        return json_response(await asyncio.to_thread(self.internals.explain_network, req.params["id"]))

    async def get_image_internals(self, req: Request) -> Response:
        return json_response(await asyncio.to_thread(self.internals.explain_image, req.params["name"]))

    async def get_volume_internals(self, req: Request) -> Response:
        return json_response(await asyncio.to_thread(self.internals.explain_volume, req.params["name"]))

    def routes(self) -> list[Route]:
        return [
            ("GET", "/dockyard/containers/{id}/internals", self.get_container_internals),
            ("GET", "/dockyard/networks/{id}/internals", self.get_network_internals),
            ("GET", "/dockyard/images/{name:path}/internals", self.get_image_internals),
            ("GET", "/dockyard/volumes/{name}/internals", self.get_volume_internals),
        ]
