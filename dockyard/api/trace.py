"""Dockyard's own endpoints (not part of the Engine API): the trace of host changes, as JSON lines.

`GET /dockyard/trace?object=ID&session=TOKEN&follow=1` replays what is kept and, with follow, streams
records as they are made. `object` names a container, network, volume or image (key, id, or a prefix);
`session` follows what the client's own requests (sent with `X-Dockyard-Trace: TOKEN`) did, and every
later step on the objects they touched. A stream opened with `mark=NAME` gets a `{"Mark": true}` line,
after every record made so far, when someone posts `POST /dockyard/trace/mark?mark=NAME`: a client's
sync point.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from dockyard import trace
from dockyard.api.server import Request, Response, Route, ndjson_stream


class TraceRoutes:
    """The trace endpoints (the trace is process-wide: no backend)."""

    async def get_trace(self, req: Request) -> Response:
        match, session, follow = req.q("object") or "", req.q("session") or "", req.qbool("follow")
        watcher = trace.watch() if follow else None
        if watcher is not None:
            watcher.session = req.q("mark") or ""
        touched: set[str] = set()

        def wanted(s: trace.Step) -> bool:
            if session and s.session == session:
                if s.obj != "daemon":
                    touched.add(s.obj)
                return True
            if session and s.obj in touched:
                return True
            if match:
                return trace.matches(s.obj, match)
            return not session

        async def items() -> AsyncIterator[dict[str, Any]]:
            try:
                last = 0
                for s in trace.records(match) if match or not session else []:
                    last = s.seq
                    yield s.to_json()
                if watcher is None:
                    return
                while True:
                    item = await watcher.queue.get()
                    if item is None:
                        yield {"Mark": True}
                    elif item.seq > last and wanted(item):
                        yield item.to_json()
            finally:
                if watcher is not None:
                    watcher.close()

        return ndjson_stream(items())

    async def post_mark(self, req: Request) -> Response:
        name = req.q("mark") or ""
        for w in trace.watchers():
            if name and w.session == name:
                w.mark()
        return Response(204)

    def routes(self) -> list[Route]:
        return [
            ("GET", "/dockyard/trace", self.get_trace),
            ("POST", "/dockyard/trace/mark", self.post_mark),
        ]
