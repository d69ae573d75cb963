"""The only module that knows every concrete class: builds the engine from a DaemonConfig."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.daemon.config import DaemonConfig
from dockyard.services.events import EventBus
from dockyard.store import unsynced
from dockyard.store.db import Database

if TYPE_CHECKING:  # the concrete classes; imported for real inside build() (lazily: daemon RSS)
    from dockyard.api.server import Router
    from dockyard.builder.builder import Builder
    from dockyard.plugins.discovery import PluginStore
    from dockyard.registry.service import Distribution
    from dockyard.runtime.monitor import Monitor
    from dockyard.services.authz import AuthZ
    from dockyard.services.container_commit import ContainerCommitter
    from dockyard.services.container_files import ContainerFiles
    from dockyard.services.container_io import ContainerIO
    from dockyard.services.container_resources import ContainerResources
    from dockyard.services.containers import Container, ContainerService
    from dockyard.services.execs import ExecService
    from dockyard.services.images import ImageService
    from dockyard.services.internals import InternalsService
    from dockyard.services.managed_plugins import ManagedPlugins
    from dockyard.services.networks import NetworkService
    from dockyard.services.pods import PodService
    from dockyard.services.swarm import SwarmService
    from dockyard.services.system import SystemService
    from dockyard.services.volumes import VolumeService

log = logging.getLogger("dockyard.daemon")


def instance_id(cfg: DaemonConfig) -> str:
    """Short, stable id of this daemon's root: names its nft table and cgroup parent when not default."""
    if cfg.data_root == Path("/var/lib/dockyard"):
        return ""
    return hashlib.sha256(str(cfg.data_root.resolve()).encode()).hexdigest()[:8]


@dataclass
class Engine:
    """Every part of the daemon, built once; the API sees it as `api.backends.Backends`."""

    cfg: DaemonConfig
    db: Database
    events: EventBus
    images: ImageService
    containers: ContainerService
    runtime: Monitor
    networks: NetworkService | None
    volumes: VolumeService | None
    execs: ExecService | None
    registry: LazyDistribution | None
    container_io: ContainerIO
    container_files: ContainerFiles
    container_resources: ContainerResources
    commits: ContainerCommitter
    system: SystemService
    builder: Builder | None = None
    internals: InternalsService | None = None
    plugins: PluginStore | None = None
    authz: AuthZ | None = None
    managed_plugins: ManagedPlugins | None = None
    pods: PodService | None = None
    swarm: SwarmService | None = None
    router: Router = field(init=False)  # built from the engine itself, last
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def loopback(self) -> str | None:
        """The daemon's first unix socket: the API's kube play/generate call the daemon through it."""
        return next((h for h in self.cfg.hosts if h.startswith("unix://")), None)

    async def start(self) -> None:
        """What must hold before the API listens (plugins, authorization); recover() does the rest."""
        self.events.bind_loop(asyncio.get_running_loop())
        self.router.ready = asyncio.Event()
        if self.managed_plugins is not None:
            await asyncio.to_thread(self.managed_plugins.restore)
        if self.authz is not None and self.plugins is not None:
            for name in self.authz.names:  # dockerd refuses to start without its authorization plugins
                await asyncio.to_thread(self.plugins.get, name, "authz")
        if self.cfg.cgroup_favordynmods and not self.cfg.rootless:  # rootless: no cgroup of ours to tune
            from dockyard.runtime.cgroup_tuning import set_favordynmods

            # In a thread of its own: it waits for the host's lock (another daemon or a test may hold it)
            # without holding up the start, and a daemon stopping meanwhile does not wait for it.
            log.info("cgroup tuning: favordynmods to be turned on, under the host's lock")
            threading.Thread(target=lambda: log.info("cgroup tuning: %s", set_favordynmods(True)),
                             name="cgroup-tuning", daemon=True).start()
        else:
            log.info("cgroup tuning: none (%s)", "rootless" if self.cfg.rootless else "--cgroup-favordynmods=false")

    async def recover(self) -> None:
        """Once the API listens: networks, containers (re-adopted or finalized), the sweep. Only `_ping`
        is answered meanwhile (router.ready): with 500 running this is seconds, each container ~2-4 ms
        of CPU, and a client should see a daemon that is up, not a refused connection."""
        if self.networks is not None:
            await self.networks.start()
        if self.cfg.rootless:
            await asyncio.to_thread(_reap_other_namespaces, self.runtime)
        await self.containers.recover()
        from dockyard.daemon.sweep import startup_sweep

        await startup_sweep(self)  # GC last: after recovery has settled which containers live
        self.tasks.append(asyncio.get_running_loop().create_task(self._watch_exits()))
        assert self.router.ready is not None
        self.router.ready.set()

    async def _stop_all(self) -> None:
        """Rootless: the containers live in the daemon's user, mount and network namespaces, which go with
        it (a new daemon gets new ones and could not reach them): stop them, as dockerd does without
        live-restore."""
        running = [c for c in self.containers.all() if c.running]
        if running:
            log.info("rootless: stopping %d containers, whose namespaces go with the daemon", len(running))
        results = await asyncio.gather(*(self.containers.stop(c.id) for c in running), return_exceptions=True)
        for c, r in zip(running, results, strict=True):
            if isinstance(r, BaseException):
                log.warning("rootless: stopping %s: %s", c.id[:12], r)

    async def _watch_exits(self) -> None:
        from dockyard.runtime.exits import ExitWatcher

        watcher = ExitWatcher(self.runtime.exit_dir)
        async for cid in watcher:
            asyncio.get_running_loop().create_task(self.containers.finalize_exit(cid))

    async def close(self) -> None:
        if self.cfg.rootless:
            await self._stop_all()
        for t in self.tasks:
            t.cancel()
        if self.execs is not None:
            await self.execs.close()
        await self.containers.settle()
        if self.networks is not None:
            await self.networks.shutdown()
        if self.registry is not None:
            await self.registry.aclose()
        if self.managed_plugins is not None:
            await asyncio.to_thread(self.managed_plugins.shutdown)
        await asyncio.to_thread(unsynced.flush)  # so a reboot after a stop has nothing to check
        self.db.close()


def _signature_gate(registry: LazyDistribution, public_pem: bytes) -> Callable[[Any, str], Awaitable[None]]:
    """`--verify-signatures`: an image is created only if its registry holds a signature by the key over
    its manifest digest (cosign's format). Verified image ids are remembered for the daemon's life."""
    from dockyard.errors import Forbidden
    from dockyard.oci.cosign import SignatureError

    verified: set[str] = set()

    async def gate(image: Any, ref: str) -> None:
        if image.id in verified:
            return
        try:
            await registry.get().verify_image(image, public_pem)
        except SignatureError as e:
            raise Forbidden(f'image "{ref}" ({image.id[:19]}) is refused: its signature does not verify with '
                            f"the daemon's --verify-signatures key: {e}") from None
        verified.add(image.id)

    return gate


class LazyDistribution:
    """The distribution service, built at its first use: the registry client's httpx (~15 MiB)
    stays out of a daemon that never pulls or pushes."""

    def __init__(self, factory: Callable[[], Distribution]) -> None:
        self._factory = factory
        self._obj: Distribution | None = None

    def get(self) -> Distribution:
        return self._get()

    def _get(self) -> Distribution:
        if self._obj is None:
            self._obj = self._factory()
        return self._obj

    def pull(self, image: str, tag: str | None, platform: str | None,
             auth_header: str | None) -> AsyncIterator[dict[str, Any]]:
        return self._get().pull(image, tag, platform, auth_header)

    def push(self, name: str, tag: str | None, auth_header: str | None,
             with_referrers: bool = False) -> AsyncIterator[dict[str, Any]]:
        return self._get().push(name, tag, auth_header, with_referrers)

    async def inspect(self, name: str, auth_header: str | None) -> dict[str, Any]:
        return await self._get().inspect(name, auth_header)

    async def referrers(self, name: str, artifact_type: str | None, auth_header: str | None) -> dict[str, Any]:
        return await self._get().referrers(name, artifact_type, auth_header)

    async def add_signature(self, name: str, payload: bytes, signature: str,
                            auth_header: str | None) -> dict[str, Any]:
        return await self._get().add_signature(name, payload, signature, auth_header)

    async def signatures(self, name: str, auth_header: str | None) -> dict[str, Any]:
        return await self._get().signatures(name, auth_header)

    async def login(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._get().login(body)

    async def search(self, term: str, limit: int, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        return await self._get().search(term, limit, filters)

    async def plugin_config(self, remote: str, auth_header: str | None) -> bytes:
        return await self._get().plugin_config(remote, auth_header)

    def pull_plugin(self, remote: str, auth_header: str | None, out: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._get().pull_plugin(remote, auth_header, out)

    def push_plugin(self, remote: str, config: bytes, layers: list[tuple[str, int]],
                    auth_header: str | None) -> AsyncIterator[dict[str, Any]]:
        return self._get().push_plugin(remote, config, layers, auth_header)

    async def aclose(self) -> None:
        if self._obj is not None:  # never built: nothing to close
            await self._obj.client.aclose()


def build(cfg: DaemonConfig) -> Engine:
    from dockyard.api.router_setup import build_router
    from dockyard.runtime.monitor import Monitor
    from dockyard.services.containers import ContainerService
    from dockyard.services.images import ImageService
    from dockyard.store.content import ContentStore
    from dockyard.store.snapshots import Snapshotter

    data_root, exec_root = cfg.data_root, cfg.exec_root
    data_root.mkdir(parents=True, exist_ok=True, mode=0o711)
    exec_root.mkdir(parents=True, exist_ok=True, mode=0o711)
    plugins = _plugin_store(cfg)
    db = Database(data_root / "dockyard.db")
    events = EventBus()
    content = ContentStore(data_root / "content")
    snapshots = Snapshotter(data_root / "overlay")
    images = ImageService(db, content, snapshots, events)
    runtimes = {"runc": shutil.which("runc") or "/usr/sbin/runc"}
    if shutil.which("crun"):
        runtimes["crun"] = shutil.which("crun") or "crun"
    runtimes.update(cfg.runtimes)
    runtime = Monitor(exec_root, runtimes)
    iid = instance_id(cfg)

    from dockyard.services.networks import NetworkService
    from dockyard.services.pods import PodService

    net_kwargs: dict[str, Any] = {"table": "dockyard" + (f"_{iid}" if iid else "")}
    if cfg.bridge:
        net_kwargs["bridge_name"] = cfg.bridge
    elif iid:
        net_kwargs["bridge_name"] = f"dy{iid}"[:15]
    if cfg.bip:
        net_kwargs["bip"] = cfg.bip
    networks = NetworkService(db, exec_root, events, plugins=plugins, **net_kwargs)

    from dockyard.services.volumes import VolumeService

    volumes = VolumeService(db, data_root, events, plugins)
    containers = ContainerService(
        db, events, images, runtime, data_root, exec_root, networks=networks, volumes=volumes,
        default_runtime=cfg.default_runtime, runtimes=runtimes,
    )
    images.containers_using = containers.using_image
    networks.set_container_resolver(lambda ref: _resolve_for_network(containers, ref))
    networks.on_container_networks.append(containers.networks_changed)
    from dockyard.services.execs import ExecService

    execs = ExecService(containers)
    from dockyard.services.health import HealthMonitor

    health = HealthMonitor(containers, execs)
    containers.on_started.append(health.on_started)
    containers.on_removed.append(lambda c: execs.forget_container(c.id))  # exec records live as long as it
    containers.on_adopted.append(health.on_adopted)
    containers.on_exited.append(health.on_exited)
    containers.on_removed.append(_heap_trimmer())
    _connect_log_plugins(containers, plugins, exec_root / "logging")
    from dockyard.registry.client.layermap import LayerMap

    layermap = LayerMap(db)

    def make_registry() -> Distribution:
        from dockyard.registry.client.remote import RegistryClient, RegistryOptions
        from dockyard.registry.service import Distribution

        return Distribution(
            RegistryClient(RegistryOptions(mirrors=cfg.registry_mirrors, insecure=cfg.insecure_registries)),
            content, snapshots, images, layermap,
        )

    registry = LazyDistribution(make_registry)
    if cfg.verify_signatures:
        containers.image_gate = _signature_gate(registry, Path(cfg.verify_signatures).read_bytes())
    from dockyard.services.container_commit import ContainerCommitter
    from dockyard.services.container_files import ContainerFiles
    from dockyard.services.container_io import ContainerIO
    from dockyard.services.container_resources import ContainerResources

    container_io = ContainerIO(containers)
    container_io.log_plugins = containers.log_plugins
    from dockyard.builder.builder import Builder

    builder = Builder(db, images, containers, data_root / "build", pull=lambda *a, **kw: registry.pull(*a, **kw),
                      distribution=registry.get)
    from dockyard.services.internals import InternalsService
    from dockyard.services.system import SystemService

    system = SystemService(containers, images, volumes, events, data_root=data_root,
                           debug=cfg.log_level == "debug", registry_mirrors=list(cfg.registry_mirrors),
                           build_cache=builder.disk_usage)
    if cfg.rootless:  # issue 17: in our own user namespace (daemon/rootless.py)
        from dockyard.network import ports
        from dockyard.network.rootlesskit import PortDriver
        from dockyard.runtime import cgroup_delegation

        ports.use_port_driver(PortDriver.from_env())
        deleg = cgroup_delegation.prepare(cgroup_delegation.decide())
        containers.limits_refused = deleg.refused or None
        containers.limit_controllers = deleg.controllers
        containers.cgroup_parent = deleg.parent
        system.rootless = True
        system.storage_driver = _rootless_overlay(exec_root)
    engine = Engine(cfg, db, events, images, containers, runtime, networks, volumes, execs, registry,
                    container_io, ContainerFiles(containers), ContainerResources(containers),
                    ContainerCommitter(containers, images), system, builder=builder,
                    internals=InternalsService(containers, images, networks, volumes))
    engine.plugins = plugins
    from dockyard.services.managed_plugins import ManagedPlugins

    engine.managed_plugins = ManagedPlugins(db, data_root, exec_root, plugins, events, runtimes["runc"], content)
    if cfg.authorization_plugins:
        from dockyard.services.authz import AuthZ

        engine.authz = AuthZ(plugins, cfg.authorization_plugins)
    engine.pods = PodService(db, events, containers, images)
    from dockyard.api.system import VERSION
    from dockyard.services.swarm import SwarmService

    engine.swarm = SwarmService(db, networks, VERSION)
    system.swarm_info = engine.swarm.info
    system.plugins_info = lambda: _plugins_info(plugins, cfg.authorization_plugins)
    engine.router = build_router(engine)
    return engine


def _plugins_info(plugins: PluginStore, authz: list[str]) -> dict[str, Any]:
    """/info's Plugins: the built-in drivers, then the plugins in use (activated), as dockerd lists them."""
    return {"Volume": ["local", *plugins.active("VolumeDriver")],
            "Network": ["bridge", "host", "null", "overlay", *plugins.active("NetworkDriver")],
            "Authorization": list(authz) or None,
            "Log": ["json-file", "local", *plugins.active("LogDriver")]}


def _plugin_store(cfg: DaemonConfig) -> PluginStore:
    from dockyard.plugins.discovery import SOCKET_DIRS, SPEC_DIRS, PluginStore

    if cfg.plugin_discovery_dirs:
        dirs = [Path(d) for d in cfg.plugin_discovery_dirs]
        return PluginStore(dirs, dirs, cfg.plugin_retry_seconds)
    return PluginStore([*SOCKET_DIRS, cfg.exec_root / "plugins"], SPEC_DIRS, cfg.plugin_retry_seconds)


def _connect_log_plugins(containers: ContainerService, plugins: PluginStore, fifo_dir: Path) -> None:
    """--log-driver NAME of a plugin: its containers' output is shipped to it from start to exit."""
    from dockyard.services.container_config import LOG_DRIVERS
    from dockyard.services.logplugins import LogPlugins, container_info

    log_plugins = LogPlugins(plugins, fifo_dir)
    containers.log_plugins = log_plugins

    def ship(c: Container) -> None:
        driver = containers.log_driver(c)
        if driver not in LOG_DRIVERS and c.running:
            log_plugins.start(driver, container_info(c), containers.log_path(c.id), containers.live(c.id).exited)

    containers.on_started.append(ship)
    containers.on_adopted.append(ship)
    containers.on_removed.append(lambda c: log_plugins.forget(c.id))


def _reap_other_namespaces(runtime: Monitor) -> None:
    """Rootless: containers left running by a daemon that died without stopping them (SIGKILL) live in
    its user, mount and network namespaces, which this daemon can neither enter nor adopt. Every
    rootless start is in a new user namespace, so any monitor alive now is such a leftover (their
    namespace files are not even readable from here: a sibling user namespace). The monitors and init
    processes are the user's own: kill them (the init's pid namespace takes the rest with it), so
    recovery records them as exited."""
    import os
    import signal
    import time

    killed: list[int] = []
    for cid in runtime.known():
        pid = runtime.conmon_pid(cid)
        if not pid or not runtime.conmon_alive(cid):
            continue
        try:
            init = int((runtime.bundle(cid) / "pidfile").read_text().strip())
        except (OSError, ValueError):
            init = 0
        for p in (init, pid):
            if p:
                try:
                    os.kill(p, signal.SIGKILL)
                    killed.append(p)
                except OSError:
                    pass
        log.warning("rootless: container %s was left in a stopped daemon's namespaces; killed it", cid[:12])
    # SIGKILL is delivered, not done: recovery must not find them still alive (seen under load).
    deadline = time.monotonic() + 10
    while killed and time.monotonic() < deadline:
        killed = [p for p in killed if _alive(p)]
        if killed:
            time.sleep(0.02)


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _rootless_overlay(exec_root: Path) -> str:
    """The kernel's overlayfs where it mounts in our user namespace (Linux >= 5.11), else fuse-overlayfs
    (also when DOCKYARD_ROOTLESS_OVERLAY=fuse-overlayfs asks for it); Docker's names for `info`."""
    import os

    from dockyard.errors import DockyardError
    from dockyard.store import snapshotter

    why = snapshotter.probe_overlay(exec_root / "overlay-probe")
    if why is None and os.environ.get("DOCKYARD_ROOTLESS_OVERLAY") != "fuse-overlayfs":
        return "overlay2"
    if shutil.which("fuse-overlayfs") is None:
        raise DockyardError(f"overlayfs cannot be mounted in this user namespace ({why or 'asked'}) and "
                            "fuse-overlayfs is missing: sudo apt-get install -y fuse-overlayfs")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        raise DockyardError(f"overlayfs cannot be mounted in this user namespace ({why or 'asked'}) and "
                            "fuse-overlayfs needs /dev/fuse, which this user cannot open: sudo chmod 0666 /dev/fuse")
    if why:
        log.warning("rootless: overlayfs refused in the user namespace (%s): using fuse-overlayfs", why)
    snapshotter.use_fuse_overlayfs()
    return "fuse-overlayfs"


def _resolve_for_network(containers: ContainerService, ref: str) -> tuple[str, str, bool]:
    c = containers.get(ref)
    return c.id, c.name, c.running


def _heap_trimmer() -> Callable[[Any], None]:
    """A removal hook that hands freed heap back to the kernel now and then (see util/heap.py: each
    `run --rm` otherwise left ~9 KB of RSS behind)."""
    from dockyard.util.heap import HeapTrimmer

    trimmer = HeapTrimmer()

    def on_removed(_c: Container) -> None:
        if trimmer.due():
            asyncio.get_running_loop().run_in_executor(None, trimmer.trim)

    return on_removed
