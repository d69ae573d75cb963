"""Container endpoints (moby swagger operation names in the handler names)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

from dockyard.api.backends import (
    CommitBackend,
    ContainerBackend,
    ContainerIOBackend,
    FilesBackend,
    ImageBackend,
    PodBackend,
    ResourcesBackend,
)
from dockyard.api.server import Hijack, Request, Response, Router, json_response
from dockyard.errors import InvalidParameter, NotFound, NotSupported


def _filters(req: Request) -> dict[str, list[str]]:
    raw = req.qjson("filters") or {}
    if not isinstance(raw, dict):
        raise InvalidParameter("invalid filter")
    return {k: (list(v.keys()) if isinstance(v, dict) else list(v)) for k, v in raw.items()}


def register(router: Router, cs: ContainerBackend, io: ContainerIOBackend, files: FilesBackend,
             resources: ResourcesBackend, commits: CommitBackend, images: ImageBackend,
             pods: PodBackend | None = None) -> None:

    async def container_list(req: Request) -> Response:
        return json_response(cs.list(
            all_=req.qbool("all"), limit=req.qint("limit", -1) or -1, size=req.qbool("size"),
            filters=_filters(req), before=req.q("before"), since=req.q("since"),
        ))

    async def container_create(req: Request) -> Response:
        from dockyard.wire.container import create_request  # msgspec: at the first create, not at start

        body = await req.json()
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: body must be an object")
        create = create_request(body)  # decoded once: typed from here down to the runtime spec
        platform = req.q("platform")
        if platform:
            images.check_platform(create.image, platform)
        pod = req.q("pod")  # Dockyard's: a member of this pod (podman's create spec has `pod`)
        if pod:
            if pods is None:
                raise InvalidParameter("this daemon has no pods")
            create = pods.member_body(pod, create)
        return json_response(await cs.create(create, req.q("name")), 201)

    async def container_inspect(req: Request) -> Response:
        out = cs.inspect(req.params["id"], size=req.qbool("size"))
        v = tuple(int(x) for x in (req.api_version or "99").split(".") if x.isdigit())
        if v < (1, 45):
            # Before API 1.45 dockerd listed the short id among a running container's aliases on user networks.
            for name, ep in (out.get("NetworkSettings", {}).get("Networks") or {}).items():
                if ep.get("EndpointID") and name not in ("bridge", "host", "none"):
                    short = out["Id"][:12]
                    ep["Aliases"] = [*(a for a in ep.get("Aliases") or [] if a != short), short]
        return json_response(out)

    async def container_start(req: Request) -> Response:
        await cs.start(req.params["id"])
        return Response(204)

    async def container_stop(req: Request) -> Response:
        await cs.stop(req.params["id"], req.qint("t"), req.q("signal"))
        return Response(204)

    async def container_restart(req: Request) -> Response:
        await cs.restart(req.params["id"], req.qint("t"), req.q("signal"))
        return Response(204)

    async def container_kill(req: Request) -> Response:
        await cs.kill(req.params["id"], req.q("signal") or "KILL")
        return Response(204)

    async def container_pause(req: Request) -> Response:
        await cs.pause(req.params["id"])
        return Response(204)

    async def container_unpause(req: Request) -> Response:
        await cs.unpause(req.params["id"])
        return Response(204)

    async def container_wait(req: Request) -> Response:
        cid = cs.get(req.params["id"]).id
        condition = req.q("condition") or "not-running"

        # Docker sends the 200 header at once and the body at exit; the CLI relies on that to attach first.
        async def body() -> AsyncIterator[bytes]:
            res = await cs.wait(cid, condition)
            yield (json.dumps(res) + "\n").encode()

        return Response(200, {"Content-Type": "application/json"}, body())

    async def container_delete(req: Request) -> Response:
        await cs.remove(req.params["id"], force=req.qbool("force"), volumes=req.qbool("v"), link=req.qbool("link"))
        return Response(204)

    async def container_rename(req: Request) -> Response:
        name = req.q("name")
        if not name:
            raise InvalidParameter("name cannot be empty")
        await cs.rename(req.params["id"], name)
        return Response(204)

    async def container_prune(req: Request) -> Response:
        return json_response(await cs.prune(_filters(req)))

    async def container_logs(req: Request) -> Response:
        c = cs.get(req.params["id"])
        stdout, stderr = req.qbool("stdout"), req.qbool("stderr")
        if not (stdout or stderr):
            raise InvalidParameter("You must choose at least one stream")
        tty = c.config.tty
        body = io.logs(
            c.id, stdout=stdout, stderr=stderr, follow=req.qbool("follow"), since=req.q("since"),
            until=req.q("until"), tail=req.q("tail"), timestamps=req.qbool("timestamps"), raw=tty,
        )
        ctype = "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"
        return Response(200, {"Content-Type": ctype}, body)

    async def container_attach(req: Request) -> Hijack:
        c = cs.get(req.params["id"])
        handler = await io.attach_handler(
            c.id, stdin=req.qbool("stdin"), stdout=req.qbool("stdout"), stderr=req.qbool("stderr"),
            stream=req.qbool("stream"), logs=req.qbool("logs"), detach_keys=req.q("detachKeys"),
        )
        tty = c.config.tty
        return Hijack(handler, "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream")

    async def container_attach_ws(req: Request) -> Response:
        cs.get(req.params["id"])  # dockerd's 404 for a container that is not there
        raise NotSupported("attach over a websocket is not supported by Dockyard: use POST /containers/{id}/attach")

    async def container_resize(req: Request) -> Response:
        await io.resize(req.params["id"], req.qint("h", 0) or 0, req.qint("w", 0) or 0)
        return Response(200, {"Content-Type": "text/plain"}, b"")

    async def container_export(req: Request) -> Response:
        cs.get(req.params["id"])  # 404 now: the generator below only runs once the 200 is sent
        return Response(200, {"Content-Type": "application/x-tar"}, files.export(req.params["id"]))

    async def container_changes(req: Request) -> Response:
        return json_response(await files.changes(req.params["id"]))

    async def container_top(req: Request) -> Response:
        return json_response(await resources.top(req.params["id"], req.q("ps_args") or "-ef"))

    async def container_stats(req: Request) -> Response:
        stream = req.qbool("stream", True) and not req.qbool("one-shot")
        cs.get(req.params["id"])  # 404 before a streamed 200
        gen = resources.stats(req.params["id"], stream=stream, one_shot=req.qbool("one-shot"))
        if not stream:
            first = None
            async for s in gen:
                first = s
                break
            return json_response(first)

        async def lines() -> AsyncIterator[bytes]:
            async for s in gen:
                yield (json.dumps(s) + "\n").encode()

        return Response(200, {"Content-Type": "application/json"}, lines())

    async def container_update(req: Request) -> Response:
        from dockyard.wire.container import update_request

        body = await req.json()
        if body is not None and not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: body must be an object")
        return json_response(await resources.update(req.params["id"], update_request(body)))

    async def archive_stat_header(cid: str, path: str) -> str:
        st = await files.archive_stat(cid, path)
        return base64.b64encode(json.dumps(st).encode()).decode()

    async def container_archive_head(req: Request) -> Response:
        path = req.q("path")
        if not path:
            raise InvalidParameter("path is required")
        hdr = await archive_stat_header(req.params["id"], path)
        return Response(200, {"X-Docker-Container-Path-Stat": hdr, "Content-Type": "application/x-tar"})

    async def container_archive(req: Request) -> Response:
        path = req.q("path")
        if not path:
            raise InvalidParameter("path is required")
        hdr = await archive_stat_header(req.params["id"], path)
        body = files.get_archive(req.params["id"], path)
        return Response(200, {"X-Docker-Container-Path-Stat": hdr, "Content-Type": "application/x-tar"}, body)

    async def put_container_archive(req: Request) -> Response:
        path = req.q("path")
        if not path:
            raise InvalidParameter("path is required")
        await files.put_archive(req.params["id"], path, req.stream(),
                             no_overwrite_dir_non_dir=req.qbool("noOverwriteDirNonDir"),
                             copy_uid_gid=req.qbool("copyUIDGID"))
        return Response(200)

    async def image_commit(req: Request) -> Response:
        body = await req.json() if req.headers.get("content-length", "0") not in ("0", "") else {}
        ref = req.q("container")
        if not ref:
            raise NotFound("No such container: ")
        return json_response(await commits.commit(
            ref, repo=req.q("repo") or "", tag=req.q("tag") or "", comment=req.q("comment") or "",
            author=req.q("author") or "", pause=req.qbool("pause", True), changes=req.query.get("changes", []),
            config=body or {}), 201)

    r = router.add
    r("GET", "/containers/json", container_list)
    r("POST", "/containers/create", container_create)
    r("POST", "/containers/prune", container_prune)
    r("GET", "/containers/{id}/json", container_inspect)
    r("POST", "/containers/{id}/start", container_start)
    r("POST", "/containers/{id}/stop", container_stop)
    r("POST", "/containers/{id}/restart", container_restart)
    r("POST", "/containers/{id}/kill", container_kill)
    r("POST", "/containers/{id}/pause", container_pause)
    r("POST", "/containers/{id}/unpause", container_unpause)
    r("POST", "/containers/{id}/wait", container_wait)
    r("DELETE", "/containers/{id:path}", container_delete)  # "parent/alias" with ?link=1
    r("POST", "/containers/{id}/rename", container_rename)
    r("GET", "/containers/{id}/logs", container_logs)
    r("POST", "/containers/{id}/attach", container_attach)
    r("GET", "/containers/{id}/attach/ws", container_attach_ws)
    r("POST", "/containers/{id}/resize", container_resize)
    r("GET", "/containers/{id}/export", container_export)
    r("GET", "/containers/{id}/changes", container_changes)
    r("GET", "/containers/{id}/top", container_top)
    r("GET", "/containers/{id}/stats", container_stats)
    r("POST", "/containers/{id}/update", container_update)
    r("HEAD", "/containers/{id}/archive", container_archive_head)
    r("GET", "/containers/{id}/archive", container_archive)
    r("PUT", "/containers/{id}/archive", put_container_archive)
    r("POST", "/commit", image_commit)
