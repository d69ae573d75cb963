"""POST /build (the classic builder's wire protocol), POST /build/prune."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from dockyard.api.backends import BuildBackend
from dockyard.api.server import Request, Response, Router, json_response, ndjson_stream
from dockyard.errors import InvalidParameter


def _json_param(req: Request, name: str) -> dict[str, Any]:
    v = req.qjson(name)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise InvalidParameter(f"invalid {name}: expected a JSON object")
    return v


def register(router: Router, builder: BuildBackend) -> None:
    from dockyard.builder.builder import BuildOptions

    async def post_build(req: Request) -> Response:
        if req.q("remote"):
            raise InvalidParameter("remote build contexts are not supported")
        auth = req.headers.get("x-registry-config")
        if auth:  # the CLI sends every configured registry; the puller wants one X-Registry-Auth value
            try:
                cfgs = json.loads(base64.urlsafe_b64decode(auth + "=" * (-len(auth) % 4)))
                auth = base64.urlsafe_b64encode(json.dumps(next(iter(cfgs.values()))).encode()).decode() \
                    if isinstance(cfgs, dict) and cfgs else None
            except (ValueError, StopIteration):
                auth = None
        opts = BuildOptions(
            dockerfile=req.q("dockerfile") or "Dockerfile",
            tags=[t for t in req.query.get("t", []) if t],
            target=req.q("target") or "",
            nocache=req.qbool("nocache"),
            pull=req.qbool("pull"),
            labels={str(k): str(v) for k, v in _json_param(req, "labels").items()},
            buildargs={str(k): (None if v is None else str(v)) for k, v in _json_param(req, "buildargs").items()},
            networkmode=req.q("networkmode") or "",
            quiet=req.qbool("q"),
            platform=req.q("platform") or "",
            rm=req.qbool("rm", True),
            forcerm=req.qbool("forcerm"),
            auth=auth,
        )
        from dockyard.oci import reference

        for t in opts.tags:
            reference.parse(t)  # a bad tag fails before the context is read
        return ndjson_stream(builder.build(req.stream(), opts))

    async def post_build_prune(req: Request) -> Response:
        return json_response(await asyncio.to_thread(builder.prune, req.qbool("all")))

    async def get_build_cache(req: Request) -> Response:
        return json_response(builder.disk_usage())

    async def post_build_cancel(req: Request) -> Response:
        # dockerd cancels BuildKit builds by id; a classic build stops when its client hangs up
        return Response(200)

    router.add("POST", "/build", post_build)
    router.add("POST", "/build/cancel", post_build_cancel)
    router.add("POST", "/build/prune", post_build_prune)
    router.add("GET", "/build/cache", get_build_cache)
