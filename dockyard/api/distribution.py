"""Distribution endpoints: pull (dispatched from POST /images/create), push, /distribution, /auth.

`DistributionRoutes` are the routes; `pull_stream(req, distribution)` is what
api/images.py calls for POST /images/create when `fromImage` is set. The distribution service is
seen through `backends.DistributionBackend`, so the API imports no adapters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from dockyard.api.backends import DistributionBackend
from dockyard.api.server import Request, Response, Route, json_response, ndjson_stream
from dockyard.errors import DockyardError, InvalidParameter, NotFound, describe


async def _stream(events: AsyncIterator[dict[str, Any]]) -> Response:
    """Errors before the first event become an HTTP status (as dockerd does: nothing written yet);
    later ones an errorDetail line, since the 200 is already on the wire."""
    try:
        first = await anext(events)
    except StopAsyncIteration:
        first = None

    async def rest() -> AsyncIterator[dict[str, Any]]:
        if first is not None:
            yield first
        try:
            async for ev in events:
                yield ev
        except DockyardError as e:
            yield {"errorDetail": {"message": e.message}, "error": e.message}
        except Exception as e:  # a registry that dies mid-pull, a full disk...
            msg = describe(e)
            yield {"errorDetail": {"message": msg}, "error": msg}

    return ndjson_stream(rest())


async def pull_stream(req: Request, distribution: DistributionBackend | None) -> Response:
    """POST /images/create?fromImage=&tag=&platform= (X-Registry-Auth header)."""
    image = req.q("fromImage")
    if not image:
        raise InvalidParameter("fromImage is required")
    if distribution is None:
        raise DockyardError("distribution is not configured")
    events = distribution.pull(image, req.q("tag") or None, req.q("platform") or None,
                         req.headers.get("x-registry-auth"))
    return await _stream(events)


class DistributionRoutes:
    """Push, /distribution, /auth and search over the DistributionBackend (pull is ImageRoutes')."""

    def __init__(self, distribution: DistributionBackend) -> None:
        self.distribution = distribution

    async def post_images_push(self, req: Request) -> Response:
        name = req.params["name"]
        events = self.distribution.push(name, req.q("tag") or None, req.headers.get("x-registry-auth"),
                                        req.q("referrers") in ("1", "true"))  # Dockyard's --with-referrers
        try:
            return await _stream(events)
        except NotFound as e:  # docker: "An image does not exist locally with the tag: x"
            raise NotFound(f"An image does not exist locally with the tag: {name}") from e

    async def get_distribution_inspect(self, req: Request) -> Response:
        return json_response(await self.distribution.inspect(req.params["name"], req.headers.get("x-registry-auth")))

    async def get_distribution_referrers(self, req: Request) -> Response:
        return json_response(await self.distribution.referrers(req.params["name"], req.q("artifactType") or None,
                                                          req.headers.get("x-registry-auth")))

    async def get_distribution_signatures(self, req: Request) -> Response:
        return json_response(await self.distribution.signatures(req.params["name"], req.headers.get("x-registry-auth")))

    async def post_distribution_signatures(self, req: Request) -> Response:
        """Dockyard's: store a cosign-format signature the client made ({"Payload": b64, "Signature": b64})."""
        import base64
        import binascii

        body = await req.json()
        if not isinstance(body, dict) or not isinstance(body.get("Signature"), str):
            raise InvalidParameter("a signature needs Payload and Signature")
        try:
            payload = base64.b64decode(str(body.get("Payload") or ""), validate=True)
        except binascii.Error:
            raise InvalidParameter("Payload is not base64") from None
        return json_response(await self.distribution.add_signature(req.params["name"], payload, body["Signature"],
                                                              req.headers.get("x-registry-auth")), 201)

    async def post_auth(self, req: Request) -> Response:
        body = await req.json()
        if not isinstance(body, dict):
            raise InvalidParameter("invalid auth configuration")
        return json_response(await self.distribution.login(body))

    async def get_images_search(self, req: Request) -> Response:
        import json

        term = req.q("term")
        if not term:
            raise InvalidParameter("term is required")
        try:
            limit = int(req.q("limit") or 25)
            filters = json.loads(req.q("filters") or "{}")
        except ValueError as e:
            raise InvalidParameter(f"invalid search parameters: {e}") from None
        if not 1 <= limit <= 100:
            raise InvalidParameter(f"limit {limit} is outside the range of [1, 100]")
        if isinstance(filters, dict):  # the old {"key": {"value": true}} shape and the list one
            filters = {k: list(v) if isinstance(v, (dict, list)) else [str(v)] for k, v in filters.items()}
        else:
            filters = {}
        return json_response(await self.distribution.search(term, limit, filters))

    def routes(self) -> list[Route]:
        return [
            ("POST", "/images/{name:path}/push", self.post_images_push),
            ("GET", "/distribution/{name:path}/json", self.get_distribution_inspect),
            ("GET", "/distribution/{name:path}/referrers", self.get_distribution_referrers),
            ("GET", "/distribution/{name:path}/signatures", self.get_distribution_signatures),
            ("POST", "/distribution/{name:path}/signatures", self.post_distribution_signatures),
            ("POST", "/auth", self.post_auth),
            ("GET", "/images/search", self.get_images_search),
        ]
