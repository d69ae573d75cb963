"""The /plugins paths: managed plugins (services/managed_plugins.py).

Made from a local directory (`docker plugin create`) or installed from a registry (privileges, then
pull: the granted privileges must be the ones the config asks for), listed, inspected, configured,
enabled under runc, disabled, upgraded (a disabled one), pushed and removed.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

from dockyard.api.backends import DistributionBackend, ManagedPluginBackend
from dockyard.api.distribution import _stream
from dockyard.api.server import Request, Response, Route, json_response
from dockyard.errors import Conflict, InvalidParameter, NotFound, NotSupported

NO_REGISTRY = "this daemon has no registry client: plugins cannot be installed or pushed"


def _privilege_set(privs: Any) -> set[tuple[str, tuple[str, ...]]]:
    if not isinstance(privs, list):
        raise InvalidParameter("the body must be the list of privileges granted")
    try:
        return {(str(p["Name"]), tuple(sorted(str(v) for v in p.get("Value") or []))) for p in privs}
    except (TypeError, KeyError):
        raise InvalidParameter("invalid privilege in the body") from None


class PluginRoutes:
    """The /plugins paths over the ManagedPluginBackend and, to install, upgrade and push, the
    DistributionBackend. A daemon without managed plugins answers as dockerd with none installed; one
    without a registry client refuses what needs one (501)."""

    def __init__(self, plugins: ManagedPluginBackend | None, registry: DistributionBackend | None = None) -> None:
        self.plugins = plugins
        self.registry = registry

    def _man(self) -> ManagedPluginBackend:
        if self.plugins is None:  # routes() lists the handlers that use it only when it is there
            raise NotSupported("plugins are not supported by this daemon")
        return self.plugins

    def _reg(self) -> DistributionBackend:
        if self.registry is None:
            raise NotSupported(NO_REGISTRY)
        return self.registry

    # Without a registry client (or without managed plugins).

    async def no_registry(self, req: Request) -> Response:
        raise NotSupported(NO_REGISTRY)

    # Without managed plugins.

    async def plugin_list_empty(self, req: Request) -> Response:
        req.qjson("filters")
        return json_response([])

    async def no_such_plugin(self, req: Request) -> Response:
        raise NotFound(f'plugin "{req.params["name"]}" not found')

    async def no_plugins(self, req: Request) -> Response:
        raise NotSupported("plugins are not supported by this daemon")

    # Through a registry.

    async def privileges(self, req: Request) -> Response:
        remote = req.q("remote") or ""
        if not remote:
            raise InvalidParameter("remote is required")
        config = await self._reg().plugin_config(remote, req.headers.get("x-registry-auth"))
        return json_response(await asyncio.to_thread(self._man().privileges_for, config))

    async def _fetch(self, req: Request, remote: str, then: Any) -> Response:
        """Privileges checked, then the plugin pulled and handed to `then(config, layers)`."""
        reg, man = self._reg(), self._man()
        granted = _privilege_set(await req.json() or [])
        auth = req.headers.get("x-registry-auth")
        config = await reg.plugin_config(remote, auth)
        needed = _privilege_set(await asyncio.to_thread(man.privileges_for, config))
        if needed != granted:  # dockerd: the user must have granted exactly what the plugin asks
            raise InvalidParameter("incorrect privileges")

        async def events() -> Any:
            out: dict[str, Any] = {}
            async for ev in reg.pull_plugin(remote, auth, out):
                yield ev
            await asyncio.to_thread(then, out["config"], out["layers"])

        return await _stream(events())

    async def pull(self, req: Request) -> Response:
        remote = req.q("remote") or ""
        if not remote:
            raise InvalidParameter("remote is required")
        man = self._man()
        name = req.q("name") or remote
        local = await asyncio.to_thread(man.full_name, name)
        resp = await self._fetch(req, remote, lambda cfg, layers: man.install(name, remote, cfg, layers))
        resp.headers["Docker-Plugin-Name"] = local  # the CLI enables the plugin by this name
        return resp

    async def upgrade(self, req: Request) -> Response:
        remote = req.q("remote") or ""
        if not remote:
            raise InvalidParameter("remote is required")
        man = self._man()
        name = req.params["name"]
        if (await asyncio.to_thread(man.inspect, name))["Enabled"]:
            raise Conflict(f"plugin must be disabled before upgrading: plugin {name} is enabled")
        return await self._fetch(req, remote, lambda cfg, layers: man.upgrade(name, remote, cfg, layers))

    async def push(self, req: Request) -> Response:
        name, config, layers = await asyncio.to_thread(self._man().for_push, req.params["name"])
        return await _stream(self._reg().push_plugin(name, config, layers, req.headers.get("x-registry-auth")))

    # Managed plugins.

    async def plugin_list(self, req: Request) -> Response:
        return json_response(await asyncio.to_thread(self._man().list, req.qjson("filters")))

    async def plugin_inspect(self, req: Request) -> Response:
        return json_response(await asyncio.to_thread(self._man().inspect, req.params["name"]))

    async def plugin_remove(self, req: Request) -> Response:
        await asyncio.to_thread(self._man().remove, req.params["name"], req.qbool("force"))
        return Response(200)

    async def plugin_enable(self, req: Request) -> Response:
        await asyncio.to_thread(self._man().enable, req.params["name"], req.qint("timeout", 30) or 30)
        return Response(200)

    async def plugin_disable(self, req: Request) -> Response:
        await asyncio.to_thread(self._man().disable, req.params["name"], req.qbool("force"))
        return Response(200)

    async def plugin_set(self, req: Request) -> Response:
        body = await req.json()
        if not isinstance(body, list) or not all(isinstance(a, str) for a in body):
            raise InvalidParameter("plugin set: the body must be a list of KEY=VALUE strings")
        await asyncio.to_thread(self._man().set, req.params["name"], body)
        return Response(204)

    async def plugin_create(self, req: Request) -> Response:
        name = req.q("name") or ""
        if not name:
            raise InvalidParameter("plugin create: name is required")
        man = self._man()
        with tempfile.SpooledTemporaryFile(max_size=8 << 20) as ctx:
            async for chunk in req.stream():
                await asyncio.to_thread(ctx.write, chunk)
            ctx.seek(0)
            await asyncio.to_thread(man.create, name, ctx)
        return Response(204)

    def routes(self) -> list[Route]:
        table: list[Route]
        if self.plugins is None or self.registry is None:
            table = [
                ("GET", "/plugins/privileges", self.no_registry),
                ("POST", "/plugins/pull", self.no_registry),
                ("POST", "/plugins/{name:path}/push", self.no_registry),
                ("POST", "/plugins/{name:path}/upgrade", self.no_registry),
            ]
        else:
            table = [
                ("GET", "/plugins/privileges", self.privileges),
                ("POST", "/plugins/pull", self.pull),
                ("POST", "/plugins/{name:path}/upgrade", self.upgrade),
                ("POST", "/plugins/{name:path}/push", self.push),
            ]
        if self.plugins is None:
            return table + [
                ("GET", "/plugins", self.plugin_list_empty),
                ("GET", "/plugins/{name:path}/json", self.no_such_plugin),
                ("DELETE", "/plugins/{name:path}", self.no_such_plugin),
                ("POST", "/plugins/{name:path}/enable", self.no_such_plugin),
                ("POST", "/plugins/{name:path}/disable", self.no_such_plugin),
                ("POST", "/plugins/{name:path}/set", self.no_such_plugin),
                ("POST", "/plugins/create", self.no_plugins),
            ]
        return table + [
            ("GET", "/plugins", self.plugin_list),
            ("GET", "/plugins/{name:path}/json", self.plugin_inspect),
            ("DELETE", "/plugins/{name:path}", self.plugin_remove),
            ("POST", "/plugins/{name:path}/enable", self.plugin_enable),
            ("POST", "/plugins/{name:path}/disable", self.plugin_disable),
            ("POST", "/plugins/{name:path}/set", self.plugin_set),
            ("POST", "/plugins/create", self.plugin_create),
        ]
