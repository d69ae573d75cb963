"""The /plugins paths (Docker's managed plugins).

Dockyard has no managed plugins yet: the list is empty, an unknown name is dockerd's 404, and
installing or creating one is refused with 501.
"""

from __future__ import annotations

from dockyard.api.server import Request, Response, Router, json_response
from dockyard.errors import NotFound, NotSupported


def register(router: Router) -> None:
    async def plugin_list(req: Request) -> Response:
        req.qjson("filters")
        return json_response([])

    async def no_such_plugin(req: Request) -> Response:
        raise NotFound(f'plugin "{req.params["name"]}" not found')

    async def no_plugins(req: Request) -> Response:
        raise NotSupported("plugins are not supported by Dockyard")

    r = router.add
    r("GET", "/plugins", plugin_list)
    r("GET", "/plugins/{name:path}/json", no_such_plugin)
    r("DELETE", "/plugins/{name:path}", no_such_plugin)
    for action in ("enable", "disable", "push", "set", "upgrade"):
        r("POST", f"/plugins/{{name:path}}/{action}", no_such_plugin)
    r("GET", "/plugins/privileges", no_plugins)
    r("POST", "/plugins/pull", no_plugins)
    r("POST", "/plugins/create", no_plugins)
