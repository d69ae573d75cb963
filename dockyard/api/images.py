"""Image endpoints: list, inspect, history, tag, delete, prune, load, save, import (create fromSrc).

Pull (create with fromImage) is dispatched to api/distribution.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from dockyard.api.server import Request, Response, Router, json_response, ndjson_stream
from dockyard.errors import InvalidParameter


async def _items(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for it in items:
        yield it


def _tar_response(body: AsyncIterator[bytes]) -> Response:
    return Response(200, {"Content-Type": "application/x-tar"}, body)


def register(router: Router, images: Any) -> None:
    async def get_images_json(req: Request) -> Response:
        return json_response(images.list(req.qjson("filters"), all=req.qbool("all"), digests=req.qbool("digests")))

    async def get_image_inspect(req: Request) -> Response:
        return json_response(images.inspect(req.params["name"]))

    async def get_image_history(req: Request) -> Response:
        return json_response(images.history(req.params["name"]))

    async def post_image_tag(req: Request) -> Response:
        images.tag(req.params["name"], req.q("repo") or "", req.q("tag") or None)
        return Response(201)

    async def delete_image(req: Request) -> Response:
        # deleting removes snapshot dirs: blocking work, off the event loop
        return json_response(await asyncio.to_thread(images.delete, req.params["name"], req.qbool("force"),
                                                     req.qbool("noprune")))

    async def post_images_prune(req: Request) -> Response:
        return json_response(await asyncio.to_thread(images.prune, req.qjson("filters")))

    async def post_images_load(req: Request) -> Response:
        msgs = await images.load(req.stream(), quiet=req.qbool("quiet"))
        return ndjson_stream(_items(msgs))

    async def get_images_get(req: Request) -> Response:
        names = [n for v in req.query.get("names", []) for n in v.split(",") if n]
        return _tar_response(await images.save(names))

    async def get_image_get(req: Request) -> Response:
        return _tar_response(await images.save([req.params["name"]]))

    async def post_images_create(req: Request) -> Response:
        if req.q("fromImage"):
            from dockyard.api import distribution

            return await distribution.pull_stream(req)
        src = req.q("fromSrc")
        if src != "-":
            raise InvalidParameter("fromSrc must be '-' (import from a URL is not supported)" if src
                                   else "fromImage or fromSrc is required")
        msgs = await images.import_(req.stream(), repo=req.q("repo") or "", tag=req.q("tag") or "",
                                    changes=req.query.get("changes", []),
                                    message=req.q("message") or f"Imported from {src}")  # Docker's default
        return ndjson_stream(_items(msgs))

    r = router.add
    r("GET", "/images/json", get_images_json)
    r("GET", "/images/get", get_images_get)
    r("POST", "/images/prune", post_images_prune)
    r("POST", "/images/load", post_images_load)
    r("POST", "/images/create", post_images_create)
    r("GET", "/images/{name:path}/json", get_image_inspect)
    r("GET", "/images/{name:path}/history", get_image_history)
    r("GET", "/images/{name:path}/get", get_image_get)
    r("POST", "/images/{name:path}/tag", post_image_tag)
    r("DELETE", "/images/{name:path}", delete_image)
