"""Pods: containers sharing one network, IPC and UTS namespace, held by an infra container.

The infra container runs catatonit in pause mode (`-P`) from a one-layer image made here from the
host's static catatonit (podman 4 builds its `podman-pause` image the same way). It holds the pod's
namespaces, its published ports and its network endpoints (with the pod's DNS aliases); members
join them as `NetworkMode`/`IpcMode`/`UTSMode` = `container:<infra>`, so `localhost` reaches every
member and all of them see the pod's hostname. Membership is a label on each container
(`io.dockyard.pod` = the pod's id), the pod itself a row of the `pods` table: both persist, so
pods survive daemon restarts as containers do. The API follows podman's libpod paths (api/pods.py).
"""

from __future__ import annotations

import asyncio
import builtins
import io
import json
import re
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dockyard.errors import Conflict, DockyardError, InvalidParameter, NotFound, NotModified
from dockyard.services.containers import Container, ContainerService
from dockyard.services.events import EventBus
from dockyard.store.db import Database
from dockyard.util.ids import new_id

if TYPE_CHECKING:
    from dockyard.wire.container import CreateRequest

SCHEMA_V1 = """
CREATE TABLE pods (
    id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, created REAL NOT NULL, infra_id TEXT NOT NULL,
    labels TEXT NOT NULL, config TEXT NOT NULL)
"""

POD_LABEL = "io.dockyard.pod"  # on every member and on the infra: the pod's id
INFRA_LABEL = "io.dockyard.pod.infra"  # "true" on the infra container
PAUSE_IMAGE = "localhost/dockyard-pause:latest"
CATATONIT = Path("/usr/bin/catatonit")
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
SHARED = ["ipc", "net", "uts"]
# podman's words for a member that brings its own ports or network
SHARED_NET_ERROR = ("invalid config provided: published or exposed ports must be defined when the pod is "
                    "created: network cannot be configured when it is shared with a pod")


class PodImages(Protocol):
    def resolve(self, ref_or_id: str) -> Any: ...
    async def import_(self, stream: Any, repo: str = "", tag: str = "", changes: list[str] | None = None,
                      message: str = "") -> list[dict[str, Any]]: ...


def _pause_rootfs() -> bytes:
    """A rootfs tar with the host's static catatonit as /catatonit."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = CATATONIT.read_bytes()
        info = tarfile.TarInfo("catatonit")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for d in ("dev", "proc", "sys", "etc"):
            di = tarfile.TarInfo(d)
            di.type, di.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(di)
    return buf.getvalue()


def _port_bindings(mappings: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """podman's portmappings → Docker's ExposedPorts and PortBindings."""
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for m in mappings:
        if not isinstance(m, dict) or not m.get("container_port"):
            raise InvalidParameter(f"invalid port mapping: {m!r}: container_port is required")
        rng = int(m.get("range") or 1)
        for i in range(rng):
            cport = int(m["container_port"]) + i
            for proto in str(m.get("protocol") or "tcp").split(","):
                key = f"{cport}/{proto}"
                exposed[key] = {}
                host = int(m.get("host_port") or 0)
                bindings.setdefault(key, []).append(
                    {"HostIp": str(m.get("host_ip") or ""), "HostPort": str(host + i) if host else ""})
    return exposed, bindings


class PodService:
    def __init__(self, db: Database, events: EventBus, containers: ContainerService, images: PodImages) -> None:
        self.db = db
        self.events = events
        self.containers = containers
        self.images = images
        self._pause_lock = asyncio.Lock()
        db.migrate("pods", [SCHEMA_V1])
        containers.before_start.append(self._start_infra_of)

    # ------------------------------------------------------------ lookup
    def _row(self, ref: str) -> Any:
        row = self.db.query_one("SELECT * FROM pods WHERE id=? OR name=?", (ref, ref))
        if row is None and len(ref) >= 1:
            rows = self.db.query("SELECT * FROM pods WHERE id LIKE ?", (ref + "%",))
            if len(rows) > 1:
                raise NotFound(f"more than one result for pod ID {ref}")
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"no pod with name or ID {ref} found: no such pod")
        return row

    def members(self, pod_id: str, infra: bool = False) -> builtins.list[Container]:
        out = [c for c in self.containers.all() if (c.config.labels or {}).get(POD_LABEL) == pod_id]
        if not infra:
            out = [c for c in out if (c.config.labels or {}).get(INFRA_LABEL) != "true"]
        return sorted(out, key=lambda c: c.created)

    def _infra(self, row: Any) -> Container | None:
        try:
            return self.containers.get(row["infra_id"])
        except NotFound:
            return None

    # ------------------------------------------------------------ create
    async def _pause_image(self) -> None:
        async with self._pause_lock:
            try:
                self.images.resolve(PAUSE_IMAGE)
                return
            except NotFound:
                pass
            if not CATATONIT.exists():
                raise InvalidParameter(f"cannot make the pod's infra image: {CATATONIT} is missing (apt install catatonit)")
            repo, _, tag = PAUSE_IMAGE.rpartition(":")
            await self.images.import_(io.BytesIO(_pause_rootfs()), repo, tag,
                                      ['ENTRYPOINT ["/catatonit", "-P"]'], "dockyard pod infra (catatonit -P)")

    async def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        """podman's PodSpecGenerator, the parts that apply: name, labels, hostname, portmappings,
        Networks (name → {aliases}) or netns {nsmode: host|bridge}, share."""
        if not isinstance(spec, dict):
            raise InvalidParameter("invalid pod spec: expected an object")
        pid = new_id()
        name = spec.get("name") or f"pod_{pid[:12]}"
        if not NAME_RE.match(name):
            raise InvalidParameter(f"invalid pod name {name!r}: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        if self.db.query_one("SELECT id FROM pods WHERE name=?", (name,)):
            raise Conflict(f"{name}: pod already exists")
        share = spec.get("shared_namespaces") or spec.get("share") or SHARED
        if isinstance(share, str):
            share = [s for s in share.split(",") if s]
        unknown = sorted(set(share) - set(SHARED))
        if unknown:
            raise InvalidParameter(f"pod namespaces that cannot be shared here: {', '.join(unknown)} "
                                   f"(supported: {', '.join(SHARED)})")
        if "net" not in share:
            raise InvalidParameter("a pod without a shared network namespace is not supported")
        hostname = spec.get("hostname") or name
        exposed, bindings = _port_bindings(spec.get("portmappings") or [])
        nets = spec.get("Networks") or spec.get("networks") or {}
        if isinstance(nets, list):
            nets = {n: {} for n in nets}
        nsmode = ((spec.get("netns") or {}).get("nsmode") or "").lower()
        host_config: dict[str, Any] = {"PortBindings": bindings, "IpcMode": "shareable"}
        endpoints: dict[str, Any] = {}
        if nsmode == "host":
            host_config["NetworkMode"] = "host"
        elif nets:
            first = next(iter(nets))
            host_config["NetworkMode"] = first
            for net, opts in nets.items():
                endpoints[net] = {"Aliases": list((opts or {}).get("aliases") or [])}
        labels = {str(k): str(v) for k, v in (spec.get("labels") or {}).items()}
        await self._pause_image()
        body: dict[str, Any] = {
            "Image": PAUSE_IMAGE, "Hostname": hostname, "ExposedPorts": exposed,
            "Labels": {POD_LABEL: pid, INFRA_LABEL: "true"}, "HostConfig": host_config,
        }
        if endpoints:
            body["NetworkingConfig"] = {"EndpointsConfig": endpoints}
        from dockyard.wire.container import create_request

        infra = await self.containers.create(create_request(body), f"{pid[:12]}-infra", verify=False)
        config = {"hostname": hostname, "share": list(share), "portmappings": spec.get("portmappings") or [],
                  "networks": list(nets) or ([] if nsmode == "host" else ["bridge"]), "nsmode": nsmode or "bridge"}
        try:
            self.db.execute("INSERT INTO pods(id, name, created, infra_id, labels, config) VALUES(?,?,?,?,?,?)",
                            (pid, name, time.time(), infra["Id"], json.dumps(labels), json.dumps(config)))
        except Exception:
            await self.containers.remove(infra["Id"], force=True, quiet=True)
            if self.db.query_one("SELECT id FROM pods WHERE name=?", (name,)):
                raise Conflict(f"{name}: pod already exists") from None
            raise
        self.events.emit("pod", "create", pid, {"name": name})
        return {"Id": pid}

    def member_body(self, ref: str, req: CreateRequest) -> CreateRequest:
        """A container create request for a member of pod `ref`: it joins the infra's namespaces."""
        import msgspec

        from dockyard.wire.container import HostConfig

        row = self._row(ref)
        cfg = json.loads(row["config"])
        hc = msgspec.structs.replace(req.host_config) if req.host_config is not None else HostConfig()
        nc = req.networking_config
        if any(hc.port_bindings or {}) or hc.publish_all_ports or hc.network_mode not in ("", "default") or \
                (nc is not None and nc.endpoints_config is not None):
            raise InvalidParameter(SHARED_NET_ERROR)
        infra = f"container:{row['infra_id']}"
        hc.network_mode = infra
        if "ipc" in cfg["share"]:
            hc.ipc_mode = infra
        if "uts" in cfg["share"]:
            hc.uts_mode = infra
        return msgspec.structs.replace(req, host_config=hc, hostname=cfg["hostname"],
                                       labels={**(req.labels or {}), POD_LABEL: row["id"]})

    async def _start_infra_of(self, c: Container) -> None:
        """A member starting (`start`, `restart`, a pod start) needs its infra running first."""
        labels = c.config.labels or {}
        if not labels.get(POD_LABEL) or labels.get(INFRA_LABEL) == "true":
            return
        row = self.db.query_one("SELECT * FROM pods WHERE id=?", (labels[POD_LABEL],))
        infra = self._infra(row) if row is not None else None
        if infra is not None and not infra.running:
            try:
                await self.containers.start(infra.id)
            except NotModified:
                pass

    # ------------------------------------------------------------ lifecycle
    async def start(self, ref: str) -> dict[str, Any]:
        row = self._row(ref)
        infra = self._infra(row)
        members = self.members(row["id"])
        if infra is not None and infra.running and all(c.running for c in members):
            raise NotModified("pod already running")
        errs: list[str] = []
        if infra is not None and not infra.running:
            await self.containers.start(infra.id)
        for c in members:
            if c.running:
                continue
            try:
                await self.containers.start(c.id)
            except NotModified:
                pass
            except Exception as e:  # noqa: BLE001 - reported per container, as podman's Errs
                errs.append(f"{c.name}: {e.message if isinstance(e, DockyardError) else str(e)}")
        self.events.emit("pod", "start", row["id"], {"name": row["name"]})
        return {"Errs": errs or None, "Id": row["id"]}

    async def stop(self, ref: str, timeout: int | None = None) -> dict[str, Any]:
        row = self._row(ref)
        infra = self._infra(row)
        members = self.members(row["id"])
        if not any(c.running for c in members) and (infra is None or not infra.running):
            raise NotModified("pod already stopped")
        errs: list[str] = []

        async def stop_one(c: Container) -> None:
            try:
                await self.containers.stop(c.id, timeout)
            except NotModified:
                pass
            except Exception as e:  # noqa: BLE001
                errs.append(f"{c.name}: {e.message if isinstance(e, DockyardError) else str(e)}")

        await asyncio.gather(*(stop_one(c) for c in members if c.running))
        if infra is not None and infra.running:
            await stop_one(infra)
        self.events.emit("pod", "stop", row["id"], {"name": row["name"]})
        return {"Errs": errs or None, "Id": row["id"]}

    async def remove(self, ref: str, force: bool = False, timeout: int | None = None) -> dict[str, Any]:
        row = self._row(ref)
        members = self.members(row["id"])
        running = [c for c in members if c.running]
        if running and not force:
            raise Conflict(f"pod {row['id']} has containers that are not ready to be removed: "
                           f"cannot remove container {running[0].id} as it is running - running or paused "
                           "containers cannot be removed without force: container state improper")
        removed: dict[str, Any] = {}
        for c in running:
            try:
                await self.containers.stop(c.id, timeout)
            except NotModified:
                pass
        for c in [*members, *([i] if (i := self._infra(row)) is not None else [])]:
            await self.containers.remove(c.id, force=True, volumes=False)
            removed[c.id] = None
        self.db.execute("DELETE FROM pods WHERE id=?", (row["id"],))
        self.events.emit("pod", "remove", row["id"], {"name": row["name"]})
        return {"Err": None, "Id": row["id"], "RemovedCtrs": removed}

    # ------------------------------------------------------------ views
    @staticmethod
    def _status(members: builtins.list[Container], infra: Container | None) -> str:
        ctrs = members or ([infra] if infra is not None else [])
        if not ctrs:
            return "Created"
        running = sum(1 for c in ctrs if c.state == "running")
        if any(c.state == "paused" for c in ctrs):
            return "Paused"
        if running == len(ctrs):
            return "Running"
        if running:
            return "Degraded"
        if all(c.state == "created" for c in ctrs):
            return "Created"
        return "Exited"

    @staticmethod
    def _ctr_state(c: Container) -> str:
        return c.state

    def inspect(self, ref: str) -> dict[str, Any]:
        row = self._row(ref)
        cfg = json.loads(row["config"])
        infra = self._infra(row)
        members = self.members(row["id"])
        exposed, bindings = _port_bindings(cfg["portmappings"])
        everyone = ([infra] if infra is not None else []) + members
        return {
            "Id": row["id"], "Name": row["name"],
            "Created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["created"])),
            "CreateCommand": None, "ExitPolicy": "continue", "State": self._status(members, infra),
            "Hostname": cfg["hostname"], "Labels": json.loads(row["labels"]),
            "CreateCgroup": False, "CgroupParent": "", "CgroupPath": "",
            "CreateInfra": True, "InfraContainerID": row["infra_id"],
            "InfraConfig": {"PortBindings": bindings, "HostNetwork": cfg["nsmode"] == "host",
                            "StaticIP": "", "StaticMAC": "", "NoManageResolvConf": False, "DNSServer": None,
                            "DNSSearch": None, "DNSOption": None, "NoManageHosts": False, "HostAdd": None,
                            "Networks": cfg["networks"], "NetworkOptions": None, "pid_ns": "private",
                            "userns": "host", "uts_ns": "private"},
            "SharedNamespaces": cfg["share"], "NumContainers": len(everyone),
            "Containers": [{"Id": c.id, "Name": c.name, "State": self._ctr_state(c)} for c in everyone],
            "ExposedPorts": exposed,
        }

    def summary(self, row: Any) -> dict[str, Any]:
        cfg = json.loads(row["config"])
        infra = self._infra(row)
        members = self.members(row["id"])
        everyone = ([infra] if infra is not None else []) + members
        return {
            "Cgroup": "", "Created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["created"])),
            "Id": row["id"], "InfraId": row["infra_id"], "Name": row["name"], "Namespace": "",
            "Networks": cfg["networks"], "Status": self._status(members, infra), "Labels": json.loads(row["labels"]),
            "Containers": [{"Id": c.id, "Names": c.name, "Status": self._ctr_state(c)} for c in everyone],
        }

    def list(self, filters: dict[str, builtins.list[str]] | None = None) -> builtins.list[dict[str, Any]]:
        out = []
        for row in self.db.query("SELECT * FROM pods ORDER BY created"):
            s = self.summary(row)
            if filters and not _matches(s, filters):
                continue
            out.append(s)
        return out


def _matches(s: dict[str, Any], filters: dict[str, builtins.list[str]]) -> bool:
    for key, values in filters.items():
        if key == "name" and not any(re.search(v, s["Name"]) for v in values):
            return False
        if key == "id" and not any(s["Id"].startswith(v) for v in values):
            return False
        if key == "status" and s["Status"].lower() not in [v.lower() for v in values]:
            return False
        if key == "label":
            for v in values:
                k, eq, val = v.partition("=")
                if k not in s["Labels"] or (eq and s["Labels"][k] != val):
                    return False
        if key not in ("name", "id", "status", "label"):
            raise InvalidParameter(f"invalid filter {key!r}")
    return True
