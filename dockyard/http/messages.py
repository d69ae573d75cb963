"""What handlers see: a Request (its body read as it arrives), a Response (bytes or a stream), or a
Hijack that takes the connection over (attach, exec start). Errors are DockyardErrors: the site
(`server.Site.error`) words them for its clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dockyard.errors import DockyardError, InvalidParameter

DEFAULT_BODY_LIMIT = 16 * 1024 * 1024  # Request.body(); big uploads use Request.stream()

BodySource = Callable[[], Awaitable[bytes | None]]
HijackHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class PayloadTooLarge(DockyardError):
    status = 413


async def _no_body() -> bytes | None:
    return None


class Request:
    def __init__(
        self,
        method: str,
        path: str,
        *,
        api_version: str | None = None,
        query: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        body_source: BodySource = _no_body,
        target: str = "",
        user: str = "",
    ) -> None:
        self.method = method
        self.path = path
        self.target = target or path  # the request line's target as sent (path with prefix and query)
        self.user = user  # the TLS client certificate's common name (dockerd's authn), "" without one
        self.api_version = api_version
        self.query = query or {}
        self.headers = headers or {}
        self.params = params or {}
        self._source = body_source
        self._consumed = False
        self._body: bytes | None = None

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def qbool(self, name: str, default: bool = False) -> bool:
        # moby's httputils.BoolValue: anything but "", 0, no, false, none is true
        value = self.q(name)
        if value is None:
            return default
        return value.strip().lower() not in ("", "0", "no", "false", "none")

    def qint(self, name: str, default: int | None = None) -> int | None:
        value = self.q(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise InvalidParameter(f"invalid value for {name}: {value!r}") from None

    def qjson(self, name: str) -> Any:
        value = self.q(name)
        if not value:
            return None
        try:
            out = json.loads(value)
        except ValueError as e:
            raise InvalidParameter(f"invalid JSON in {name}: {e}") from None
        if name == "filters" and not _filters_ok(out):
            # moby's two forms: {"key": {"value": true}} and the old {"key": ["value"]}
            raise InvalidParameter(f"invalid filter: {value}")
        return out

    def qfilters(self) -> dict[str, list[str]]:
        """?filters= as {key: [values]}, from either of moby's two forms."""
        raw = self.qjson("filters") or {}
        if not isinstance(raw, dict):
            raise InvalidParameter("invalid filter")
        return {k: (list(v.keys()) if isinstance(v, dict) else list(v)) for k, v in raw.items()}

    async def stream(self) -> AsyncIterator[bytes]:
        """The request body chunk by chunk as it arrives (never buffered whole)."""
        if self._body is not None:
            yield self._body
            return
        if self._consumed:
            raise RuntimeError("request body already consumed")
        self._consumed = True
        while (chunk := await self._source()) is not None:
            yield chunk

    async def body(self, limit: int = DEFAULT_BODY_LIMIT) -> bytes:
        if self._body is None:
            announced = self.headers.get("content-length", "")
            if announced.isdigit() and int(announced) > limit:  # refuse before reading any of it
                raise PayloadTooLarge(f"request body larger than {limit} bytes")
            buf = bytearray()
            async for chunk in self.stream():
                buf += chunk
                if len(buf) > limit:
                    raise PayloadTooLarge(f"request body larger than {limit} bytes")
            self._body = bytes(buf)
        return self._body

    async def json(self) -> Any:
        """The body as JSON; None when empty."""
        data = await self.body()
        if not data.strip():
            return None
        try:
            return json.loads(data)
        except ValueError as e:
            raise InvalidParameter(f"invalid JSON: {e}") from None


def _filters_ok(f: Any) -> bool:
    if not isinstance(f, dict):
        return False
    for v in f.values():
        if isinstance(v, dict):
            if not all(isinstance(x, str | bool) for x in v.values()):
                return False
        elif not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            return False
    return True


class Response:
    def __init__(
        self,
        status: int = 200,
        headers: dict[str, str] | None = None,
        body: bytes | AsyncIterator[bytes] = b"",
    ) -> None:
        self.status = status
        self.headers = headers or {}
        self.body = body


def json_response(obj: Any, status: int = 200) -> Response:
    # Go's json.Encoder ends each document with a newline; clients don't care, diffs against dockerd do.
    body = (json.dumps(obj) + "\n").encode()
    return Response(status, {"Content-Type": "application/json"}, body)


def ndjson_stream(items: AsyncIterator[Any]) -> Response:
    """A chunked response with one JSON document per line, flushed as each item comes."""

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for item in items:
                yield (json.dumps(item) + "\n").encode()
        finally:
            await aclose(items)

    return Response(200, {"Content-Type": "application/json"}, lines())


@dataclass
class Hijack:
    """Returned by a handler to take over the connection (attach, exec start)."""

    handler: HijackHandler
    content_type: str = "application/vnd.docker.raw-stream"


async def aclose(it: Any) -> None:
    """Close an async iterator if it can be (async generators run their finally blocks)."""
    close = getattr(it, "aclose", None)
    if close is not None:
        await close()
