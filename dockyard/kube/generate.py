"""`kube generate`: Kubernetes manifests for containers, pods and compose projects.

Every source is first made a compose-like service (a container's inspect document too), then one
function turns services into a pod template. What Kubernetes cannot say (host binds, host network,
start order other than init containers, host addresses of published ports ...) goes to
`Generated.notes`, which the CLI prints on stderr: nothing is dropped silently.

Mapping (compose → Kubernetes):
- a service → a Deployment (`replicas` from `scale`/`deploy.replicas`), a container or pod → a Pod
  (or a Deployment with `kind="deployment"`);
- ports and `expose` → `containerPort`s and a ClusterIP Service named as the service (port =
  container port, so `http://web:80` works in the cluster as on the compose network); published
  ports → a LoadBalancer Service `<name>-public` whose port is the published one;
- named volumes → PersistentVolumeClaims (anonymous ones and tmpfs → emptyDir);
- `configs` → ConfigMaps, `secrets` → Secrets, mounted where compose mounts them (subPath);
  `env_file`s → a ConfigMap per service read with `envFrom`;
- healthcheck → readinessProbe (exec); limits/reservations → resources; a dependency with
  `condition: service_completed_successfully` → an initContainer of each dependent (and no
  Deployment of its own).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dockyard.compose.loader import Project
from dockyard.compose.normalize import format_duration, parse_duration
from dockyard.compose.secretfiles import _refs, _target

Manifest = dict[str, Any]
APP_LABEL = "app.kubernetes.io/name"

# Keys of a normalized compose service that the generator turns into something (or notes on purpose).
HANDLED = {
    "image", "command", "entrypoint", "environment", "ports", "expose", "volumes", "healthcheck", "mem_limit",
    "mem_reservation", "cpus", "deploy", "scale", "depends_on", "configs", "secrets", "privileged", "cap_add",
    "cap_drop", "user", "working_dir", "hostname", "tty", "stdin_open", "stop_grace_period", "read_only",
    "extra_hosts", "networks", "network_mode", "labels", "container_name", "restart", "tmpfs", "build",
    "x-env-files", "init", "dns",
}


@dataclass
class Generated:
    docs: list[Manifest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def add(self, doc: Manifest) -> None:
        key = (doc["kind"], doc["metadata"]["name"])
        if not any((d["kind"], d["metadata"]["name"]) == key for d in self.docs):
            self.docs.append(doc)

    def yaml(self) -> str:
        return "".join("---\n" + yaml.safe_dump(d, sort_keys=False) for d in self.docs)


def dns_name(name: str, limit: int = 63) -> str:
    """A DNS-1123 label from any name (`my_app.web` → `my-app-web`)."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:limit].strip("-")
    return out or "x"


def quantity_memory(n: int) -> str:
    for unit, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def quantity_cpu(cpus: float) -> str:
    milli = round(cpus * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _seconds(value: Any, default: int | None = None) -> int | None:
    if value in (None, ""):
        return default
    return max(1, -(-parse_duration(value, "duration") // 10**9))  # rounded up, at least 1


def probe_of(hc: dict[str, Any] | None) -> dict[str, Any] | None:
    if not hc or not hc.get("test") or hc["test"][0] == "NONE":
        return None
    test = list(hc["test"])
    if test[0] == "CMD":
        command = test[1:]
    elif test[0] == "CMD-SHELL":
        command = ["/bin/sh", "-c", " ".join(test[1:])]
    else:
        command = ["/bin/sh", "-c", " ".join(test)]
    probe: dict[str, Any] = {"exec": {"command": command}}
    for key, k8s in (("interval", "periodSeconds"), ("timeout", "timeoutSeconds"),
                     ("start_period", "initialDelaySeconds")):
        if (v := _seconds(hc.get(key))) is not None:
            probe[k8s] = v
    if hc.get("retries"):
        probe["failureThreshold"] = int(hc["retries"])
    return probe


class _Pod:
    """One pod template being built: its containers, volumes and the objects they need."""

    def __init__(self, out: Generated, project: Project | None, owner: str) -> None:
        self.out = out
        self.project = project
        self.owner = owner
        self.volumes: list[dict[str, Any]] = []
        self.containers: list[dict[str, Any]] = []
        self.init_containers: list[dict[str, Any]] = []
        self.ports: list[dict[str, Any]] = []  # (name, port, protocol, published, host_ip)
        self.spec_extra: dict[str, Any] = {}

    def _volume(self, vol: dict[str, Any]) -> str:
        for v in self.volumes:
            if v["name"] == vol["name"]:
                return str(v["name"])
        self.volumes.append(vol)
        return str(vol["name"])

    def container(self, cname: str, svc: dict[str, Any], where: str, init: bool = False) -> None:
        ctr: dict[str, Any] = {"name": dns_name(cname), "image": svc.get("image") or ""}
        if not svc.get("image"):
            self.out.note(f"{where}: no image (a build): build and push it, then set the image")
        if svc.get("entrypoint"):
            ctr["command"] = list(svc["entrypoint"])
        if svc.get("command"):
            ctr["args"] = list(svc["command"])
        env = dict(svc.get("environment") or {})
        env_files: dict[str, str] = svc.get("x-env-files") or {}
        if env_files:
            cm = dns_name(f"{cname}-env", 253)
            self.out.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm},
                          "data": {k: v for k, v in env_files.items()}})
            ctr["envFrom"] = [{"configMapRef": {"name": cm}}]
            env = {k: v for k, v in env.items() if k not in env_files or env_files[k] != v}
        if env:
            ctr["env"] = [{"name": k, "value": "" if v is None else str(v)} for k, v in env.items()]
        if svc.get("working_dir"):
            ctr["workingDir"] = svc["working_dir"]
        if svc.get("tty"):
            ctr["tty"] = True
        if svc.get("stdin_open"):
            ctr["stdin"] = True
        ports = self._ports(svc, where, init)
        if ports:
            ctr["ports"] = ports
        mounts = self._mounts(cname, svc, where)
        if mounts:
            ctr["volumeMounts"] = mounts
        probe = probe_of(svc.get("healthcheck"))
        if probe and not init:
            ctr["readinessProbe"] = probe
        resources = self._resources(svc)
        if resources:
            ctr["resources"] = resources
        sc = self._security(svc, where)
        if sc:
            ctr["securityContext"] = sc
        for key in sorted(set(svc) - HANDLED):
            self.out.note(f"{where}.{key}: not expressed in Kubernetes; left out")
        (self.init_containers if init else self.containers).append(ctr)

    def _ports(self, svc: dict[str, Any], where: str, init: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: set[tuple[int, str]] = set()

        def add(port: int, proto: str, published: str | None, host_ip: str | None) -> None:
            proto = proto.upper()
            if (port, proto) not in seen:
                seen.add((port, proto))
                out.append({"containerPort": port, "protocol": proto})
            self.ports.append({"port": port, "protocol": proto, "published": published, "host_ip": host_ip})

        for p in svc.get("ports") or []:
            published = str(p.get("published") or "") or None
            if published and "-" in published:
                self.out.note(f"{where}.ports: the range {published} is published as its first port only")
                published = published.split("-")[0]
            if p.get("host_ip") and p["host_ip"] not in ("0.0.0.0", "::"):
                self.out.note(f"{where}.ports: host address {p['host_ip']} of port {published or p['target']} "
                              "not expressed: a LoadBalancer listens where the cluster puts it")
            if not published:
                self.out.note(f"{where}.ports: {p['target']} is published on a random host port here; "
                              f"the LoadBalancer Service uses port {p['target']}")
            add(int(p["target"]), str(p.get("protocol") or "tcp"), published or str(p["target"]), p.get("host_ip"))
        for e in svc.get("expose") or []:
            port, _, proto = str(e).partition("/")
            for n in _port_list(port):
                add(n, proto or "tcp", None, None)
        if init and out:
            self.out.note(f"{where}: the ports of an init container are not served")
        return out

    def _mounts(self, cname: str, svc: dict[str, Any], where: str) -> list[dict[str, Any]]:
        mounts: list[dict[str, Any]] = []
        project_vols = self.project.volumes if self.project else {}
        for v in svc.get("volumes") or []:
            kind, target = v.get("type"), v.get("target")
            ro = bool(v.get("read_only"))
            if kind == "volume" and v.get("source"):
                src = str(v["source"])
                spec = project_vols.get(src) or {}
                if spec.get("external"):
                    self.out.note(f"{where}.volumes: external volume {src} becomes a claim of that name; "
                                  "create it on the cluster")
                claim = dns_name(src, 253)
                self.out.add({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
                              "spec": {"accessModes": ["ReadWriteOnce"],
                                       "resources": {"requests": {"storage": "1Gi"}}}})
                name = self._volume({"name": claim, "persistentVolumeClaim": {"claimName": claim}})
            elif kind == "volume" or kind == "tmpfs":
                name = self._volume({"name": dns_name(f"{cname}-{target}"),
                                     "emptyDir": {"medium": "Memory"} if kind == "tmpfs" else {}})
            elif kind == "bind":
                self.out.note(f"{where}.volumes: host bind {v.get('source')}:{target} cannot be expressed "
                              "(a cluster's nodes do not have this host's files); left out: use a ConfigMap "
                              "or a volume")
                continue
            else:
                self.out.note(f"{where}.volumes: a {kind} mount at {target} cannot be expressed; left out")
                continue
            m: dict[str, Any] = {"name": name, "mountPath": target}
            if ro:
                m["readOnly"] = True
            mounts.append(m)
        for t in svc.get("tmpfs") or []:
            path = str(t).split(":")[0]
            name = self._volume({"name": dns_name(f"{cname}-tmp-{path}"), "emptyDir": {"medium": "Memory"}})
            mounts.append({"name": name, "mountPath": path})
        if self.project is not None:
            mounts += self._files(cname, svc, where)
        return mounts

    def _files(self, cname: str, svc: dict[str, Any], where: str) -> list[dict[str, Any]]:
        """compose configs → ConfigMaps, secrets → Secrets, one key each, mounted by subPath."""
        assert self.project is not None
        mounts = []
        for kind, defs in (("configs", self.project.configs), ("secrets", self.project.secrets)):
            for ref in _refs(svc, kind):
                src = str(ref.get("source"))
                d = defs.get(src) or {}
                obj = dns_name(src, 253)
                key = re.sub(r"[^-._a-zA-Z0-9]", "_", src)
                if d.get("external"):
                    self.out.note(f"{where}.{kind}: external {kind[:-1]} {src}: referenced as {obj}; "
                                  "create it on the cluster")
                else:
                    content = _content(self.project, d, f"{where}.{kind}")
                    if kind == "configs":
                        self.out.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": obj},
                                      "data": {key: content.decode()}})
                    else:
                        self.out.add({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": obj},
                                      "type": "Opaque", "data": {key: base64.b64encode(content).decode()}})
                if ref.get("uid") or ref.get("gid"):
                    self.out.note(f"{where}.{kind}: uid/gid of {src} not expressed (files are root's)")
                mode = ref.get("mode")
                item: dict[str, Any] = {"key": key, "path": key}
                if mode is not None:
                    item["mode"] = int(str(mode), 8) if isinstance(mode, str) else int(mode)
                vol = ({"name": f"{kind[:-1]}-{obj}"[:63].rstrip("-"), "configMap": {"name": obj, "items": [item]}}
                       if kind == "configs" else
                       {"name": f"{kind[:-1]}-{obj}"[:63].rstrip("-"), "secret": {"secretName": obj, "items": [item]}})
                name = self._volume(vol)
                mounts.append({"name": name, "mountPath": _target(kind, ref), "subPath": key, "readOnly": True})
        return mounts

    def _resources(self, svc: dict[str, Any]) -> dict[str, Any]:
        limits: dict[str, str] = {}
        requests: dict[str, str] = {}
        res = (svc.get("deploy") or {}).get("resources") or {}
        mem = (res.get("limits") or {}).get("memory") or svc.get("mem_limit")
        cpus = (res.get("limits") or {}).get("cpus") or svc.get("cpus")
        if mem:
            limits["memory"] = quantity_memory(int(mem))
        if cpus:
            limits["cpu"] = quantity_cpu(float(cpus))
        rmem = (res.get("reservations") or {}).get("memory") or svc.get("mem_reservation")
        rcpu = (res.get("reservations") or {}).get("cpus")
        if rmem:
            requests["memory"] = quantity_memory(int(rmem))
        if rcpu:
            requests["cpu"] = quantity_cpu(float(rcpu))
        out: dict[str, Any] = {}
        if limits:
            out["limits"] = limits
        if requests:
            out["requests"] = requests
        return out

    def _security(self, svc: dict[str, Any], where: str) -> dict[str, Any]:
        sc: dict[str, Any] = {}
        if svc.get("privileged"):
            sc["privileged"] = True
            self.out.note(f"{where}.privileged: written as securityContext.privileged, which Pod Security "
                          "'baseline' and 'restricted' reject; a cluster may refuse the pod")
        caps: dict[str, list[str]] = {}
        if svc.get("cap_add"):
            caps["add"] = [str(c).removeprefix("CAP_") for c in svc["cap_add"]]
        if svc.get("cap_drop"):
            caps["drop"] = [str(c).removeprefix("CAP_") for c in svc["cap_drop"]]
        if caps:
            sc["capabilities"] = caps
        if svc.get("read_only"):
            sc["readOnlyRootFilesystem"] = True
        user = str(svc.get("user") or "")
        if user:
            uid, _, gid = user.partition(":")
            if uid.isdigit() and (not gid or gid.isdigit()):
                sc["runAsUser"] = int(uid)
                if gid:
                    sc["runAsGroup"] = int(gid)
            else:
                self.out.note(f"{where}.user: {user!r} is a name; Kubernetes takes numeric ids only; left out")
        return sc

    def pod_spec(self, svc: dict[str, Any], where: str) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if self.init_containers:
            spec["initContainers"] = self.init_containers
        spec["containers"] = self.containers
        if self.volumes:
            spec["volumes"] = self.volumes
        if svc.get("hostname"):
            spec["hostname"] = dns_name(str(svc["hostname"]))
        if svc.get("stop_grace_period"):
            spec["terminationGracePeriodSeconds"] = _seconds(svc["stop_grace_period"])
        hosts: dict[str, list[str]] = {}
        for h in svc.get("extra_hosts") or []:
            name, _, ip = str(h).replace("=", ":", 1).partition(":")
            if ip == "host-gateway":
                self.out.note(f"{where}.extra_hosts: {name}:host-gateway not expressed; left out")
                continue
            hosts.setdefault(ip, []).append(name)
        if hosts:
            spec["hostAliases"] = [{"ip": ip, "hostnames": names} for ip, names in hosts.items()]
        if svc.get("dns"):
            spec["dnsConfig"] = {"nameservers": [str(d) for d in svc["dns"]]}
        mode = str(svc.get("network_mode") or "")
        if mode == "host":
            self.out.note(f"{where}.network_mode: host cannot be expressed (a pod on a node's network); "
                          "left out: the pod gets its own network")
        elif mode and mode != "bridge" and mode != "default":
            self.out.note(f"{where}.network_mode: {mode} not expressed; left out")
        restart = str(svc.get("restart") or "")
        if restart in ("no", "on-failure") or restart.startswith("on-failure"):
            self.out.note(f"{where}.restart: {restart}: pods of a Deployment always restart")
        return spec


def _port_list(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-", 1)
        return list(range(int(a), int(b) + 1))
    return [int(text)]


def _content(project: Project, d: dict[str, Any], where: str) -> bytes:
    if d.get("file"):
        path = Path(str(d["file"]))
        if not path.is_absolute():
            path = project.working_dir / path
        return path.read_bytes()
    if "environment" in d:
        value = project.environment.get(str(d["environment"]), os.environ.get(str(d["environment"])))
        return (value or "").encode()
    return str(d.get("content") or "").encode()


def _services(g: Generated, name: str, pod: _Pod, labels: dict[str, str], ports: list[dict[str, Any]]) -> None:
    """A ClusterIP Service for every container port; a LoadBalancer one for the published ports."""
    if not ports:
        return
    inner: list[dict[str, Any]] = []
    outer: list[dict[str, Any]] = []
    for p in ports:
        entry = {"name": f"{p['port']}-{p['protocol'].lower()}", "port": p["port"], "targetPort": p["port"],
                 "protocol": p["protocol"]}
        if entry not in inner:
            inner.append(entry)
        if p["published"]:
            pub = int(p["published"])
            e2 = {"name": f"{pub}-{p['protocol'].lower()}", "port": pub, "targetPort": p["port"],
                  "protocol": p["protocol"]}
            if e2 not in outer:
                outer.append(e2)
    g.add({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": dict(labels)},
           "spec": {"type": "ClusterIP", "selector": dict(labels), "ports": inner}})
    if outer:
        g.add({"apiVersion": "v1", "kind": "Service", "metadata": {"name": dns_name(f"{name}-public"),
                                                                   "labels": dict(labels)},
               "spec": {"type": "LoadBalancer", "selector": dict(labels), "ports": outer}})


def from_project(project: Project, g: Generated | None = None,
                 image_ports: Callable[[str], list[str]] | None = None) -> Generated:
    """Deployments, Services, claims, ConfigMaps and Secrets for a compose project. `image_ports`
    names an image's EXPOSEd ports ("6379/tcp"): compose reaches a service by name whatever its ports,
    a cluster only through a Service, which needs them."""
    g = g or Generated()
    init_only = {dep for svc in project.services.values()
                 for dep, spec in (svc.get("depends_on") or {}).items()
                 if (spec or {}).get("condition") == "service_completed_successfully"}
    if len(project.networks) > 1:
        g.note(f"project {project.name}: {len(project.networks)} networks become the cluster's one network "
               "(their isolation is not expressed; use NetworkPolicies)")
    for name, svc in project.services.items():
        where = f"services.{name}"
        if name in init_only:
            dependents = [n for n, s in project.services.items() if name in (s.get("depends_on") or {})]
            g.note(f"{where}: runs once before {', '.join(dependents)}: written as their initContainer")
            if not any((s.get("depends_on") or {}).get(name, {}).get("condition") !=
                       "service_completed_successfully" for s in project.services.values()
                       if name in (s.get("depends_on") or {})):
                continue
        app = dns_name(name)
        labels = {APP_LABEL: app}
        pod = _Pod(g, project, app)
        for dep, spec in (svc.get("depends_on") or {}).items():
            cond = (spec or {}).get("condition")
            if cond == "service_completed_successfully" and dep in project.services:
                pod.container(dep, project.services[dep], f"services.{dep}", init=True)
            elif cond == "service_healthy":
                g.note(f"{where}.depends_on: {dep} (service_healthy) not expressed: pods start "
                       f"independently; {dep}'s readinessProbe keeps it out of its Service until healthy")
            else:
                g.note(f"{where}.depends_on: {dep} ({cond}) not expressed: pods start independently")
        if image_ports is not None and svc.get("image"):
            known = {f"{p['target']}/{p.get('protocol') or 'tcp'}" for p in svc.get("ports") or []}
            known |= {e if "/" in str(e) else f"{e}/tcp" for e in svc.get("expose") or []}
            extra = [p for p in image_ports(str(svc["image"])) if p not in known]
            if extra:
                svc = {**svc, "expose": [*(svc.get("expose") or []), *extra]}
        pod.container(name, svc, where)
        if not pod.ports:
            g.note(f"{where}: no ports known, so no Service: other pods cannot reach it by name "
                   "(add `expose:` if they should)")
        template = {"metadata": {"labels": dict(labels)}, "spec": pod.pod_spec(svc, where)}
        replicas = int(svc.get("scale", 1))
        g.add({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": app, "labels": dict(labels),
                            "annotations": {"io.dockyard.compose.project": project.name}},
               "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)}, "template": template}})
        _services(g, app, pod, labels, pod.ports)
    return g


def env_files_of(project: Project) -> dict[str, dict[str, str]]:
    """Per service, the variables its env_files gave (read back from the compose files)."""
    from dockyard.compose.interpolate import parse_dotenv

    out: dict[str, dict[str, str]] = {}
    for f in project.config_files:
        try:
            doc = yaml.safe_load(Path(f).read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        for name, svc in (doc.get("services") or {}).items():
            files = (svc or {}).get("env_file")
            if not files or name not in project.services:
                continue
            for ef in [files] if isinstance(files, str | dict) else files:
                path = Path(str(ef["path"] if isinstance(ef, dict) else ef))
                path = path if path.is_absolute() else Path(f).parent / path
                if path.exists():
                    out.setdefault(name, {}).update(parse_dotenv(path, project.environment))
    return out


# ---------------------------------------------------------------- containers and pods
def service_of_container(info: dict[str, Any], image_config: dict[str, Any] | None) -> dict[str, Any]:
    """A container's inspect document as a compose-like service (what differs from its image)."""
    cfg, hc = info.get("Config") or {}, info.get("HostConfig") or {}
    img = image_config or {}
    svc: dict[str, Any] = {"image": cfg.get("Image") or info.get("Image")}
    if cfg.get("Entrypoint") and cfg.get("Entrypoint") != img.get("Entrypoint"):
        svc["entrypoint"] = cfg["Entrypoint"]
    if cfg.get("Cmd") and (cfg.get("Cmd") != img.get("Cmd") or "entrypoint" in svc):
        svc["command"] = cfg["Cmd"]
    base_env = set(img.get("Env") or [])
    env = {}
    for kv in cfg.get("Env") or []:
        if kv not in base_env:
            k, _, v = kv.partition("=")
            env[k] = v
    if env:
        svc["environment"] = env
    if cfg.get("WorkingDir") and cfg.get("WorkingDir") != img.get("WorkingDir"):
        svc["working_dir"] = cfg["WorkingDir"]
    if cfg.get("User") and cfg.get("User") != img.get("User"):
        svc["user"] = cfg["User"]
    for key, src in (("tty", "Tty"), ("stdin_open", "OpenStdin")):
        if cfg.get(src):
            svc[key] = True
    ports = []
    for key, binds in (hc.get("PortBindings") or {}).items():
        port, _, proto = key.partition("/")
        for b in binds or [{}]:
            ports.append({"target": int(port), "protocol": proto or "tcp", "published": b.get("HostPort") or None,
                          "host_ip": b.get("HostIp") or None})
    if ports:
        svc["ports"] = ports
    bound = {f"{p['target']}/{p['protocol']}" for p in ports}
    image_ports = set(img.get("ExposedPorts") or {})
    # the image's EXPOSE too: a Service (the name other pods reach it by) needs the ports
    expose = [k for k in (cfg.get("ExposedPorts") or {}) if k not in bound] + \
        [k for k in image_ports if k not in bound and k not in (cfg.get("ExposedPorts") or {})]
    if expose:
        svc["expose"] = expose
    vols = []
    for m in info.get("Mounts") or []:
        if m.get("Type") == "volume":
            anon = len(str(m.get("Name") or "")) == 64 and m["Name"] not in (hc.get("Binds") or "")
            vols.append({"type": "volume", "source": None if anon else m.get("Name"),
                         "target": m.get("Destination"), "read_only": not m.get("RW", True)})
        else:
            vols.append({"type": m.get("Type"), "source": m.get("Source"), "target": m.get("Destination"),
                         "read_only": not m.get("RW", True)})
    if vols:
        svc["volumes"] = vols
    hcheck = cfg.get("Healthcheck")
    if hcheck and hcheck.get("Test"):
        h: dict[str, Any] = {"test": hcheck["Test"]}
        for k, api in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod")):
            if hcheck.get(api):
                h[k] = format_duration(int(hcheck[api]))
        if hcheck.get("Retries"):
            h["retries"] = hcheck["Retries"]
        svc["healthcheck"] = h
    if hc.get("Memory"):
        svc["mem_limit"] = hc["Memory"]
    if hc.get("MemoryReservation"):
        svc["mem_reservation"] = hc["MemoryReservation"]
    if hc.get("NanoCpus"):
        svc["cpus"] = hc["NanoCpus"] / 1e9
    elif hc.get("CpuQuota") and hc.get("CpuPeriod"):
        svc["cpus"] = hc["CpuQuota"] / hc["CpuPeriod"]
    for key, src in (("privileged", "Privileged"), ("read_only", "ReadonlyRootfs")):
        if hc.get(src):
            svc[key] = True
    for key, src in (("cap_add", "CapAdd"), ("cap_drop", "CapDrop"), ("extra_hosts", "ExtraHosts"), ("dns", "Dns")):
        if hc.get(src):
            svc[key] = list(hc[src])
    mode = hc.get("NetworkMode") or ""
    if mode == "host":
        svc["network_mode"] = "host"
    return svc


def pod_manifest(g: Generated, name: str, members: list[tuple[str, dict[str, Any]]], kind: str = "pod",
                 hostname: str | None = None, extra_ports: list[dict[str, Any]] | None = None,
                 replicas: int = 1) -> None:
    """A Pod (or a Deployment) for containers given as (name, service); Services for their ports."""
    app = dns_name(name)
    labels = {APP_LABEL: app}
    pod = _Pod(g, None, app)
    for cname, svc in members:
        pod.container(cname, svc, f"container {cname}")
    merged: dict[str, Any] = {}
    if hostname:
        merged["hostname"] = hostname
    spec = pod.pod_spec(merged, f"pod {name}")
    for cname, svc in members:
        extra = pod.pod_spec({k: svc[k] for k in ("network_mode", "extra_hosts", "dns") if k in svc},
                             f"container {cname}")
        for k in ("hostAliases", "dnsConfig"):
            if k in extra:
                spec.setdefault(k, extra[k])
    ports = list(pod.ports)
    if extra_ports:
        ports += extra_ports
        cports = pod.containers[0].setdefault("ports", []) if pod.containers else []
        for p in extra_ports:
            if not any(c["containerPort"] == p["port"] and c["protocol"] == p["protocol"] for c in
                       (x for ctr in pod.containers for x in ctr.get("ports", []))):
                cports.append({"containerPort": p["port"], "protocol": p["protocol"]})
    if kind == "deployment":
        g.add({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app, "labels": dict(labels)},
               "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                        "template": {"metadata": {"labels": dict(labels)}, "spec": spec}}})
    else:
        g.add({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": app, "labels": dict(labels)}, "spec": spec})
    _services(g, app, pod, labels, ports)
