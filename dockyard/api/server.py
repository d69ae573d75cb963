"""The Engine API on the HTTP server (`dockyard/http`): its version prefix and limits, the headers
dockerd sends, errors as `{"message": ...}`, and the listen addresses (`-H`).

Handler modules import Request, Response, Router and the rest from here (re-exported from
`dockyard.http`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any

from dockyard import trace
from dockyard.api.backends import AuthZGate
from dockyard.api.listen import parse_listen_address
from dockyard.errors import DockyardError, InvalidParameter, describe
from dockyard.http import routing
from dockyard.http.messages import (
    DEFAULT_BODY_LIMIT,
    Hijack,
    PayloadTooLarge,
    Request,
    Response,
    aclose,
    json_response,
    ndjson_stream,
)
from dockyard.http.routing import MethodNotAllowed, Route
from dockyard.http.server import Limits, Server, Site

__all__ = [
    "API_VERSION", "DEFAULT_BODY_LIMIT", "MIN_API_VERSION", "Hijack", "MethodNotAllowed", "PayloadTooLarge",
    "Request", "Response", "Route", "Router", "Server", "aclose", "json_response", "ndjson_stream", "serve",
]

API_VERSION = "1.47"
MIN_API_VERSION = "1.24"
HEADER_TIMEOUT = 60.0  # a started request head must arrive within this; idle keep-alive may wait forever
_VERSION_PREFIX = re.compile(r"/v(\d+\.\d+)(?=/|$)")
_LIBPOD_PREFIX = re.compile(r"/v\d+(?:\.\d+){0,2}(?=/libpod/)")  # podman's clients: /v4.0.0/libpod/...

log = logging.getLogger("dockyard.api")


class Router(routing.Router):
    """The Engine API's routes, and the authorization plugins every request is put to."""

    def __init__(self) -> None:
        super().__init__()
        self.authz: AuthZGate | None = None  # set by build_router when plugins are configured
        # Set once the daemon has recovered its containers (daemon/wiring.Engine.recover); until then
        # only `_ping` is answered and every other request waits for it. None: always ready.
        self.ready: asyncio.Event | None = None


def _error_response(status: int, message: str) -> Response:
    if status == 304:
        return Response(304)
    return json_response({"message": message}, status)


_date: tuple[int, str] = (0, "")


def _common_headers() -> list[tuple[str, str]]:
    global _date
    now = int(time.time())
    if _date[0] != now:  # formatted once a second, not for each of thousands of requests
        _date = (now, formatdate(now, usegmt=True))
    return [
        ("Api-Version", API_VERSION),
        ("Docker-Experimental", "false"),
        ("Ostype", "linux"),
        ("Server", "Dockyard/0.1"),
        ("Date", _date[1]),
    ]


@functools.lru_cache(maxsize=64)  # asked twice per request with a version prefix, of a handful of versions
def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


async def _authorize_response(authz: AuthZGate, ctx: dict[str, Any], resp: Response) -> Response:
    """AuthZRes: the response goes out only if every plugin allows it (streams are not held back)."""
    body = bytes(resp.body) if isinstance(resp.body, bytes | bytearray) else None
    ctype = resp.headers.get("Content-Type", "application/json" if body else "")
    shown = body if body and ctype.split(";")[0].strip() == "application/json" else None
    try:
        await authz.response(ctx, resp.status, dict(resp.headers), shown)
    except DockyardError as e:
        return _error_response(e.status, e.message)
    return resp


def api_site(router: Router) -> Site:
    """The Engine API as the HTTP server serves it: `/vX.Y` prefixes checked and stripped, then routed."""

    async def handle(req: Request) -> Response | Hijack:
        if m := _LIBPOD_PREFIX.match(req.path):  # libpod's version is podman's, not the Engine API's
            req.path = req.path[m.end():]
        elif m := _VERSION_PREFIX.match(req.path):
            req.api_version, req.path = m.group(1), req.path[m.end():] or "/"
        if router.ready is not None and not router.ready.is_set() and req.path != "/_ping":
            await router.ready.wait()  # a container not re-adopted yet must not be seen, nor touched
        # Steps this request causes carry the client's trace token (dockyard --explain sends one).
        trace.set_session(req.headers.get("x-dockyard-trace", ""))
        authz = router.authz
        if authz is None:  # errors become responses in the server (Site.error)
            result: Response | Hijack = await route(req)(req)
            return result
        # Authorization plugins see the request before its handler runs, and its response (when not a
        # stream) before it goes out, errors included.
        ctx = None
        try:
            handler = route(req)
            body = await req.body() if authz.wants_body(req.target, req.headers) else None
            ctx = await authz.request(req.method, req.target, req.headers, body, req.user)
            result = await handler(req)
        except DockyardError as e:
            result = _error_response(e.status, e.message)
        except Exception as e:
            log.exception("%s %s failed", req.method, req.path)
            result = _error_response(500, describe(e))
        if ctx is not None and isinstance(result, Response) and isinstance(result.body, bytes | bytearray):
            result = await _authorize_response(authz, ctx, result)
        return result

    def route(req: Request) -> Callable[[Request], Awaitable[Response | Hijack]]:
        if req.api_version and _version_tuple(req.api_version) < _version_tuple(MIN_API_VERSION):
            raise InvalidParameter(
                f"client version {req.api_version} is too old. Minimum supported API version is "
                f"{MIN_API_VERSION}, please upgrade your client to a newer version"
            )
        if req.api_version and _version_tuple(req.api_version) > _version_tuple(API_VERSION):
            raise InvalidParameter(  # dockerd's answer to /v1.99/: a 400, not the newest API's reply
                f"client version {req.api_version} is too new. Maximum supported API version is {API_VERSION}")
        handler, req.params = router.match(req.method, req.path)
        return handler

    return Site(handle, _error_response, _common_headers, Limits(header_timeout=HEADER_TIMEOUT), log)


async def serve(
    router: Router, hosts: list[str], *, socket_group: str | None = "docker", tls: ssl.SSLContext | None = None,
    private: bool = False,
) -> Server:
    """Listen on every host (unix:///path, tcp://host:port) and serve router until close(); `private`
    unix sockets are 0600 (the rootless daemon's), others 0660 with `socket_group`."""
    server = Server(api_site(router))
    try:
        for host in hosts:
            addr = parse_listen_address(host)  # the parser daemon/main.py's TLS guard uses
            if addr.scheme == "unix":
                await server.listen_unix(addr.path, socket_group, private)
            else:
                await server.listen_tcp(addr.host, addr.port_for(tls is not None), tls)
    except BaseException:
        await server.close()
        raise
    return server
