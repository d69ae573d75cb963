"""`kube play` / `kube down`: Kubernetes manifests run as pods on one engine.

Kinds: Pod, Deployment (each replica a pod `<name>-pod-0`, `<name>-pod-1`, ... as podman names them), Service (its name and
the pod's name are DNS aliases of the pod on the play's network; a LoadBalancer or NodePort Service
publishes its port on the host, as a container's `hostPort` does), ConfigMap and Secret (files
copied into the container before it starts, or environment), PersistentVolumeClaim (a named volume
of the claim's name). initContainers run in order before the pod's containers (each must exit 0);
probes become healthchecks. Anything else is refused with the kind or field named: nothing is
ignored silently. Works against any daemon with the libpod pod paths (ours; podman's service).
"""

from __future__ import annotations

import base64
import io
import re
import tarfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from dockyard.client import APIClient, APIError

Manifest = dict[str, Any]

if TYPE_CHECKING:  # the structs (msgspec) are imported when a container is made
    from dockyard.wire.container import CreateRequest, HealthConfig, Mount
KINDS = ("Pod", "Deployment", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim")
PLAY_LABEL = "io.dockyard.kube.play"
DEFAULT_NETWORK = "dockyard-kube"

# Fields play understands; a field outside these is an error naming it. Fields a single engine has
# no use for but which do not change what runs (scheduling, pull policy, termination messages) are
# accepted and ignored: they are listed in IGNORED.
POD_FIELDS = {"containers", "initContainers", "volumes", "hostname", "restartPolicy", "hostAliases", "dnsConfig",
              "terminationGracePeriodSeconds", "securityContext"}
POD_IGNORED = {"dnsPolicy", "schedulerName", "nodeSelector", "affinity", "tolerations", "serviceAccountName",
               "serviceAccount", "automountServiceAccountToken", "enableServiceLinks", "priority",
               "priorityClassName", "imagePullSecrets", "topologySpreadConstraints"}
CONTAINER_FIELDS = {"name", "image", "command", "args", "env", "envFrom", "ports", "volumeMounts", "workingDir",
                    "tty", "stdin", "readinessProbe", "livenessProbe", "startupProbe", "resources",
                    "securityContext"}
CONTAINER_IGNORED = {"imagePullPolicy", "terminationMessagePath", "terminationMessagePolicy", "stdinOnce"}
VOLUME_KINDS = {"persistentVolumeClaim", "emptyDir", "configMap", "secret", "hostPath"}
SECURITY_FIELDS = {"privileged", "capabilities", "runAsUser", "runAsGroup", "readOnlyRootFilesystem",
                   "allowPrivilegeEscalation", "runAsNonRoot"}


class PlayError(Exception):
    pass


@dataclass
class Plan:
    """A file's documents sorted by kind."""

    pods: list[tuple[str, Manifest, Manifest]] = field(default_factory=list)  # (pod name, pod spec, labels)
    services: list[Manifest] = field(default_factory=list)
    config_maps: dict[str, dict[str, bytes]] = field(default_factory=dict)
    secrets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    claims: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load(text: str) -> list[Manifest]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise PlayError(f"invalid YAML: {e}") from None
    out: list[Manifest] = []
    for d in docs:
        if isinstance(d, dict) and d.get("kind") == "List":
            out += list(d.get("items") or [])
        else:
            out.append(d)
    return out


def _check(obj: dict[str, Any], allowed: set[str], ignored: set[str], where: str, bad: list[str]) -> None:
    bad += [f"{where}.{k}" for k in obj if k not in allowed and k not in ignored]


def _check_pod_spec(spec: Manifest, where: str, bad: list[str]) -> None:
    _check(spec, POD_FIELDS, POD_IGNORED, where, bad)
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            w = f"{where}.{key}[{i}]"
            _check(c, CONTAINER_FIELDS, CONTAINER_IGNORED, w, bad)
            _check(c.get("securityContext") or {}, SECURITY_FIELDS, set(), f"{w}.securityContext", bad)
            for j, e in enumerate(c.get("env") or []):
                ref = (e.get("valueFrom") or {})
                for k in ref:
                    if k not in ("configMapKeyRef", "secretKeyRef", "fieldRef"):
                        bad.append(f"{w}.env[{j}].valueFrom.{k}")
    for i, v in enumerate(spec.get("volumes") or []):
        kinds = [k for k in v if k != "name"]
        bad += [f"{where}.volumes[{i}].{k}" for k in kinds if k not in VOLUME_KINDS]
    if spec.get("hostNetwork"):
        bad.append(f"{where}.hostNetwork")
    if not spec.get("containers"):
        bad.append(f"{where}.containers (none given)")


def plan(docs: list[Manifest]) -> Plan:
    p = Plan()
    bad: list[str] = []
    for i, d in enumerate(docs):
        if not isinstance(d, dict) or "kind" not in d:
            raise PlayError(f"document {i + 1} is not a Kubernetes object (no kind)")
        kind, meta = d["kind"], d.get("metadata") or {}
        name = str(meta.get("name") or "")
        if kind not in KINDS:
            raise PlayError(f"unsupported kind {kind!r} (document {i + 1}, {name or 'unnamed'}): "
                            f"kube play runs {', '.join(KINDS)}")
        if not name:
            raise PlayError(f"document {i + 1} ({kind}) has no metadata.name")
        if kind == "Pod":
            _check_pod_spec(d.get("spec") or {}, f"Pod {name}: spec", bad)
            p.pods.append((name, d.get("spec") or {}, dict(meta.get("labels") or {})))
        elif kind == "Deployment":
            spec = d.get("spec") or {}
            _check(spec, {"replicas", "selector", "template"}, {"strategy", "revisionHistoryLimit",
                                                                  "minReadySeconds", "progressDeadlineSeconds"},
                   f"Deployment {name}: spec", bad)
            tmpl = spec.get("template") or {}
            _check_pod_spec(tmpl.get("spec") or {}, f"Deployment {name}: spec.template.spec", bad)
            labels = dict((tmpl.get("metadata") or {}).get("labels") or {})
            replicas = int(spec.get("replicas", 1))
            for r in range(replicas):
                p.pods.append((f"{name}-pod-{r}", tmpl.get("spec") or {}, labels))  # podman 4.3's names
        elif kind == "Service":
            spec = d.get("spec") or {}
            stype = spec.get("type") or "ClusterIP"
            if stype not in ("ClusterIP", "NodePort", "LoadBalancer"):
                bad.append(f"Service {name}: spec.type {stype}")
            _check(spec, {"type", "selector", "ports", "clusterIP"}, {"sessionAffinity", "externalTrafficPolicy",
                                                                      "ipFamilies", "ipFamilyPolicy",
                                                                      "internalTrafficPolicy"},
                   f"Service {name}: spec", bad)
            p.services.append(d)
        elif kind == "ConfigMap":
            data = {k: str(v).encode() for k, v in (d.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (d.get("binaryData") or {}).items()})
            p.config_maps[name] = data
        elif kind == "Secret":
            data = {k: base64.b64decode(v) for k, v in (d.get("data") or {}).items()}
            data.update({k: str(v).encode() for k, v in (d.get("stringData") or {}).items()})
            p.secrets[name] = data
        elif kind == "PersistentVolumeClaim":
            p.claims.append(name)
    if bad:
        raise PlayError("unsupported fields: " + ", ".join(bad))
    return p


# ---------------------------------------------------------------- conversions
_MEM = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "K": 10**3, "M": 10**6,
        "G": 10**9, "T": 10**12, "m": 1}


def memory_bytes(q: Any) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?(?:e\d+)?)([KMGT]i|[kKMGTm])?", str(q).strip())
    if not m:
        raise PlayError(f"invalid memory quantity {q!r}")
    n = float(m.group(1)) * _MEM.get(m.group(2) or "", 1)
    return int(n / 1000) if m.group(2) == "m" else int(n)


def nano_cpus(q: Any) -> int:
    text = str(q).strip()
    if text.endswith("m"):
        return int(float(text[:-1]) * 10**6)
    return int(float(text) * 10**9)


def healthcheck(probe: Manifest, where: str) -> HealthConfig:
    from dockyard.wire.container import HealthConfig

    if "exec" in probe:
        test = ["CMD", *probe["exec"]["command"]]
    elif "httpGet" in probe:
        g = probe["httpGet"]
        url = f"{(g.get('scheme') or 'HTTP').lower()}://{g.get('host') or 'localhost'}:{g['port']}{g.get('path') or '/'}"
        test = ["CMD-SHELL", f"wget -q -O /dev/null {url} || curl -fsS -o /dev/null {url}"]
    elif "tcpSocket" in probe:
        test = ["CMD-SHELL", f"nc -z {probe['tcpSocket'].get('host') or 'localhost'} {probe['tcpSocket']['port']}"]
    else:
        raise PlayError(f"{where}: a probe needs exec, httpGet or tcpSocket")
    return HealthConfig(test=test, interval=int(probe.get("periodSeconds", 10)) * 10**9,
                        timeout=int(probe.get("timeoutSeconds", 1)) * 10**9,
                        retries=int(probe.get("failureThreshold", 3)),
                        start_period=int(probe.get("initialDelaySeconds", 0)) * 10**9)


def _encode(req: CreateRequest) -> bytes:
    from dockyard.wire.container import ENCODER

    return ENCODER(req)


def _files_tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs: set[str] = set()
        for path in sorted(files):
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    ti = tarfile.TarInfo(d)
                    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
                    tar.addfile(ti)
            data, mode = files[path]
            ti = tarfile.TarInfo(path.strip("/"))
            ti.size, ti.mode, ti.mtime = len(data), mode, int(time.time())
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


class Player:
    def __init__(self, client: APIClient, network: str = DEFAULT_NETWORK, replace: bool = False,
                 out: Any = None) -> None:
        self.client = client
        self.network = network
        self.replace = replace
        self.out = out
        self.report: dict[str, list[str]] = {}

    def _say(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out)

    # ------------------------------------------------------------ objects
    def _source(self, p: Plan, kind: str, name: str, where: str) -> dict[str, bytes]:
        table = p.config_maps if kind == "configMap" else p.secrets
        if name not in table:
            raise PlayError(f"{where}: {kind} {name} is not in the file")
        return table[name]

    def _env(self, p: Plan, c: Manifest, pod: str, where: str) -> list[str]:
        env: list[str] = []
        for src in c.get("envFrom") or []:
            prefix = src.get("prefix") or ""
            if "configMapRef" in src:
                data = self._source(p, "configMap", src["configMapRef"]["name"], where)
            elif "secretRef" in src:
                data = self._source(p, "secret", src["secretRef"]["name"], where)
            else:
                raise PlayError(f"{where}.envFrom: unsupported source {list(src)}")
            env += [f"{prefix}{k}={v.decode()}" for k, v in data.items()]
        for e in c.get("env") or []:
            vf = e.get("valueFrom")
            if vf is None:
                env.append(f"{e['name']}={e.get('value', '')}")
            elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
                kind = "configMap" if "configMapKeyRef" in vf else "secret"
                ref = vf.get("configMapKeyRef") or vf.get("secretKeyRef")
                data = self._source(p, kind, ref["name"], where)
                if ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    raise PlayError(f"{where}.env {e['name']}: key {ref['key']} not in {kind} {ref['name']}")
                env.append(f"{e['name']}={data[ref['key']].decode()}")
            else:
                path = vf["fieldRef"].get("fieldPath")
                if path not in ("metadata.name", "metadata.namespace"):
                    raise PlayError(f"{where}.env {e['name']}: fieldRef {path} is not supported")
                env.append(f"{e['name']}={pod if path == 'metadata.name' else 'default'}")
        return env

    def _mounts(self, p: Plan, spec: Manifest, c: Manifest, where: str,
                ) -> tuple[list[Mount], dict[str, tuple[bytes, int]]]:
        from dockyard.wire.container import Mount

        vols = {v["name"]: v for v in spec.get("volumes") or []}
        mounts: list[Mount] = []
        files: dict[str, tuple[bytes, int]] = {}
        for m in c.get("volumeMounts") or []:
            v = vols.get(m["name"])
            if v is None:
                raise PlayError(f"{where}.volumeMounts: volume {m['name']} is not declared in the pod")
            target, ro = m["mountPath"], bool(m.get("readOnly"))
            if "persistentVolumeClaim" in v:
                mounts.append(Mount(type="volume", source=v["persistentVolumeClaim"]["claimName"], target=target,
                                    read_only=ro))
            elif "emptyDir" in v:
                if (v["emptyDir"] or {}).get("medium") == "Memory":
                    mounts.append(Mount(type="tmpfs", target=target))
                else:
                    mounts.append(Mount(type="volume", target=target))
            elif "hostPath" in v:
                mounts.append(Mount(type="bind", source=v["hostPath"]["path"], target=target, read_only=ro))
            else:
                kind = "configMap" if "configMap" in v else "secret"
                ref = v[kind]
                data = self._source(p, kind, ref.get("name") or ref.get("secretName"), where)
                mode = int(ref.get("defaultMode", 0o644))
                items = ref.get("items") or [{"key": k, "path": k} for k in data]
                chosen = {}
                for it in items:
                    if it["key"] not in data:
                        raise PlayError(f"{where}: key {it['key']} not in {kind} {ref.get('name') or ref.get('secretName')}")
                    chosen[it["path"]] = (data[it["key"]], int(it.get("mode", mode)))
                if m.get("subPath"):
                    if m["subPath"] not in chosen:
                        raise PlayError(f"{where}.volumeMounts: subPath {m['subPath']} not in {kind}")
                    files[target] = chosen[m["subPath"]]
                else:
                    for path, item in chosen.items():
                        files[f"{target.rstrip('/')}/{path}"] = item
        return mounts, files

    def _body(self, p: Plan, pod: str, spec: Manifest, c: Manifest, where: str, restart: str,
              ) -> tuple[CreateRequest, dict[str, tuple[bytes, int]]]:
        """The container's create request (send it encoded) and the files to copy in before start."""
        from dockyard.wire.container import CreateRequest, HostConfig, RestartPolicy

        mounts, files = self._mounts(p, spec, c, where)
        hc = HostConfig(mounts=mounts, restart_policy=RestartPolicy(name=restart))
        req = CreateRequest(image=c["image"], env=self._env(p, c, pod, where), host_config=hc,
                            labels={PLAY_LABEL: pod})
        if c.get("command"):
            req.entrypoint = list(c["command"])
            req.cmd = list(c.get("args") or [])
        elif c.get("args"):
            req.cmd = list(c["args"])
        if c.get("workingDir"):
            req.working_dir = c["workingDir"]
        req.tty, req.open_stdin = bool(c.get("tty")), bool(c.get("stdin"))
        probe = c.get("readinessProbe") or c.get("livenessProbe") or c.get("startupProbe")
        if probe:
            req.healthcheck = healthcheck(probe, where)
        limits = (c.get("resources") or {}).get("limits") or {}
        requests = (c.get("resources") or {}).get("requests") or {}
        if "memory" in limits:
            hc.memory = memory_bytes(limits["memory"])
        if "cpu" in limits:
            hc.nano_cpus = nano_cpus(limits["cpu"])
        if "memory" in requests:
            hc.memory_reservation = memory_bytes(requests["memory"])
        sc = {**(spec.get("securityContext") or {}), **(c.get("securityContext") or {})}
        if sc.get("privileged"):
            hc.privileged = True
        caps = sc.get("capabilities") or {}
        if caps.get("add"):
            hc.cap_add = list(caps["add"])
        if caps.get("drop"):
            hc.cap_drop = list(caps["drop"])
        if sc.get("readOnlyRootFilesystem"):
            hc.readonly_rootfs = True
        if sc.get("allowPrivilegeEscalation") is False:
            hc.security_opt = ["no-new-privileges"]
        if "runAsUser" in sc:
            req.user = str(sc["runAsUser"]) + (f":{sc['runAsGroup']}" if "runAsGroup" in sc else "")
        return req, files

    def _ensure_image(self, ref: str) -> None:
        try:
            self.client.inspect_image(ref)
        except APIError as e:
            if e.status != 404:
                raise
            for _ in self.client.pull(ref):
                pass

    def _ensure_network(self) -> None:
        try:
            self.client.inspect_network(self.network)
        except APIError as e:
            if e.status != 404:
                raise
            self.client.create_network({"Name": self.network, "Driver": "bridge", "CheckDuplicate": True,
                                        "Labels": {PLAY_LABEL: "network"}})

    def _ports(self, p: Plan, spec: Manifest, labels: Manifest) -> tuple[list[dict[str, Any]], list[str]]:
        """The pod's published ports (hostPort, LoadBalancer/NodePort Services) and its Service names."""
        mappings: list[dict[str, Any]] = []
        named: dict[str, int] = {}
        for c in spec.get("containers") or []:
            for cp in c.get("ports") or []:
                if cp.get("name"):
                    named[cp["name"]] = int(cp["containerPort"])
                if cp.get("hostPort"):
                    mappings.append({"container_port": int(cp["containerPort"]), "host_port": int(cp["hostPort"]),
                                     "host_ip": cp.get("hostIP") or "", "protocol": (cp.get("protocol") or "TCP").lower()})
        names: list[str] = []
        for s in p.services:
            sel = (s.get("spec") or {}).get("selector") or {}
            if not sel or any(labels.get(k) != v for k, v in sel.items()):
                continue
            names.append(s["metadata"]["name"])
            stype = s["spec"].get("type") or "ClusterIP"
            if stype == "ClusterIP":
                continue
            for sp in s["spec"].get("ports") or []:
                target = sp.get("targetPort", sp["port"])
                target = named.get(target, target) if isinstance(target, str) else target
                host = sp.get("nodePort") if stype == "NodePort" and sp.get("nodePort") else sp["port"]
                m = {"container_port": int(target), "host_port": int(host), "host_ip": "",
                     "protocol": (sp.get("protocol") or "TCP").lower()}
                if m not in mappings:
                    mappings.append(m)
        return mappings, names

    def _pod_exists(self, name: str) -> bool:
        try:
            self.client.inspect_pod(name)
            return True
        except APIError as e:
            if e.status == 404:
                return False
            raise

    # ------------------------------------------------------------ play
    def play(self, p: Plan) -> dict[str, list[str]]:
        for name, _spec, _labels in p.pods:
            if self._pod_exists(name):
                if not self.replace:
                    raise PlayError(f"pod {name} already exists (use --replace, or kube down first)")
                self.client.remove_pod(name, force=True)
        if p.pods:
            self._ensure_network()
        for claim in p.claims:
            self.client.create_volume({"Name": claim, "Labels": {PLAY_LABEL: "claim"}})
        replica_of: dict[str, int] = {}
        for name, spec, labels in p.pods:
            self._play_pod(p, name, spec, labels, replica_of)
        return self.report

    def _play_pod(self, p: Plan, name: str, spec: Manifest, labels: Manifest, replica_of: dict[str, int]) -> None:
        mappings, services = self._ports(p, spec, labels)
        key = ",".join(sorted(services)) or name
        replica_of[key] = replica_of.get(key, -1) + 1
        if replica_of[key] and mappings:
            p.notes.append(f"pod {name}: a further replica; its ports are published by the first one only")
            mappings = []
        restart = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}[spec.get("restartPolicy") or "Always"]
        create: dict[str, Any] = {
            "name": name, "hostname": spec.get("hostname") or name, "portmappings": mappings,
            "labels": {**{str(k): str(v) for k, v in labels.items()}, PLAY_LABEL: name},
            "Networks": {self.network: {"aliases": sorted({*services, name})}},
        }
        pod_id = self.client.create_pod(create)["Id"]
        self.report[pod_id] = []
        try:
            for i, c in enumerate(spec.get("initContainers") or []):
                self._run_init(p, name, spec, c, f"pod {name}: initContainers[{i}]")
            for i, c in enumerate(spec.get("containers") or []):
                where = f"pod {name}: containers[{i}]"
                req, files = self._body(p, name, spec, c, where, restart)
                self._ensure_image(c["image"])
                cid = self.client.create_container(_encode(req), name=f"{name}-{c['name']}", pod=name)["Id"]
                if files:
                    self.client.put_archive(cid, "/", _files_tar(files))
                self.report[pod_id].append(cid)
            result = self.client.start_pod(name) or {}
            if result.get("Errs"):
                raise PlayError(f"pod {name}: " + "; ".join(str(e) for e in result["Errs"]))
        except BaseException:
            self.client.remove_pod(name, force=True)
            raise

    def _run_init(self, p: Plan, pod: str, spec: Manifest, c: Manifest, where: str) -> None:
        req, files = self._body(p, pod, spec, c, where, "no")
        self._ensure_image(c["image"])
        cid = self.client.create_container(_encode(req), name=f"{pod}-init-{c['name']}", pod=pod)["Id"]
        try:
            if files:
                self.client.put_archive(cid, "/", _files_tar(files))
            self.client.start(cid)
            code = int(self.client.wait(cid).get("StatusCode", -1))
            if code != 0:
                raise PlayError(f"{where} ({c['name']}) exited with {code}")
        finally:
            self.client.remove_container(cid, force=True)

    # ------------------------------------------------------------ down
    def down(self, p: Plan) -> list[str]:
        gone: list[str] = []
        for name, _spec, _labels in p.pods:
            try:
                self.client.remove_pod(name, force=True)
                gone.append(name)
            except APIError as e:
                if e.status != 404:
                    raise
        for claim in p.claims:
            try:
                self.client.remove_volume(claim)
            except APIError as e:
                if e.status != 404:
                    raise
        try:
            net = self.client.inspect_network(self.network)
            if (net.get("Labels") or {}).get(PLAY_LABEL) and not net.get("Containers"):
                self.client.remove_network(self.network)
        except APIError as e:
            if e.status != 404:
                raise
        return gone
