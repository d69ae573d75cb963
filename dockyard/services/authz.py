"""Authorization plugins (moby's pkg/authorization): every API request, and its response, passes
through the configured plugins in order (`--authorization-plugin`, daemon.json
`authorization-plugins`).

`AuthZPlugin.AuthZReq` gets the request (method, URI, headers, and the body when it is JSON and at
most 1 MiB); `AuthZPlugin.AuthZRes` gets the same plus the response's status, headers and body. A
plugin's `{"Allow": false, "Msg": m}` is a 403 "authorization denied by plugin NAME: m"; its
`{"Err": e}` a 500 "plugin NAME failed with error: e". Streamed and hijacked responses (logs
--follow, attach, pull progress) are checked at AuthZReq only: their body is not held back.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from dockyard.errors import DockyardError, Forbidden, SystemError_
from dockyard.plugins.discovery import PluginStore

MAX_BODY = 1024 * 1024  # moby's maxBodySize
_SECRET_HEADERS = {"authorization", "x-registry-auth", "x-registry-config"}


class AuthorizationDenied(Forbidden):
    pass


def send_body(uri: str, headers: dict[str, str]) -> bool:
    """moby's sendBody: JSON bodies only (at most 1 MiB), never the /auth call's credentials."""
    if uri.partition("?")[0].endswith("/auth"):
        return False
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        return False
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    return ctype == "application/json"


def _headers(headers: dict[str, str]) -> dict[str, str]:
    return {"-".join(w.capitalize() for w in k.split("-")): v for k, v in headers.items()
            if k.lower() not in _SECRET_HEADERS}


class AuthZ:
    """The configured chain of authorization plugins, by name, in order."""

    def __init__(self, store: PluginStore, names: list[str]) -> None:
        self.store = store
        self.names = list(names)

    def __bool__(self) -> bool:
        return bool(self.names)

    def wants_body(self, uri: str, headers: dict[str, str]) -> bool:
        return send_body(uri, headers)

    def _ask(self, method: str, body: dict[str, Any]) -> None:
        for name in self.names:
            try:
                answer = self.store.call(name, "authz", f"AuthZPlugin.{method}", body)
            except DockyardError as e:
                raise SystemError_(f"plugin {name} failed with error: {method}: {e.message}") from None
            if answer.get("Err"):
                raise SystemError_(f"plugin {name} failed with error: {answer['Err']}")
            if not answer.get("Allow"):
                raise AuthorizationDenied(f"authorization denied by plugin {name}: {answer.get('Msg') or ''}")

    async def request(self, method: str, uri: str, headers: dict[str, str], body: bytes | None,
                      user: str = "") -> dict[str, Any]:
        """AuthZReq through every plugin; the context AuthZRes needs, or AuthorizationDenied."""
        ctx: dict[str, Any] = {"RequestMethod": method, "RequestUri": uri, "RequestHeaders": _headers(headers)}
        if user:  # the TLS client certificate's common name, as dockerd's authn
            ctx.update(User=user, UserAuthNMethod="TLS")
        if body:
            ctx["RequestBody"] = base64.b64encode(body).decode()
        await asyncio.to_thread(self._ask, "AuthZReq", ctx)
        return ctx

    async def response(self, ctx: dict[str, Any], status: int, headers: dict[str, str], body: bytes | None) -> None:
        res = {**ctx, "ResponseStatusCode": status, "ResponseHeaders": headers}
        if body and len(body) <= MAX_BODY:
            res["ResponseBody"] = base64.b64encode(body).decode()
        await asyncio.to_thread(self._ask, "AuthZRes", res)
