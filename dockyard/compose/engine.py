"""Convergence: make the daemon's containers, networks and volumes match the project (up/down)."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from dockyard.client import APIClient, APIError
from dockyard.compose import secretfiles, state
from dockyard.compose.convert import (
    COMPOSE_VERSION,
    L_HASH,
    L_IMAGE,
    L_NETWORK,
    L_PROJECT,
    L_REPLACE,
    L_VERSION,
    L_VOLUME,
    config_hash,
    container_name,
    create_body,
    encode,
    endpoint,
    image_name,
    wants_gpu,
)
from dockyard.compose.errors import ComposeError
from dockyard.compose.graph import order, walk
from dockyard.compose.loader import Project
from dockyard.compose.normalize import Service, parse_duration

JSON = dict[str, Any]
POLL = 0.05  # seconds between health/exit polls of a dependency (an inspect is cheap)


PREFIX = ""  # "DRY-RUN MODE - " with --dry-run, as v2 marks every line


def say(kind: str, name: str, status: str) -> None:
    sys.stderr.write(f" {PREFIX}{kind} {name}  {status}\n")  # one write: lines from worker threads stay whole
    sys.stderr.flush()


@dataclass
class UpOptions:
    services: list[str] = field(default_factory=list)
    force_recreate: bool = False
    no_recreate: bool = False
    no_deps: bool = False
    no_start: bool = False
    scale: dict[str, int] = field(default_factory=dict)
    remove_orphans: bool = False
    build: bool = False
    no_build: bool = False
    pull: str = "missing"  # always | missing | never
    wait: bool = False
    timeout: int | None = None
    wait_timeout: int | None = None


class Engine:
    def __init__(self, client: APIClient, project: Project) -> None:
        self._main = client
        self._local = threading.local()
        self._extra: list[APIClient] = []
        self._lock = threading.Lock()
        self.project = project
        self.recreated: set[str] = set()  # services whose containers this run recreated
        self._image_ids: dict[str, str] = {}

    @property
    def client(self) -> APIClient:
        """The caller's client on the main thread; a connection of its own on each worker thread."""
        if threading.current_thread() is threading.main_thread():
            return self._main
        c: APIClient | None = getattr(self._local, "client", None)
        if c is None:
            c = self._local.client = self._client()
            with self._lock:
                self._extra.append(c)
        return c

    def close_workers(self) -> None:
        with self._lock:
            extra, self._extra = self._extra, []
        for c in extra:
            c.close()

    # -- resources -----------------------------------------------------------
    def ensure_networks(self, keys: set[str]) -> None:
        for key in sorted(keys):
            net = self.project.networks[key]
            name = net["name"]
            try:
                self.client.inspect_network(name)
                continue
            except APIError as e:
                if not e.not_found:
                    raise
            if net.get("external"):
                raise ComposeError(f"network {name} declared as external, but could not be found")
            body: JSON = {"Name": name, "Driver": net.get("driver") or "bridge", "CheckDuplicate": True,
                          "Internal": bool(net.get("internal")), "Attachable": bool(net.get("attachable")),
                          "EnableIPv6": bool(net.get("enable_ipv6")), "Options": net.get("driver_opts") or {},
                          "Labels": {**{k: str(v) for k, v in (net.get("labels") or {}).items()},
                                     L_PROJECT: self.project.name, L_NETWORK: key,
                                     L_VERSION: COMPOSE_VERSION}}
            ipam = net.get("ipam")
            if ipam:
                body["IPAM"] = {"Driver": ipam.get("driver") or "default",
                                "Config": [{"Subnet": c.get("subnet"), "Gateway": c.get("gateway"),
                                            "IPRange": c.get("ip_range")} for c in ipam.get("config") or []]}
                for c in body["IPAM"]["Config"]:
                    for k in [k for k, v in c.items() if v is None]:
                        del c[k]
            say("Network", name, "Creating")
            self.client.create_network(body)
            say("Network", name, "Created")

    def ensure_volumes(self, keys: set[str]) -> None:
        for key in sorted(keys):
            vol = self.project.volumes[key]
            name = vol["name"]
            try:
                self.client.inspect_volume(name)
                continue
            except APIError as e:
                if not e.not_found:
                    raise
            if vol.get("external"):
                raise ComposeError(f"external volume \"{name}\" not found")
            say("Volume", name, "Creating")
            self.client.create_volume({
                "Name": name, "Driver": vol.get("driver") or "local", "DriverOpts": vol.get("driver_opts") or {},
                "Labels": {**{k: str(v) for k, v in (vol.get("labels") or {}).items()},
                           L_PROJECT: self.project.name, L_VOLUME: key, L_VERSION: COMPOSE_VERSION}})
            say("Volume", name, "Created")

    # -- images --------------------------------------------------------------
    def build_service(self, name: str, svc: Service, no_cache: bool = False, pull: bool = False) -> None:
        tag = image_name(self.project, name, svc)
        self._image_ids.pop(tag, None)
        say("Service", name, "Building")
        for msg in state.build(self.client, tag, svc["build"], svc["build"].get("labels"), no_cache, pull):
            if msg.get("error"):
                raise ComposeError(f"failed to build {name}: {msg['error'].strip()}")
            if msg.get("stream"):
                sys.stderr.write(msg["stream"])
        say("Service", name, "Built")

    def pull_service(self, name: str, svc: Service) -> None:
        ref = str(svc["image"])
        self._image_ids.pop(ref, None)
        say("Image", ref, "Pulling")
        for msg in self.client.pull(ref if (":" in ref.rsplit("/", 1)[-1] or "@" in ref) else ref + ":latest"):
            if msg.get("error"):
                raise ComposeError(f"failed to pull {name}: {msg['error']}")
        say("Image", ref, "Pulled")

    def ensure_image(self, name: str, svc: Service, opts: UpOptions) -> None:
        ref = image_name(self.project, name, svc)
        policy = svc.get("pull_policy", opts.pull)
        if svc.get("build") and (opts.build or policy == "build") and not opts.no_build:
            self.build_service(name, svc)
            return
        if policy == "always" or not self.has_image(ref):
            if svc.get("build") and not opts.no_build:
                self.build_service(name, svc)
            elif policy != "never" and svc.get("image"):
                self.pull_service(name, svc)
            else:
                raise ComposeError(f"No such image: {ref}")

    # -- containers ----------------------------------------------------------
    def _resolve_service_container(self, service: str) -> str:
        ctrs = state.project_containers(self.client, self.project.name, [service], all=False)
        if not ctrs:
            raise ComposeError(f"service {service!r} has no running container for network_mode")
        return str(ctrs[0]["Id"])

    def has_image(self, ref: str) -> bool:
        """One inspect per image however many services use it (its ID is kept for the labels)."""
        if ref in self._image_ids:
            return True
        try:
            self._image_ids[ref] = str(self.client.inspect_image(ref)["Id"])
            return True
        except APIError as e:
            if e.not_found:
                return False
            raise

    def image_id(self, ref: str) -> str:
        """The image's ID, which v2 writes as com.docker.compose.image (and compares to recreate)."""
        if ref not in self._image_ids:
            try:
                self._image_ids[ref] = str(self.client.inspect_image(ref)["Id"])
            except (APIError, KeyError, TypeError):
                return ref
        return self._image_ids[ref]

    def create(self, name: str, svc: Service, number: int, oneoff: bool = False,
               cname: str | None = None, attach_stdin: bool | None = None, labels: dict[str, str] | None = None,
               use_aliases: bool | None = None) -> str:
        """attach_stdin: `run`'s AttachStdin and StdinOnce when it attaches."""
        cname = cname or container_name(self.project, name, number, svc)
        aliases = not oneoff if use_aliases is None else use_aliases  # run: only with --use-aliases
        req = create_body(self.project, name, svc, number, oneoff, self._resolve_service_container, cname,
                          aliases)
        req.labels = {**(req.labels or {}), L_IMAGE: self.image_id(req.image), **(labels or {})}
        if attach_stdin is not None:
            req.attach_stdin = req.stdin_once = attach_stdin
        cid = str(self.client.create_container(encode(req), name=cname)["Id"])
        inline = secretfiles.resolve(self.project, name, svc)[1]
        if inline:  # environment/content secrets are copied in before the first start
            self.client.put_archive(cid, "/", secretfiles.archive(inline))
        # One endpoint goes with create (APIs < 1.44 allow only one); the rest are connected now.
        for net in list(svc.get("networks") or {})[1:]:
            self.client.connect_network(self.project.networks[net]["name"], cid,
                                        endpoint(self.project, name, svc, net, cname, use_aliases=aliases).doc())
        return cid

    def _stop_timeout(self, svc: Service | None, timeout: int | None) -> int | None:
        if timeout is not None:
            return timeout
        if svc and svc.get("stop_grace_period"):
            return parse_duration(svc["stop_grace_period"], "stop_grace_period") // 10**9
        return None

    def recreate(self, name: str, svc: Service, ctr: JSON, timeout: int | None, start: bool) -> str:
        cname = state.name(ctr)
        self.recreated.add(name)
        say("Container", cname, "Recreate")
        if ctr["State"] == "running":
            self.stop_container(ctr["Id"], cname, svc, timeout)
        self.client.rename(ctr["Id"], f"{ctr['Id'][:12]}_{cname}")
        cid = self.create(name, svc, state.number(ctr), cname=cname, labels={L_REPLACE: ctr["Id"]})
        self.client.remove_container(ctr["Id"], force=True)
        say("Container", cname, "Recreated")
        if start:
            self.start_container(cid, cname, svc)
        return cid

    def start_container(self, cid: str, cname: str, svc: Service | None = None) -> None:
        say("Container", cname, "Starting")
        self.client.start(cid)
        say("Container", cname, "Started")
        if svc and svc.get("post_start"):
            self.run_hooks(cid, cname, svc["post_start"], "post_start")

    def stop_container(self, cid: str, cname: str, svc: Service | None, timeout: int | None,
                       client: APIClient | None = None) -> None:
        """pre_stop hooks, then stop (Compose runs the hooks on stop and down, not on kill)."""
        client = client or self.client
        if svc and svc.get("pre_stop"):
            self.run_hooks(cid, cname, svc["pre_stop"], "pre_stop", client)
        say("Container", cname, "Stopping")
        client.stop(cid, self._stop_timeout(svc, timeout))
        say("Container", cname, "Stopped")

    def run_hooks(self, cid: str, cname: str, hooks: list[JSON], kind: str,
                  client: APIClient | None = None) -> None:
        """Each hook is an exec in the container, run to completion; its output is shown."""
        client = client or self.client
        for hook in hooks:
            cmd = hook["command"]
            env = hook.get("environment") or {}
            cfg: JSON = {"Cmd": ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd),
                         "AttachStdout": True, "AttachStderr": True, "Privileged": bool(hook.get("privileged")),
                         "Env": [f"{k}={v}" for k, v in env.items()] if isinstance(env, dict) else list(env)}
            for key, api in (("user", "User"), ("working_dir", "WorkingDir")):
                if hook.get(key):
                    cfg[api] = hook[key]
            ex = client.exec_create(cid, cfg)
            h = client.exec_start(ex["Id"])
            if h is not None:
                out = b"".join(data for _, data in h.frames(False))
                h.close()
                for line in out.decode(errors="replace").splitlines():
                    sys.stdout.write(f"{cname}  | {line}\n")
                sys.stdout.flush()
            code = int(client.exec_inspect(ex["Id"]).get("ExitCode") or 0)
            if code != 0:
                raise ComposeError(f"container {cname}: {kind} hook exited with status {code}")

    def converge_service(self, name: str, opts: UpOptions) -> list[str]:
        svc = self.project.services[name]
        want = opts.scale[name] if name in opts.scale else int(svc.get("scale", 1))
        if svc.get("container_name") and want > 1:
            raise ComposeError(f"services.{name}: container_name {svc['container_name']!r} is unique: "
                               "the service cannot be scaled")
        ctrs = state.project_containers(self.client, self.project.name, [name])
        expected = config_hash(svc)
        result: list[str] = []
        for ctr in ctrs[want:][::-1]:  # scale down: highest numbers go first
            cname = state.name(ctr)
            say("Container", cname, "Stopping")
            self.client.remove_container(ctr["Id"], force=True)
            say("Container", cname, "Removed")
        start = not opts.no_start
        for ctr in ctrs[:want]:
            cname = state.name(ctr)
            image = ctr["Labels"].get(L_IMAGE, "")
            # A new image under the same name (pulled or built since) recreates too, as v2 does.
            changed = ctr["Labels"].get(L_HASH) != expected or (
                image.startswith("sha256:") and image != self.image_id(image_name(self.project, name, svc)))
            if opts.force_recreate or (changed and not opts.no_recreate):
                result.append(self.recreate(name, svc, ctr, opts.timeout, start))
            elif ctr["State"] != "running" and start:
                self.start_container(ctr["Id"], cname, svc)
                result.append(ctr["Id"])
            else:
                say("Container", cname, "Running")
                result.append(ctr["Id"])
        used = {state.number(c) for c in ctrs[:want]}
        n = 1
        while len(result) < want:
            while n in used:
                n += 1
            used.add(n)
            cname = container_name(self.project, name, n, svc)
            say("Container", cname, "Creating")
            cid = self.create(name, svc, n)
            say("Container", cname, "Created")
            if start:
                self.start_container(cid, cname, svc)
            result.append(cid)
        return result

    def restart_for_dependencies(self, name: str, svc: Service, ids: list[str]) -> None:
        """depends_on.<dep>.restart: a dependency that was recreated restarts this service (Compose)."""
        deps = [d for d, c in (svc.get("depends_on") or {}).items() if c.get("restart") and d in self.recreated]
        if not deps:
            return
        for cid in ids:
            cname = state.name(self.client.inspect_container(cid))
            say("Container", cname, "Restarting")
            self.client.restart(cid, self._stop_timeout(svc, None))
            say("Container", cname, "Started")

    def wait_dependencies(self, name: str, svc: Service) -> None:
        for dep, cond in (svc.get("depends_on") or {}).items():
            if dep not in self.project.services:
                continue
            condition = cond.get("condition", "service_started")
            for ctr in state.project_containers(self.client, self.project.name, [dep]):
                try:
                    self.wait_condition(state.name(ctr), ctr["Id"], condition)
                except ComposeError as e:
                    if cond.get("required", True):
                        raise
                    # required: false - a dependency that fails is only a warning (Compose).
                    print(f"WARN[0000] optional dependency \"{dep}\" failed: {e}", file=sys.stderr)

    def wait_condition(self, cname: str, cid: str, condition: str, deadline: float | None = None,
                       budget: int | None = None) -> None:
        if condition == "service_started":
            return
        say("Container", cname, "Waiting")
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise ComposeError(f"application not healthy after {budget}s")
            st = self.client.inspect_container(cid)["State"]
            if condition == "running":
                if st.get("Running"):
                    say("Container", cname, "Healthy")
                    return
                if st.get("Status") in ("exited", "dead"):
                    raise ComposeError(f"container {cname} exited ({st.get('ExitCode')})")
            elif condition == "service_healthy":
                health = (st.get("Health") or {}).get("Status")
                if health is None:
                    raise ComposeError(f"container {cname} has no healthcheck configured")
                if health == "healthy":
                    say("Container", cname, "Healthy")
                    return
                if health == "unhealthy":
                    raise ComposeError(f"dependency failed to start: container {cname} is unhealthy")
                if not st.get("Running"):
                    raise ComposeError(f"dependency failed to start: container {cname} exited "
                                       f"({st.get('ExitCode')})")
            elif condition == "service_completed_successfully":
                if st.get("Status") in ("exited", "dead"):
                    if st.get("ExitCode") != 0:
                        raise ComposeError(f"service {cname} didn't complete successfully: "
                                           f"exit {st.get('ExitCode')}")
                    say("Container", cname, "Exited")
                    return
            else:
                return
            time.sleep(POLL)

    def check_gpus(self, selected: list[str]) -> None:
        """Refuse before creating anything when a service asks for a GPU that the engine lacks."""
        wanting = [s for s in selected if wants_gpu(self.project.services[s])]
        if not wanting:
            return
        info = self.client.info()
        devices = [str(d.get("ID", "")) for d in info.get("DiscoveredDevices") or []]
        if "nvidia" in (info.get("Runtimes") or {}) or any("gpu" in d for d in devices):
            return
        raise ComposeError(f"service \"{wanting[0]}\" requests a GPU (gpus, or deploy.resources.reservations."
                           "devices with the gpu capability), but this engine has none: no nvidia runtime and "
                           "no CDI GPU device")

    def orphans(self) -> list[JSON]:
        known = set(self.project.services) | set(self.project.disabled)
        return [c for c in state.project_containers(self.client, self.project.name)
                if state.service_of(c) not in known]

    def up(self, opts: UpOptions) -> list[str]:
        """Converge the selected services (and their dependencies); returns the container ids."""
        services = self.project.services
        for s in opts.services:
            if s not in services:
                raise ComposeError(f"no such service: {s}")
        selected = order(services, opts.services or None)
        if opts.no_deps and opts.services:
            selected = [s for s in selected if s in opts.services]
        nets = {n for s in selected for n in (services[s].get("networks") or {})}
        vols = {v["source"] for s in selected for v in services[s].get("volumes") or []
                if v.get("type") == "volume" and v.get("source")}
        self.check_gpus(selected)
        for s in selected:
            self.ensure_image(s, services[s], opts)
        orphans = self.orphans()
        if orphans and opts.remove_orphans:
            for c in orphans:
                self.client.remove_container(c["Id"], force=True)
                say("Container", state.name(c), "Removed")
        elif orphans:
            print(f"WARN[0000] Found orphan containers ({', '.join(state.name(c) for c in orphans)}) for this "
                  "project. If you removed or renamed this service in your compose file, you can run this "
                  "command with the --remove-orphans flag to clean it up.", file=sys.stderr)
        self.ensure_networks(nets)
        self.ensure_volumes(vols)
        got: dict[str, list[str]] = {}

        def one(s: str) -> None:
            if not opts.no_start and not opts.no_deps:
                self.wait_dependencies(s, services[s])
            got[s] = self.converge_service(s, opts)
            if not opts.no_start and s not in self.recreated:
                self.restart_for_dependencies(s, services[s], got[s])

        # Independent services converge in parallel; each waits for its dependencies (Compose).
        try:
            walk(services, selected, one)
        finally:
            self.close_workers()
        ids = [i for s in selected for i in got.get(s, [])]
        if opts.wait:
            deadline = time.monotonic() + opts.wait_timeout if opts.wait_timeout else None
            for s in selected:
                for ctr in state.project_containers(self.client, self.project.name, [s]):
                    hc = services[s].get("healthcheck")
                    cond = "service_healthy" if hc and hc.get("test") != ["NONE"] else "running"
                    self.wait_condition(state.name(ctr), ctr["Id"], cond, deadline, opts.wait_timeout)
        return ids

    def _client(self) -> APIClient:
        """A client of its own for a worker thread (one connection per client)."""
        from dockyard.compose.dryrun import client_like  # --dry-run's client makes its own kind

        return client_like(self._main)

    def _stop_for_down(self, c: JSON, timeout: int | None) -> None:
        if c["State"] not in ("running", "paused", "restarting"):
            return
        cname = state.name(c)
        svc = self.project.services.get(state.service_of(c))
        client = self._client()
        try:
            try:
                self.stop_container(c["Id"], cname, svc if c["State"] == "running" else None, timeout, client)
            except ComposeError as e:  # a failing pre_stop hook does not keep the project up
                print(f"WARN[0000] {e}", file=sys.stderr)
                client.stop(c["Id"], self._stop_timeout(svc, timeout))
        except APIError as e:
            if not e.not_found:
                raise
        finally:
            client.close()

    def _remove(self, c: JSON, volumes: bool) -> None:
        cname = state.name(c)
        client = self._client()
        try:
            say("Container", cname, "Removing")
            # Anonymous volumes go with -v, as compose passes RemoveVolumes.
            client.remove_container(c["Id"], force=True, v=volumes)
            say("Container", cname, "Removed")
        except APIError as e:
            if not e.not_found:
                raise
        finally:
            client.close()

    def down(self, volumes: bool = False, rmi: str | None = None, remove_orphans: bool = False,
             timeout: int | None = None) -> None:
        services = self.project.services
        ctrs = state.project_containers(self.client, self.project.name, oneoff=None)
        known = set(services) | set(self.project.disabled)
        rank = {s: i for i, s in enumerate(order(services))}
        # Dependants stop first: reverse start order; orphans only with --remove-orphans.
        ctrs = [c for c in ctrs if state.service_of(c) in known or remove_orphans
                or c["Labels"].get("com.docker.compose.oneoff") == "True"]
        by_service: dict[str, list[JSON]] = {}
        for c in ctrs:
            by_service.setdefault(state.service_of(c), []).append(c)

        removals = ThreadPoolExecutor(max_workers=8)
        removing: list[Future[None]] = []

        def stop_all(group: list[JSON]) -> None:
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda c: self._stop_for_down(c, timeout), group))
            # Removal goes on in the background: only stopping has to wait for the dependants.
            removing.extend(removals.submit(self._remove, c, volumes) for c in group)

        # Orphans first; then each service once its dependants are stopped, independent ones in parallel.
        try:
            stop_all([c for s, group in by_service.items() if s not in rank for c in group])
            walk(services, [s for s in by_service if s in rank], lambda s: stop_all(by_service[s]), reverse=True)
        finally:
            removals.shutdown(wait=True)
        for f in removing:
            f.result()
        gone = {c["Id"] for c in ctrs}  # under --dry-run they are still there: count them as gone
        leftovers = [c for c in state.project_containers(self.client, self.project.name, oneoff=None)
                     if c["Id"] not in gone]
        for n in self.client.networks(filters={"label": [f"{L_PROJECT}={self.project.name}"]}):
            if leftovers and not remove_orphans:
                # A container of this project we kept (an orphan) may still use it.
                inspect = self.client.inspect_network(n["Id"])
                if inspect.get("Containers"):
                    continue
            say("Network", n["Name"], "Removing")
            self.client.remove_network(n["Id"])
            say("Network", n["Name"], "Removed")
        if volumes:
            for v in (self.client.volumes(filters={"label": [f"{L_PROJECT}={self.project.name}"]})
                      .get("Volumes") or []):
                say("Volume", v["Name"], "Removing")
                self.client.remove_volume(v["Name"])
                say("Volume", v["Name"], "Removed")
        if rmi:
            seen: set[str] = set()
            for s, svc in services.items():
                ref = image_name(self.project, s, svc)
                if ref in seen or (rmi == "local" and svc.get("image")):
                    continue
                seen.add(ref)
                try:
                    self.client.remove_image(ref)
                    say("Image", ref, "Removed")
                except APIError as e:
                    if not e.not_found:
                        raise
