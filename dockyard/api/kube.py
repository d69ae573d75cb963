"""podman's `/libpod/play/kube` and `/libpod/generate/kube` on our daemon.

Play and generate are client-side work (dockyard/kube/, over the Engine API and the libpod pod paths),
so the daemon runs them as a client of itself: on a worker thread, through its own first unix socket
(`loopback`). Every step is then an ordinary API request (authorization plugins, events and traces
see it as such), and the CLI and these paths share one implementation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from dockyard.api.server import Request, Response, Route, json_response
from dockyard.errors import DockyardError, InvalidParameter, NotSupported


class _Upstream(DockyardError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class KubeRoutes:
    """play (POST/DELETE) and generate, as the daemon's own client."""

    def __init__(self, loopback: Callable[[], str | None]) -> None:
        self.loopback = loopback

    def routes(self) -> list[Route]:
        return [("POST", "/libpod/play/kube", self.play_kube), ("DELETE", "/libpod/play/kube", self.play_kube_down),
                ("GET", "/libpod/generate/kube", self.generate_kube)]

    def _client(self) -> Any:
        from dockyard.client import APIClient

        host = self.loopback()
        if host is None:
            raise NotSupported("kube play and generate need the daemon to listen on a unix socket")
        return APIClient(host)

    def _run(self, fn: Callable[[Any], Any]) -> Any:
        from dockyard.client import APIError
        from dockyard.kube.play import PlayError
        from dockyard.kube.sources import SourceError

        c = self._client()
        try:
            return fn(c)
        except (PlayError, SourceError) as e:
            raise InvalidParameter(str(e)) from None
        except APIError as e:
            raise _Upstream(e.status, e.message) from None
        finally:
            c.close()

    async def play_kube(self, req: Request) -> Response:
        from dockyard.kube.play import Player, load, plan

        text = (await req.body()).decode(errors="replace")
        nets = req.query.get("network") or []
        replace = req.qbool("replace")

        def play(c: Any) -> dict[str, Any]:
            p = plan(load(text))
            player = Player(c, network=nets[0] if nets else "dockyard-kube", replace=replace)
            report = player.play(p)
            return {"Pods": [{"ID": pid, "Containers": ctrs, "InitContainers": None, "Logs": p.notes or None,
                              "ContainerErrors": None} for pid, ctrs in report.items()],
                    "Volumes": [{"Name": c} for c in p.claims] or None, "RmReport": None, "StopReport": None,
                    "Secrets": None}

        return json_response(await asyncio.to_thread(self._run, play))

    async def play_kube_down(self, req: Request) -> Response:
        from dockyard.kube.play import Player, load, plan

        text = (await req.body()).decode(errors="replace")
        nets = req.query.get("network") or []

        def down(c: Any) -> dict[str, Any]:
            gone = Player(c, network=nets[0] if nets else "dockyard-kube").down(plan(load(text)))
            return {"Pods": None, "Volumes": None, "Secrets": None,
                    "StopReport": [{"Errs": [], "Id": n} for n in gone],
                    "RmReport": [{"Err": None, "Id": n} for n in gone]}

        return json_response(await asyncio.to_thread(self._run, down))

    async def generate_kube(self, req: Request) -> Response:
        from dockyard.kube.generate import Generated
        from dockyard.kube.sources import pod_or_container

        names = req.query.get("names") or []
        if not names:
            raise InvalidParameter("names: at least one container or pod is required")
        kind = req.q("type") or "pod"
        if kind not in ("pod", "deployment"):
            raise InvalidParameter(f"invalid type {kind!r}: pod or deployment")
        with_services = req.qbool("service")

        def generate(c: Any) -> str:
            g = Generated()
            for n in names:
                pod_or_container(c, n, kind, g)
            if not with_services:  # podman's default: Services only with service=true
                g.docs = [d for d in g.docs if d["kind"] != "Service"]
            head = "".join(f"# WARNING: {n}\n" for n in g.notes)
            return head + g.yaml()

        text = await asyncio.to_thread(self._run, generate)
        return Response(200, {"Content-Type": "text/vnd.yaml"}, text.encode())
