"""Paths dockerd serves that Dockyard has no engine for: swarm mode, BuildKit sessions.

Each answers as dockerd 20.10 does on a node outside any swarm (same status, same message), so
clients take their usual "not here" branch instead of a bare 404 "page not found": docker-py's
`leave_swarm(force=True)` treats the 503 as done. Joining or creating a swarm is refused with 501.
The /plugins paths are `api/plugins.py`'s.
"""

from __future__ import annotations

import json
from typing import Any

from dockyard.api.server import Request, Response, Router
from dockyard.errors import DockyardError, InvalidParameter, NotSupported, Unavailable

NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to '
               "connect this node to swarm and try again.")
NOT_IN_SWARM = "This node is not part of a swarm"


async def _body(req: Request) -> Any:
    """The JSON body, with dockerd's wording for an empty one (Go's decoder meets EOF)."""
    data = await req.body()
    if not data.strip():
        raise InvalidParameter("got EOF while reading request body")
    try:
        return json.loads(data)
    except ValueError as e:
        raise InvalidParameter(f"invalid JSON: {e}") from None


def _version(req: Request, kind: str) -> None:
    """Object updates parse ?version= before anything else, as dockerd does."""
    v = req.q("version") or ""
    if not v.isdigit():
        if kind in ("secret", "config"):
            raise InvalidParameter(f"invalid {kind} version")
        raise InvalidParameter(f"invalid {kind} version '{v}': strconv.ParseUint: parsing \"{v}\": invalid syntax")


def register(router: Router) -> None:
    async def not_manager(req: Request) -> Response:
        raise Unavailable(NOT_MANAGER)

    async def not_manager_after_body(req: Request) -> Response:
        await _body(req)
        raise Unavailable(NOT_MANAGER)

    async def leave(req: Request) -> Response:
        raise Unavailable(NOT_IN_SWARM)

    async def init_or_join(req: Request) -> Response:
        body = await _body(req)
        addr = body.get("ListenAddr", "") if isinstance(body, dict) else ""
        if not addr:
            raise InvalidParameter(f'invalid ListenAddr "{addr}": invalid empty address')
        raise NotSupported("swarm mode is not supported by Dockyard: this node cannot init or join a swarm")

    def updater(kind: str) -> Any:
        async def update(req: Request) -> Response:
            _version(req, kind)
            await _body(req)
            raise Unavailable(NOT_MANAGER)
        return update

    async def logs(req: Request) -> Response:
        if not (req.qbool("stdout") or req.qbool("stderr")):
            raise DockyardError("Bad parameters: you must choose at least one stream")
        raise Unavailable(NOT_MANAGER)

    r = router.add
    r("POST", "/swarm/init", init_or_join)
    r("POST", "/swarm/join", init_or_join)
    r("POST", "/swarm/leave", leave)
    r("POST", "/swarm/update", updater("swarm"))
    r("POST", "/swarm/unlock", not_manager_after_body)
    r("GET", "/swarm", not_manager)
    r("GET", "/swarm/unlockkey", not_manager)
    for kind in ("services", "nodes", "tasks", "secrets", "configs"):
        r("GET", f"/{kind}", not_manager)
        r("GET", f"/{kind}/{{id}}", not_manager)
        if kind != "tasks":
            r("DELETE", f"/{kind}/{{id}}", not_manager)
            r("POST", f"/{kind}/{{id}}/update", updater(kind.rstrip("s")))
        if kind not in ("nodes", "tasks"):
            r("POST", f"/{kind}/create", not_manager_after_body)
    r("GET", "/services/{id}/logs", logs)
    r("GET", "/tasks/{id}/logs", logs)

    # BuildKit's session and gRPC upgrades: Dockyard has the classic builder only (_ping says so).
    async def upgrade_only(req: Request) -> Response:
        if not req.headers.get("upgrade"):
            raise InvalidParameter("no upgrade proto in request")
        raise NotSupported("BuildKit is not supported by Dockyard (Builder-Version 1, the classic builder)")

    r("POST", "/session", upgrade_only)
    r("POST", "/grpc", upgrade_only)

    # dockerd answers OPTIONS on any path (its CORS preflight handler), with an empty 200.
    async def options(req: Request) -> Response:
        return Response(200, {"Content-Type": "text/plain; charset=utf-8"}, b"")

    r("OPTIONS", "/{any:path}", options)
