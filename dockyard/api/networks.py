"""Network endpoints (swagger operations NetworkList, NetworkInspect, NetworkCreate, NetworkDelete,
NetworkConnect, NetworkDisconnect, NetworkPrune)."""

from __future__ import annotations

import asyncio
from typing import Any

from dockyard.api.backends import NetworkBackend
from dockyard.api.server import Request, Response, Route, json_response
from dockyard.errors import InvalidParameter, NotFound


def _obj(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON body: expected an object")
    return body


class NetworkRoutes:
    """Network endpoints over the NetworkBackend."""

    def __init__(self, networks: NetworkBackend) -> None:
        self.networks = networks

    async def network_list(self, req: Request) -> Response:
        return json_response(await asyncio.to_thread(self.networks.list, req.qjson("filters") or {}))

    async def network_inspect(self, req: Request) -> Response:
        out = await asyncio.to_thread(self.networks.inspect, req.params["id"])
        scope = req.q("scope")
        if scope and scope != out.get("Scope"):  # ?scope=local finds no swarm network, and the reverse
            raise NotFound(f"network {req.params['id']} not found")
        return json_response(out)

    async def network_create(self, req: Request) -> Response:
        body = _obj(await req.json())
        ipam = body.get("IPAM") or {}
        if not isinstance(ipam, dict) or not isinstance(ipam.get("Config") or [], list) \
                or not isinstance(ipam.get("Options") or {}, dict):
            raise InvalidParameter("json: cannot unmarshal into Go struct field NetworkCreateRequest.IPAM")
        for key in ("Options", "Labels"):
            if not isinstance(body.get(key) or {}, dict):
                raise InvalidParameter(f"json: cannot unmarshal into Go struct field NetworkCreateRequest.{key}")
        out = await self.networks.create(
            body.get("Name") or "", driver=body.get("Driver") or "bridge",
            internal=bool(body.get("Internal")), attachable=bool(body.get("Attachable")),
            labels=body.get("Labels") or {}, options=body.get("Options") or {},
            ipam_driver=ipam.get("Driver") or "default", enable_ipv6=bool(body.get("EnableIPv6")),
            ipam_configs=ipam.get("Config") or [], ipam_options=ipam.get("Options"),
            scope=str(body.get("Scope") or ""), ingress=bool(body.get("Ingress")))
        return json_response(out, 201)

    async def network_delete(self, req: Request) -> Response:
        await self.networks.remove(req.params["id"])
        return Response(204)

    async def network_connect(self, req: Request) -> Response:
        body = _obj(await req.json())
        _check_container(body)
        ec = body.get("EndpointConfig") or {}
        if not isinstance(ec, dict):
            raise InvalidParameter("json: cannot unmarshal into Go struct field NetworkConnect.EndpointConfig")
        await self.networks.connect(req.params["id"], body["Container"], ec)
        return Response(200)

    async def network_disconnect(self, req: Request) -> Response:
        body = _obj(await req.json())
        _check_container(body)
        await self.networks.disconnect(req.params["id"], body["Container"], bool(body.get("Force")))
        return Response(200)

    async def network_prune(self, req: Request) -> Response:
        deleted = await self.networks.prune(req.qjson("filters") or {})
        return json_response({"NetworksDeleted": deleted or None})

    def routes(self) -> list[Route]:
        return [
            ("GET", "/networks", self.network_list),
            ("GET", "/networks/", self.network_list),  # dockerd's mux serves both
            ("GET", "/networks/{id}", self.network_inspect),
            ("POST", "/networks/create", self.network_create),
            ("DELETE", "/networks/{id}", self.network_delete),
            ("POST", "/networks/{id}/connect", self.network_connect),
            ("POST", "/networks/{id}/disconnect", self.network_disconnect),
            ("POST", "/networks/prune", self.network_prune),
        ]


def _check_container(body: dict[str, Any]) -> None:
    container = body.get("Container")
    if not container:
        raise InvalidParameter("no container specified")
    if not isinstance(container, str):
        raise InvalidParameter("json: cannot unmarshal into Go struct field of type string: Container")
