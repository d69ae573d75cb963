"""Image endpoints: list, inspect, history, tag, delete, prune, load, save, import (create fromSrc).

Pull (create with fromImage) is dispatched to api/distribution.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from dockyard.api.backends import DistributionBackend, ImageBackend
from dockyard.api.server import Request, Response, Route, json_response, ndjson_stream
from dockyard.errors import DockyardError, InvalidParameter


async def _items(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for it in items:
        yield it


# What dockerd reports as ContainerConfig for an image that was not committed from a container.
_EMPTY_CONTAINER_CONFIG: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
    "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
}


def _tar_response(body: AsyncIterator[bytes]) -> Response:
    return Response(200, {"Content-Type": "application/x-tar"}, body)


class ImageRoutes:
    """Image endpoints over the ImageBackend (pull through the DistributionBackend)."""

    def __init__(self, images: ImageBackend, distribution: DistributionBackend | None) -> None:
        self.images = images
        self.distribution = distribution

    async def get_images_json(self, req: Request) -> Response:
        return json_response(self.images.list(req.qjson("filters"), all=req.qbool("all"), digests=req.qbool("digests")))

    async def get_image_inspect(self, req: Request) -> Response:
        out = self.images.inspect(req.params["name"])
        v = tuple(int(x) for x in (req.api_version or "99").split(".") if x.isdigit())
        # Dropped in API 1.45. docker-compose 1.29 negotiates the newest API yet reads ContainerConfig
        # when it recreates a container (KeyError on Docker 25+), so it keeps getting them.
        if v < (1, 45) or req.headers.get("user-agent", "").startswith("docker-compose/"):
            # what dockerd shows: the config of the container the image was committed from, when the
            # image records one (docker-compose 1.x carries its Volumes over when it recreates)
            recorded = self.images.container_config(req.params["name"])
            out = {**out, "Container": recorded[0], "ContainerConfig": {**_EMPTY_CONTAINER_CONFIG, **recorded[1]}}
        if v < (1, 44):
            out["VirtualSize"] = out.get("Size", 0)
        return json_response(out)

    async def get_image_history(self, req: Request) -> Response:
        return json_response(self.images.history(req.params["name"]))

    async def post_image_tag(self, req: Request) -> Response:
        self.images.tag(req.params["name"], req.q("repo") or "", req.q("tag") or None)
        return Response(201)

    async def delete_image(self, req: Request) -> Response:
        # deleting removes snapshot dirs: blocking work, off the event loop
        return json_response(await asyncio.to_thread(self.images.delete, req.params["name"], req.qbool("force"),
                                                     req.qbool("noprune")))

    async def post_images_prune(self, req: Request) -> Response:
        return json_response(await asyncio.to_thread(self.images.prune, req.qjson("filters")))

    async def post_images_load(self, req: Request) -> Response:
        try:
            msgs = await self.images.load(req.stream(), quiet=req.qbool("quiet"))
        except DockyardError as e:
            # dockerd has answered 200 by the time the archive is read: the error is in the stream
            # (docker-py raises ImageLoadError on it, the CLI prints it and exits 1)
            msgs = [{"errorDetail": {"message": e.message}, "error": e.message}]
        return ndjson_stream(_items(msgs))

    async def get_images_get(self, req: Request) -> Response:
        names = [n for v in req.query.get("names", []) for n in v.split(",") if n]
        return _tar_response(await self.images.save(names))

    async def get_image_get(self, req: Request) -> Response:
        return _tar_response(await self.images.save([req.params["name"]]))

    async def post_images_create(self, req: Request) -> Response:
        if req.q("fromImage"):
            from dockyard.api import distribution as distribution_api

            return await distribution_api.pull_stream(req, self.distribution)
        src = req.q("fromSrc")
        if src != "-":
            raise InvalidParameter("fromSrc must be '-' (import from a URL is not supported)" if src
                                   else "fromImage or fromSrc is required")
        msgs = await self.images.import_(req.stream(), repo=req.q("repo") or "", tag=req.q("tag") or "",
                                    changes=req.query.get("changes", []),
                                    message=req.q("message") or f"Imported from {src}")  # Docker's default
        return ndjson_stream(_items(msgs))

    def routes(self) -> list[Route]:
        return [
            ("GET", "/images/json", self.get_images_json),
            ("GET", "/images/get", self.get_images_get),
            ("POST", "/images/prune", self.post_images_prune),
            ("POST", "/images/load", self.post_images_load),
            ("POST", "/images/create", self.post_images_create),
            ("GET", "/images/{name:path}/json", self.get_image_inspect),
            ("GET", "/images/{name:path}/history", self.get_image_history),
            ("GET", "/images/{name:path}/get", self.get_image_get),
            ("POST", "/images/{name:path}/tag", self.post_image_tag),
            ("DELETE", "/images/{name:path}", self.delete_image),
        ]
