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
from dockyard.api.server import Request, Response, Router, json_response
from dockyard.errors import Conflict, InvalidParameter, NotFound, NotSupported

NO_REGISTRY = "this daemon has no registry client: plugins cannot be installed or pushed"


def _privilege_set(privs: Any) -> set[tuple[str, tuple[str, ...]]]:
    if not isinstance(privs, list):
        raise InvalidParameter("the body must be the list of privileges granted")
    try:
        return {(str(p["Name"]), tuple(sorted(str(v) for v in p.get("Value") or []))) for p in privs}
    except (TypeError, KeyError):
        raise InvalidParameter("invalid privilege in the body") from None


def register(router: Router, plugins: ManagedPluginBackend | None,
             registry: DistributionBackend | None = None) -> None:
    r = router.add

    if plugins is None or registry is None:
        async def no_registry(req: Request) -> Response:
            raise NotSupported(NO_REGISTRY)

        r("GET", "/plugins/privileges", no_registry)
        r("POST", "/plugins/pull", no_registry)
        r("POST", "/plugins/{name:path}/push", no_registry)
        r("POST", "/plugins/{name:path}/upgrade", no_registry)
    else:
        reg, man = registry, plugins

        async def privileges(req: Request) -> Response:
            remote = req.q("remote") or ""
            if not remote:
                raise InvalidParameter("remote is required")
            config = await reg.plugin_config(remote, req.headers.get("x-registry-auth"))
            return json_response(await asyncio.to_thread(man.privileges_for, config))

        async def fetch(req: Request, remote: str, then: Any) -> Response:
            """Privileges checked, then the plugin pulled and handed to `then(config, layers)`."""
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

        async def pull(req: Request) -> Response:
            remote = req.q("remote") or ""
            if not remote:
                raise InvalidParameter("remote is required")
            name = req.q("name") or remote
            local = await asyncio.to_thread(man.full_name, name)
            resp = await fetch(req, remote, lambda cfg, layers: man.install(name, remote, cfg, layers))
            resp.headers["Docker-Plugin-Name"] = local  # the CLI enables the plugin by this name
            return resp

        async def upgrade(req: Request) -> Response:
            remote = req.q("remote") or ""
            if not remote:
                raise InvalidParameter("remote is required")
            name = req.params["name"]
            if (await asyncio.to_thread(man.inspect, name))["Enabled"]:
                raise Conflict(f"plugin must be disabled before upgrading: plugin {name} is enabled")
            return await fetch(req, remote, lambda cfg, layers: man.upgrade(name, remote, cfg, layers))

        async def push(req: Request) -> Response:
            name, config, layers = await asyncio.to_thread(man.for_push, req.params["name"])
            return await _stream(reg.push_plugin(name, config, layers, req.headers.get("x-registry-auth")))

        r("GET", "/plugins/privileges", privileges)
        r("POST", "/plugins/pull", pull)
        r("POST", "/plugins/{name:path}/upgrade", upgrade)
        r("POST", "/plugins/{name:path}/push", push)

    if plugins is None:  # a daemon built without them answers as dockerd with none installed
        async def plugin_list_empty(req: Request) -> Response:
            req.qjson("filters")
            return json_response([])

        async def no_such_plugin(req: Request) -> Response:
            raise NotFound(f'plugin "{req.params["name"]}" not found')

        r("GET", "/plugins", plugin_list_empty)
        r("GET", "/plugins/{name:path}/json", no_such_plugin)
        r("DELETE", "/plugins/{name:path}", no_such_plugin)
        for action in ("enable", "disable", "set"):
            r("POST", f"/plugins/{{name:path}}/{action}", no_such_plugin)
        async def no_plugins(req: Request) -> Response:
            raise NotSupported("plugins are not supported by this daemon")

        r("POST", "/plugins/create", no_plugins)
        return
    mp = plugins

    async def plugin_list(req: Request) -> Response:
        return json_response(await asyncio.to_thread(mp.list, req.qjson("filters")))

    async def plugin_inspect(req: Request) -> Response:
        return json_response(await asyncio.to_thread(mp.inspect, req.params["name"]))

    async def plugin_remove(req: Request) -> Response:
        await asyncio.to_thread(mp.remove, req.params["name"], req.qbool("force"))
        return Response(200)

    async def plugin_enable(req: Request) -> Response:
        await asyncio.to_thread(mp.enable, req.params["name"], req.qint("timeout", 30) or 30)
        return Response(200)

    async def plugin_disable(req: Request) -> Response:
        await asyncio.to_thread(mp.disable, req.params["name"], req.qbool("force"))
        return Response(200)

    async def plugin_set(req: Request) -> Response:
        body = await req.json()
        if not isinstance(body, list) or not all(isinstance(a, str) for a in body):
            raise InvalidParameter("plugin set: the body must be a list of KEY=VALUE strings")
        await asyncio.to_thread(mp.set, req.params["name"], body)
        return Response(204)

    async def plugin_create(req: Request) -> Response:
        name = req.q("name") or ""
        if not name:
            raise InvalidParameter("plugin create: name is required")
        with tempfile.SpooledTemporaryFile(max_size=8 << 20) as ctx:
            async for chunk in req.stream():
                await asyncio.to_thread(ctx.write, chunk)
            ctx.seek(0)
            await asyncio.to_thread(mp.create, name, ctx)
        return Response(204)

    r("GET", "/plugins", plugin_list)
    r("GET", "/plugins/{name:path}/json", plugin_inspect)
    r("DELETE", "/plugins/{name:path}", plugin_remove)
    r("POST", "/plugins/{name:path}/enable", plugin_enable)
    r("POST", "/plugins/{name:path}/disable", plugin_disable)
    r("POST", "/plugins/{name:path}/set", plugin_set)
    r("POST", "/plugins/create", plugin_create)
