"""POST /build (the classic builder's wire protocol), POST /build/prune."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from dockyard.api.backends import BuildBackend
from dockyard.api.server import Hijack, Request, Response, Route, aclose, json_response, ndjson_stream
from dockyard.errors import InvalidParameter
from dockyard.util import buildsession
from dockyard.util.gitref import is_git_url

if TYPE_CHECKING:
    from dockyard.wire.container import HostConfig


def _json_param(req: Request, name: str) -> dict[str, Any]:
    v = req.qjson(name)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise InvalidParameter(f"invalid {name}: expected a JSON object")
    return v


def _str_list(req: Request, name: str) -> list[str]:
    """A JSON list of strings (cachefrom); the form's repeated values are taken too (extrahosts)."""
    out: list[str] = []
    for raw in req.query.get(name, []):
        if raw.startswith("["):
            try:
                v = json.loads(raw)
            except ValueError:
                raise InvalidParameter(f"invalid {name}: {raw}") from None
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise InvalidParameter(f"invalid {name}: expected a list of strings")
            out += v
        elif raw:
            out.append(raw)
    return out


def _run_host_config(req: Request) -> HostConfig | None:
    """The build's resource and host options, as the HostConfig of each RUN step's container."""
    from dockyard.wire.container import HostConfig, convert  # msgspec: at the first build, not at start

    hc: dict[str, Any] = {}
    for param, key in (("shmsize", "ShmSize"), ("memory", "Memory"), ("memswap", "MemorySwap"),
                       ("cpushares", "CpuShares"), ("cpuperiod", "CpuPeriod"), ("cpuquota", "CpuQuota")):
        v = req.qint(param)
        if v:
            hc[key] = v
    for param, key in (("cpusetcpus", "CpusetCpus"), ("cpusetmems", "CpusetMems"), ("cgroupparent", "CgroupParent")):
        if req.q(param):
            hc[key] = req.q(param)
    if hosts := _str_list(req, "extrahosts"):
        hc["ExtraHosts"] = hosts
    ulimits = req.qjson("ulimits")
    if ulimits:
        if not isinstance(ulimits, list):
            raise InvalidParameter("invalid ulimits: expected a list")
        hc["Ulimits"] = ulimits
    return convert(hc, HostConfig, "HostConfig") if hc else None


# `dockyard build --secret`'s bytes: base64url of {id: base64 bytes}, in a header and nowhere else.
SECRETS_HEADER = "X-Dockyard-Build-Secrets"


def _secrets(raw: str | None) -> dict[str, bytes]:
    if not raw:
        return {}
    try:
        v = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not isinstance(v, dict):
            raise ValueError
        return {str(k): base64.b64decode(str(b)) for k, b in v.items()}
    except ValueError:
        raise InvalidParameter(f"invalid {SECRETS_HEADER} header: expected base64url JSON") from None


# `dockyard build --ssh`: base64url of {id: agent socket path on this host}.
SSH_HEADER = "X-Dockyard-Build-Ssh"


def _ssh(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        v = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not isinstance(v, dict) or not all(isinstance(x, str) and x.startswith("/") for x in v.values()):
            raise ValueError
        return {str(k): str(x) for k, x in v.items()}
    except ValueError:
        raise InvalidParameter(f"invalid {SSH_HEADER} header: expected base64url JSON of absolute paths") from None


def _contexts(raw: dict[str, Any]) -> dict[str, str]:
    """`buildcontexts` (dockyard's): {NAME: "docker-image://REF" | "dir" | git URL | http(s) URL}; a dir's
    files are in the context tar under .dockyard-contexts/NAME/; URLs are fetched by the daemon, as
    BuildKit's named contexts are."""
    import re

    out = {}
    for k, v in raw.items():
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", str(k)) or not isinstance(v, str) or not (
                v == "dir" or v.startswith(("docker-image://", "http://", "https://")) or is_git_url(v)):
            raise InvalidParameter(f"invalid build context {k}: {v}")
        out[str(k)] = v
    return out


class BuildRoutes:
    """The classic builder's endpoints over the BuildBackend."""

    def __init__(self, builder: BuildBackend) -> None:
        self.builder = builder

    async def post_build(self, req: Request) -> Response:
        from dockyard.builder.builder import BuildOptions

        remote = req.q("remote") or ""
        if remote and not is_git_url(remote):
            raise InvalidParameter("remote build contexts other than git URLs are not supported")
        auth = req.headers.get("x-registry-config")
        if auth:  # the CLI sends every configured registry; the puller wants one X-Registry-Auth value
            try:
                cfgs = json.loads(base64.urlsafe_b64decode(auth + "=" * (-len(auth) % 4)))
                auth = base64.urlsafe_b64encode(json.dumps(next(iter(cfgs.values()))).encode()).decode() \
                    if isinstance(cfgs, dict) and cfgs else None
            except (ValueError, StopIteration):
                auth = None
        opts = BuildOptions(
            secrets=_secrets(req.headers.get(SECRETS_HEADER.lower())),
            contexts=_contexts(_json_param(req, "buildcontexts")),
            no_cache_filter=_str_list(req, "nocachefilter"),
            ssh=_ssh(req.headers.get(SSH_HEADER.lower())),
            session=req.headers.get(buildsession.HEADER.lower(), ""),
            dockerfile=req.q("dockerfile") or "Dockerfile",
            tags=[t for t in req.query.get("t", []) if t],
            target=req.q("target") or "",
            nocache=req.qbool("nocache"),
            pull=req.qbool("pull"),
            labels={str(k): str(v) for k, v in _json_param(req, "labels").items()},
            buildargs={str(k): (None if v is None else str(v)) for k, v in _json_param(req, "buildargs").items()},
            networkmode=req.q("networkmode") or "",
            quiet=req.qbool("q"),
            platform=req.q("platform") or "",
            rm=req.qbool("rm", True),
            forcerm=req.qbool("forcerm"),
            auth=auth,
            cachefrom=_str_list(req, "cachefrom"),
            cache_to=_str_list(req, "cacheto"),
            remote=remote,
            explain_cache=req.qbool("explaincache"),
            run_host_config=_run_host_config(req),
        )
        from dockyard.oci import reference

        for t in opts.tags:
            reference.parse(t)  # a bad tag fails before the context is read
        # A build that fails before its first step (no Dockerfile, a parse error) gets an HTTP
        # error status, as from dockerd; after that, errors are messages in the 200 stream.
        events = self.builder.build(req.stream(), opts)
        first = await anext(events, None)

        async def stream() -> AsyncIterator[dict[str, Any]]:
            try:
                if first is not None:
                    yield first
                async for ev in events:
                    yield ev
            finally:
                await aclose(events)  # a client gone mid-build stops the build

        return ndjson_stream(stream())

    async def post_build_session(self, req: Request) -> Hijack:
        """Dockyard's build session (dockyard/util/buildsession.py): `id`, and `ssh`, the agent ids the
        client serves; hijacked as attach is, and held until the client hangs up."""
        sid = req.q("id") or ""
        if not sid:
            raise InvalidParameter("a build session needs an id")
        ssh_ids = {i for i in (req.q("ssh") or "").split(",") if i}

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.builder.session(sid, ssh_ids, reader, writer)

        return Hijack(handler, buildsession.CONTENT_TYPE)

    async def post_build_prune(self, req: Request) -> Response:
        return json_response(await asyncio.to_thread(self.builder.prune, req.qbool("all")))

    async def get_build_cache(self, req: Request) -> Response:
        return json_response(self.builder.disk_usage())

    async def post_build_cancel(self, req: Request) -> Response:
        # dockerd cancels BuildKit builds by id; a classic build stops when its client hangs up
        return Response(200)

    def routes(self) -> list[Route]:
        return [
            ("POST", "/build", self.post_build),
            ("POST", "/build/cancel", self.post_build_cancel),
            ("POST", "/build/prune", self.post_build_prune),
            ("GET", "/build/cache", self.get_build_cache),
            ("POST", buildsession.PATH, self.post_build_session),
        ]
