"""Paths dockerd serves for swarm mode and BuildKit sessions.

Swarm: with a `SwarmBackend`, `swarm init` makes this node a single-node swarm (services/swarm.py):
/swarm, /nodes and swarm-scoped networks answer as dockerd's do; services, tasks, secrets and configs
list empty and refuse creation with 501 (why in the message). Outside a swarm every path answers as
dockerd 20.10 does on a node outside any swarm (same status, same message), so clients take their
usual "not here" branch instead of a bare 404: docker-py's `leave_swarm(force=True)` treats the 503
as done. The /plugins paths are `api/plugins.py`'s.
"""

from __future__ import annotations

import json
from typing import Any

from dockyard.api.backends import SwarmBackend
from dockyard.api.server import Request, Response, Route, json_response
from dockyard.errors import DockyardError, InvalidParameter, NotFound, NotSupported, Unavailable
from dockyard.http.routing import Handler

NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to '
               "connect this node to swarm and try again.")
NOT_IN_SWARM = "This node is not part of a swarm"
NO_SERVICES = ("Dockyard's swarm mode is one node with swarm networks only: it runs no services, tasks, secrets "
               "or configs (run containers on an attachable overlay network instead)")


async def _body(req: Request) -> Any:
    """The JSON body, with dockerd's wording for an empty one (Go's decoder meets EOF)."""
    data = await req.body()
    if not data.strip():
        raise InvalidParameter("got EOF while reading request body")
    try:
        return json.loads(data)
    except ValueError as e:
        raise InvalidParameter(f"invalid JSON: {e}") from None


def _obj(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidParameter("json: cannot unmarshal into Go value of type object")
    return body


def _version(req: Request, kind: str) -> str:
    """Object updates parse ?version= before anything else, as dockerd does."""
    v = req.q("version") or ""
    if not v.isdigit():
        if kind in ("secret", "config"):
            raise InvalidParameter(f"invalid {kind} version")
        raise InvalidParameter(f"invalid {kind} version '{v}': strconv.ParseUint: parsing \"{v}\": invalid syntax")
    return v


class SwarmRoutes:
    """Swarm mode's paths over the SwarmBackend (None: a daemon without swarm mode, answering as
    dockerd outside a swarm), BuildKit's upgrades and the OPTIONS preflight."""

    def __init__(self, swarm: SwarmBackend | None = None) -> None:
        self.swarm = swarm

    def active(self) -> bool:
        return self.swarm is not None and self.swarm.active()

    async def not_manager(self, req: Request) -> Response:
        raise Unavailable(NOT_MANAGER)

    async def not_manager_after_body(self, req: Request) -> Response:
        await _body(req)
        raise Unavailable(NOT_MANAGER)

    async def inspect(self, req: Request) -> Response:
        if self.swarm is None:
            raise Unavailable(NOT_MANAGER)
        return json_response(self.swarm.inspect())

    async def leave(self, req: Request) -> Response:
        if self.swarm is None:
            raise Unavailable(NOT_IN_SWARM)
        await self.swarm.leave(req.qbool("force"))
        return Response(200)

    async def init(self, req: Request) -> Response:
        body = await _body(req)
        addr = body.get("ListenAddr", "") if isinstance(body, dict) else ""
        if not addr:
            raise InvalidParameter(f'invalid ListenAddr "{addr}": invalid empty address')
        if self.swarm is None:
            raise NotSupported("swarm mode is not supported by this daemon")
        return json_response(await self.swarm.init(_obj(body)))

    async def join(self, req: Request) -> Response:
        body = await _body(req)
        addr = body.get("ListenAddr", "") if isinstance(body, dict) else ""
        if not addr:
            raise InvalidParameter(f'invalid ListenAddr "{addr}": invalid empty address')
        if self.active():
            raise Unavailable('This node is already part of a swarm. Use "docker swarm leave" to leave this swarm '
                              "and join another one.")
        raise NotSupported("joining a swarm is not supported by Dockyard: its swarm mode is a single node "
                           "(`docker swarm init` makes one)")

    async def update(self, req: Request) -> Response:
        version = _version(req, "swarm")
        body = _obj(await _body(req))
        if self.swarm is None:
            raise Unavailable(NOT_MANAGER)
        self.swarm.update(version, body, req.qbool("rotateWorkerToken"), req.qbool("rotateManagerToken"))
        return Response(200)

    async def unlock_key(self, req: Request) -> Response:
        if self.swarm is None:
            raise Unavailable(NOT_MANAGER)
        return json_response(self.swarm.unlock_key())

    async def unlock(self, req: Request) -> Response:
        await _body(req)
        if self.active():
            raise InvalidParameter("swarm is not locked")
        raise Unavailable(NOT_MANAGER)

    async def node_list(self, req: Request) -> Response:
        if self.swarm is None:
            raise Unavailable(NOT_MANAGER)
        return json_response(self.swarm.nodes(req.qjson("filters") or {}))

    async def node_inspect(self, req: Request) -> Response:
        if self.swarm is None:
            raise Unavailable(NOT_MANAGER)
        return json_response(self.swarm.node(req.params["id"]))

    async def node_update(self, req: Request) -> Response:
        version = _version(req, "node")
        body = _obj(await _body(req))
        if self.swarm is None:
            raise Unavailable(NOT_MANAGER)
        self.swarm.update_node(req.params["id"], version, body)
        return Response(200)

    async def node_delete(self, req: Request) -> Response:
        if self.swarm is None:
            raise Unavailable(NOT_MANAGER)
        self.swarm.remove_node(req.params["id"], req.qbool("force"))
        return Response(200)

    def none_listed(self, kind: str) -> Handler:
        async def handler(req: Request) -> Response:
            if not self.active():
                raise Unavailable(NOT_MANAGER)
            req.qjson("filters")
            return json_response([])
        return handler

    def not_found(self, kind: str) -> Handler:
        async def handler(req: Request) -> Response:
            if not self.active():
                raise Unavailable(NOT_MANAGER)
            raise NotFound(f"{kind} {req.params['id']} not found")
        return handler

    async def create(self, req: Request) -> Response:
        await _body(req)
        if not self.active():
            raise Unavailable(NOT_MANAGER)
        raise NotSupported(NO_SERVICES)

    def updater(self, kind: str) -> Handler:
        async def handler(req: Request) -> Response:
            _version(req, kind)
            await _body(req)
            if not self.active():
                raise Unavailable(NOT_MANAGER)
            raise NotFound(f"{kind} {req.params['id']} not found")
        return handler

    def logs(self, kind: str) -> Handler:
        async def handler(req: Request) -> Response:
            if not (req.qbool("stdout") or req.qbool("stderr")):
                raise DockyardError("Bad parameters: you must choose at least one stream")
            if not self.active():
                raise Unavailable(NOT_MANAGER)
            raise NotFound(f"{kind} {req.params['id']} not found")
        return handler

    # BuildKit's session and gRPC upgrades: Dockyard has the classic builder only (_ping says so).
    async def upgrade_only(self, req: Request) -> Response:
        if not req.headers.get("upgrade"):
            raise InvalidParameter("no upgrade proto in request")
        raise NotSupported("BuildKit is not supported by Dockyard (Builder-Version 1, the classic builder)")

    # dockerd answers OPTIONS on any path (its CORS preflight handler), with an empty 200.
    async def options(self, req: Request) -> Response:
        return Response(200, {"Content-Type": "text/plain; charset=utf-8"}, b"")

    def _objects(self) -> list[Route]:
        """Services, tasks, secrets, configs: none exist in a swarm here, and none can be made."""
        table: list[Route] = []
        for kind in ("services", "tasks", "secrets", "configs"):
            one = kind.rstrip("s")
            table += [("GET", f"/{kind}", self.none_listed(one)), ("GET", f"/{kind}/{{id}}", self.not_found(one))]
            if kind != "tasks":
                table += [("DELETE", f"/{kind}/{{id}}", self.not_found(one)),
                          ("POST", f"/{kind}/{{id}}/update", self.updater(one)),
                          ("POST", f"/{kind}/create", self.create)]
        return table

    def routes(self) -> list[Route]:
        return [
            ("POST", "/swarm/init", self.init),
            ("POST", "/swarm/join", self.join),
            ("POST", "/swarm/leave", self.leave),
            ("POST", "/swarm/update", self.update),
            ("POST", "/swarm/unlock", self.unlock),
            ("GET", "/swarm", self.inspect),
            ("GET", "/swarm/unlockkey", self.unlock_key),
            ("GET", "/nodes", self.node_list),
            ("GET", "/nodes/{id}", self.node_inspect),
            ("DELETE", "/nodes/{id}", self.node_delete),
            ("POST", "/nodes/{id}/update", self.node_update),
            *self._objects(),
            ("GET", "/services/{id}/logs", self.logs("service")),
            ("GET", "/tasks/{id}/logs", self.logs("task")),
            ("POST", "/session", self.upgrade_only),
            ("POST", "/grpc", self.upgrade_only),
            ("OPTIONS", "/{any:path}", self.options),
        ]
