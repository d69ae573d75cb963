"""Container endpoints (moby swagger operation names in the handler names)."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from dockyard.api.backends import (
    CommitBackend,
    ContainerBackend,
    ContainerIOBackend,
    FilesBackend,
    ImageBackend,
    PodBackend,
    ResourcesBackend,
)
from dockyard.api.server import Hijack, Request, Response, Route, aclose, json_response
from dockyard.errors import InvalidParameter, NotFound, NotSupported


class ContainerRoutes:
    """Container endpoints (and POST /commit) over the container, stdio, files, resources, commit,
    image and pod backends."""

    def __init__(self, cs: ContainerBackend, io: ContainerIOBackend, files: FilesBackend, resources: ResourcesBackend,
                 commits: CommitBackend, images: ImageBackend, pods: PodBackend | None = None) -> None:
        self.cs = cs
        self.io = io
        self.files = files
        self.resources = resources
        self.commits = commits
        self.images = images
        self.pods = pods

    async def container_list(self, req: Request) -> Response:
        args: dict[str, Any] = {"all_": req.qbool("all"), "limit": req.qint("limit", -1) or -1,
                                "filters": req.qfilters(), "before": req.q("before"), "since": req.q("since")}
        if req.qbool("size"):
            return json_response(self.cs.list(size=True, **args))
        return Response(200, {"Content-Type": "application/json"}, self.cs.list_json(**args))

    async def container_create(self, req: Request) -> Response:
        from dockyard.wire.container import create_request  # msgspec: at the first create, not at start

        body = await req.json()
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: body must be an object")
        create = create_request(body)  # decoded once: typed from here down to the runtime spec
        platform = req.q("platform")
        if platform:
            self.images.check_platform(create.image, platform)
        pod = req.q("pod")  # Dockyard's: a member of this pod (podman's create spec has `pod`)
        if pod:
            if self.pods is None:
                raise InvalidParameter("this daemon has no pods")
            create = self.pods.member_body(pod, create)
        return json_response(await self.cs.create(create, req.q("name")), 201)

    async def container_inspect(self, req: Request) -> Response:
        out = self.cs.inspect(req.params["id"], size=req.qbool("size"))
        v = tuple(int(x) for x in (req.api_version or "99").split(".") if x.isdigit())
        if v < (1, 45):
            # Before API 1.45 dockerd listed the short id among a running container's aliases on user networks.
            for name, ep in (out.get("NetworkSettings", {}).get("Networks") or {}).items():
                if ep.get("EndpointID") and name not in ("bridge", "host", "none"):
                    short = out["Id"][:12]
                    ep["Aliases"] = [*(a for a in ep.get("Aliases") or [] if a != short), short]
        return json_response(out)

    async def container_start(self, req: Request) -> Response:
        await self.cs.start(req.params["id"])
        return Response(204)

    async def container_stop(self, req: Request) -> Response:
        await self.cs.stop(req.params["id"], req.qint("t"), req.q("signal"))
        return Response(204)

    async def container_restart(self, req: Request) -> Response:
        await self.cs.restart(req.params["id"], req.qint("t"), req.q("signal"))
        return Response(204)

    async def container_kill(self, req: Request) -> Response:
        await self.cs.kill(req.params["id"], req.q("signal") or "KILL")
        return Response(204)

    async def container_pause(self, req: Request) -> Response:
        await self.cs.pause(req.params["id"])
        return Response(204)

    async def container_unpause(self, req: Request) -> Response:
        await self.cs.unpause(req.params["id"])
        return Response(204)

    async def container_wait(self, req: Request) -> Response:
        cid = self.cs.get(req.params["id"]).id
        condition = req.q("condition") or "not-running"

        # Docker sends the 200 header at once and the body at exit; the CLI relies on that to attach first.
        async def body() -> AsyncIterator[bytes]:
            res = await self.cs.wait(cid, condition)
            yield (json.dumps(res) + "\n").encode()

        return Response(200, {"Content-Type": "application/json"}, body())

    async def container_delete(self, req: Request) -> Response:
        await self.cs.remove(req.params["id"], force=req.qbool("force"), volumes=req.qbool("v"), link=req.qbool("link"))
        return Response(204)

    async def container_rename(self, req: Request) -> Response:
        name = req.q("name")
        if not name:
            raise InvalidParameter("name cannot be empty")
        await self.cs.rename(req.params["id"], name)
        return Response(204)

    async def container_prune(self, req: Request) -> Response:
        return json_response(await self.cs.prune(req.qfilters()))

    async def container_logs(self, req: Request) -> Response:
        c = self.cs.get(req.params["id"])
        stdout, stderr = req.qbool("stdout"), req.qbool("stderr")
        if not (stdout or stderr):
            raise InvalidParameter("You must choose at least one stream")
        tty = c.config.tty
        body = self.io.logs(
            c.id, stdout=stdout, stderr=stderr, follow=req.qbool("follow"), since=req.q("since"),
            until=req.q("until"), tail=req.q("tail"), timestamps=req.qbool("timestamps"), raw=tty,
        )
        ctype = "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"
        return Response(200, {"Content-Type": ctype}, body)

    async def container_attach(self, req: Request) -> Hijack:
        c = self.cs.get(req.params["id"])
        handler = await self.io.attach_handler(
            c.id, stdin=req.qbool("stdin"), stdout=req.qbool("stdout"), stderr=req.qbool("stderr"),
            stream=req.qbool("stream"), logs=req.qbool("logs"), detach_keys=req.q("detachKeys"),
        )
        tty = c.config.tty
        return Hijack(handler, "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream")

    async def container_attach_ws(self, req: Request) -> Response:
        self.cs.get(req.params["id"])  # dockerd's 404 for a container that is not there
        raise NotSupported("attach over a websocket is not supported by Dockyard: use POST /containers/{id}/attach")

    async def container_resize(self, req: Request) -> Response:
        await self.io.resize(req.params["id"], req.qint("h", 0) or 0, req.qint("w", 0) or 0)
        return Response(200, {"Content-Type": "text/plain"}, b"")

    async def container_export(self, req: Request) -> Response:
        self.cs.get(req.params["id"])  # 404 now: the generator below only runs once the 200 is sent
        return Response(200, {"Content-Type": "application/x-tar"}, self.files.export(req.params["id"]))

    async def container_changes(self, req: Request) -> Response:
        return json_response(await self.files.changes(req.params["id"]))

    async def container_top(self, req: Request) -> Response:
        return json_response(await self.resources.top(req.params["id"], req.q("ps_args") or "-ef"))

    async def container_stats(self, req: Request) -> Response:
        encode = _json_encode()
        stream = req.qbool("stream", True) and not req.qbool("one-shot")
        gen = await self.resources.stats(req.params["id"], stream=stream, one_shot=req.qbool("one-shot"))  # 404 first
        if not stream:
            first = None
            async for s in gen:
                first = s
                break
            await aclose(gen)  # now, not when collected: that schedules it from a finalizer (a wakeup, a task)
            return Response(200, {"Content-Type": "application/json"}, encode(first) + b"\n")

        async def lines() -> AsyncIterator[bytes]:
            async for s in gen:
                yield encode(s) + b"\n"

        return Response(200, {"Content-Type": "application/json"}, lines())

    async def container_update(self, req: Request) -> Response:
        from dockyard.wire.container import update_request

        body = await req.json()
        if body is not None and not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: body must be an object")
        return json_response(await self.resources.update(req.params["id"], update_request(body)))

    async def archive_stat_header(self, cid: str, path: str) -> str:
        st = await self.files.archive_stat(cid, path)
        return base64.b64encode(json.dumps(st).encode()).decode()

    async def container_archive_head(self, req: Request) -> Response:
        path = req.q("path")
        if not path:
            raise InvalidParameter("path is required")
        hdr = await self.archive_stat_header(req.params["id"], path)
        return Response(200, {"X-Docker-Container-Path-Stat": hdr, "Content-Type": "application/x-tar"})

    async def container_archive(self, req: Request) -> Response:
        path = req.q("path")
        if not path:
            raise InvalidParameter("path is required")
        hdr = await self.archive_stat_header(req.params["id"], path)
        body = self.files.get_archive(req.params["id"], path)
        return Response(200, {"X-Docker-Container-Path-Stat": hdr, "Content-Type": "application/x-tar"}, body)

    async def put_container_archive(self, req: Request) -> Response:
        path = req.q("path")
        if not path:
            raise InvalidParameter("path is required")
        await self.files.put_archive(req.params["id"], path, req.stream(),
                             no_overwrite_dir_non_dir=req.qbool("noOverwriteDirNonDir"),
                             copy_uid_gid=req.qbool("copyUIDGID"))
        return Response(200)

    async def image_commit(self, req: Request) -> Response:
        body = await req.json() if req.headers.get("content-length", "0") not in ("0", "") else {}
        ref = req.q("container")
        if not ref:
            raise NotFound("No such container: ")
        return json_response(await self.commits.commit(
            ref, repo=req.q("repo") or "", tag=req.q("tag") or "", comment=req.q("comment") or "",
            author=req.q("author") or "", pause=req.qbool("pause", True), changes=req.query.get("changes", []),
            config=body or {}), 201)

    def routes(self) -> list[Route]:
        return [
            ("GET", "/containers/json", self.container_list),
            ("POST", "/containers/create", self.container_create),
            ("POST", "/containers/prune", self.container_prune),
            ("GET", "/containers/{id}/json", self.container_inspect),
            ("POST", "/containers/{id}/start", self.container_start),
            ("POST", "/containers/{id}/stop", self.container_stop),
            ("POST", "/containers/{id}/restart", self.container_restart),
            ("POST", "/containers/{id}/kill", self.container_kill),
            ("POST", "/containers/{id}/pause", self.container_pause),
            ("POST", "/containers/{id}/unpause", self.container_unpause),
            ("POST", "/containers/{id}/wait", self.container_wait),
            ("DELETE", "/containers/{id:path}", self.container_delete),  # "parent/alias" with ?link=1
            ("POST", "/containers/{id}/rename", self.container_rename),
            ("GET", "/containers/{id}/logs", self.container_logs),
            ("POST", "/containers/{id}/attach", self.container_attach),
            ("GET", "/containers/{id}/attach/ws", self.container_attach_ws),
            ("POST", "/containers/{id}/resize", self.container_resize),
            ("GET", "/containers/{id}/export", self.container_export),
            ("GET", "/containers/{id}/changes", self.container_changes),
            ("GET", "/containers/{id}/top", self.container_top),
            ("GET", "/containers/{id}/stats", self.container_stats),
            ("POST", "/containers/{id}/update", self.container_update),
            ("HEAD", "/containers/{id}/archive", self.container_archive_head),
            ("GET", "/containers/{id}/archive", self.container_archive),
            ("PUT", "/containers/{id}/archive", self.put_container_archive),
            ("POST", "/commit", self.image_commit),
        ]


@functools.cache
def _json_encode() -> Callable[[Any], bytes]:
    """msgspec's JSON encoder (~10x json.dumps on stats documents), imported by the first stats answer, not at
    daemon start (idle RSS), and once: an import statement costs microseconds each time it runs, and `docker
    stats` of 500 containers is 500 answers at once."""
    import msgspec

    return msgspec.json.encode
