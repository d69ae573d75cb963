"""The /plugins paths: managed plugins (services/managed_plugins.py).

Made from a local directory (`docker plugin create`), listed, inspected, configured, enabled under
runc, disabled and removed. Installing, upgrading and pushing through a registry (`plugin install`,
`GET /plugins/privileges?remote=`) are not built yet: 501 with a message that says so.
"""

from __future__ import annotations

import asyncio
import tempfile

from dockyard.api.backends import ManagedPluginBackend
from dockyard.api.server import Request, Response, Router, json_response
from dockyard.errors import InvalidParameter, NotFound, NotSupported

NO_REGISTRY = ("installing, upgrading or pushing plugins through a registry is not supported by Dockyard yet: "
               "make the plugin with `docker plugin create NAME DIR`")


def register(router: Router, plugins: ManagedPluginBackend | None) -> None:
    r = router.add

    async def no_registry(req: Request) -> Response:
        raise NotSupported(NO_REGISTRY)

    r("GET", "/plugins/privileges", no_registry)
    r("POST", "/plugins/pull", no_registry)
    for action in ("push", "upgrade"):
        r("POST", f"/plugins/{{name:path}}/{action}", no_registry)

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
        r("POST", "/plugins/create", no_registry)
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
