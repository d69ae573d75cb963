"""ContainerService: the container state machine (create → start → exit → remove) over SQLite.

The daemon never parents a container: the runtime monitor (conmon) does. Exit is learnt from the
monitor's exit file, and one idempotent `finalize_exit` turns it into state, cleanup and events.
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
import functools
import json
import logging
import math
import os
import shutil
import signal as signal_mod
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dockyard import trace
from dockyard.errors import (
    Conflict,
    DockyardError,
    InvalidParameter,
    NotFound,
    NotModified,
    SystemError_,
    describe,
    no_such_container,
    out_of_space,
)
from dockyard.runtime.failures import exit_code_of
from dockyard.runtime.signals import parse_signal
from dockyard.services import container_config as cc
from dockyard.services import links
from dockyard.services.events import EventBus
from dockyard.services.seams import Attachment, ContainerRuntime, ImageLayers, NetworkAttacher
from dockyard.store import initlayer, overlay
from dockyard.store.db import Database, prefix_range
from dockyard.store.snapshotter import OverlaySnapshotter, Snapshotter, mount_all
from dockyard.util.fs import mark_topdir
from dockyard.util.ids import new_id, random_name, validate_name
from dockyard.util.timefmt import ZERO_TIME, human_duration, human_duration_left, parse_time_arg, rfc3339

if TYPE_CHECKING:
    from dockyard.runtime.spec import Resources
    from dockyard.services.logplugins import LogPlugins
    from dockyard.services.volumes import VolumeService
    from dockyard.wire.container import Config, CreateRequest, HostConfig
    from dockyard.wire.container import Resources as WireResources

log = logging.getLogger("dockyard.containers")

SCHEMA = [
    """
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image_id TEXT NOT NULL,
        image_ref TEXT NOT NULL,
        created REAL NOT NULL,
        config TEXT NOT NULL,
        host_config TEXT NOT NULL,
        runtime TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'created',
        pid INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        started_at REAL NOT NULL DEFAULT 0,
        finished_at REAL NOT NULL DEFAULT 0,
        restart_count INTEGER NOT NULL DEFAULT 0,
        oom_killed INTEGER NOT NULL DEFAULT 0,
        stopped_by_user INTEGER NOT NULL DEFAULT 0,
        boot_id TEXT NOT NULL DEFAULT '',
        network_settings TEXT NOT NULL DEFAULT '{}',
        mounts TEXT NOT NULL DEFAULT '[]',
        health TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX containers_image ON containers(image_id)
    """,
    # Who paused a paused container: '' for the user (`docker pause`), 'commit' for a commit's own
    # pause, which nobody but that commit will undo (see recover()).
    "ALTER TABLE containers ADD COLUMN paused_by TEXT NOT NULL DEFAULT ''",
    # rev moves with every UPDATE of a row (whoever writes it), so the list keeps rows it decoded
    # before and decodes again only those whose rev moved (_listed).
    """
    ALTER TABLE containers ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
    CREATE TRIGGER containers_rev AFTER UPDATE ON containers BEGIN
        UPDATE containers SET rev = OLD.rev + 1 WHERE id = NEW.id;
    END;
    CREATE INDEX containers_listed ON containers(created, id, rev)
    """,
]

RUNNING_STATES = ("running", "paused", "restarting")
T = TypeVar("T")


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@functools.cache
def _wire() -> Any:
    """dockyard.wire.container (msgspec): imported at the first container read, not at daemon start (idle RSS),
    and once: a `from ... import` statement costs 5-8 µs each time it runs (Python 3.11), which was a sixth of
    decoding a row, and the first list after 500 starts decodes 500."""
    import dockyard.wire.container

    return dockyard.wire.container


@dataclass
class Container:
    id: str
    name: str
    image_id: str
    image_ref: str
    created: float
    config: Config  # typed wire structs (dockyard/wire), decoded from the store once per read
    host_config: HostConfig
    runtime: str
    state: str
    pid: int
    exit_code: int
    error: str
    started_at: float
    finished_at: float
    restart_count: int
    oom_killed: bool
    stopped_by_user: bool
    boot_id: str
    network_settings: dict[str, Any]
    mounts: list[dict[str, Any]]
    health: dict[str, Any] | None = None
    paused_by: str = ""

    @classmethod
    def from_row(cls, r: Any) -> Container:
        w = _wire()
        stored, stored_doc = w.stored, w.stored_doc
        return cls(
            id=r["id"], name=r["name"], image_id=r["image_id"], image_ref=r["image_ref"], created=r["created"],
            config=stored(r["config"], w.Config), host_config=stored(r["host_config"], w.HostConfig),
            runtime=r["runtime"],
            state=r["state"], pid=r["pid"], exit_code=r["exit_code"], error=r["error"],
            started_at=r["started_at"], finished_at=r["finished_at"], restart_count=r["restart_count"],
            oom_killed=bool(r["oom_killed"]), stopped_by_user=bool(r["stopped_by_user"]), boot_id=r["boot_id"],
            network_settings=stored_doc(r["network_settings"]), mounts=stored_doc(r["mounts"]),
            health=stored_doc(r["health"]) if r["health"] else None, paused_by=r["paused_by"],
        )

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    @property
    def has_process(self) -> bool:
        """Running or paused: "restarting" counts as running (as in Docker) but has no process."""
        return self.state in ("running", "paused")

    @property
    def command(self) -> list[str]:
        return self.config.command()


@dataclass
class _Listed:
    """A row as the list last read it: its rev, decoded; its list entry encoded but for Names and Status
    (body), and whole (entry) with the names and status it was encoded with, until the status text may
    change (until: time.time(); a new rev makes a new _Listed)."""

    rev: int
    c: Container
    body: bytes | None = None
    names: builtins.list[str] = field(default_factory=builtins.list)
    status: str = ""
    until: float = 0.0
    entry: bytes | None = None


@dataclass
class _Live:
    """Per-container in-memory coordination (never persisted)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    removed: asyncio.Event = field(default_factory=asyncio.Event)
    # Attach sessions waiting for the container to start: connected after `runtime create`, or
    # failed with the start error.
    pending_attach: list[Callable[[BaseException | None], Awaitable[None]]] = field(default_factory=list)
    restart_task: asyncio.Task[None] | None = None
    # dockerd's ExitOnNext: a stop or kill ended the restart policy until the next start (stopped_by_user
    # is its HasBeenManuallyStopped, which only unless-stopped consults).
    exit_on_next: bool = False
    # The exit code at removal, for waiters holding this object (wait?condition=removed, --rm). Kept
    # here rather than in a daemon-wide dict of removed ids, which grew with every `run --rm`.
    final_exit: int | None = None
    # Variables for the next start only, never stored (the builder's RUN --mount=type=secret,env=...):
    # they reach the runtime's spec in the exec root and nothing in the data root.
    transient_env: list[str] = field(default_factory=list)
    # The exit code and OOM read by a finalize_exit whose record failed (a full disk): the cleanup
    # before it removed the exit file, so the retry takes them from here rather than recording 255.
    unrecorded_exit: tuple[int, bool] | None = None
    # A forced removal is killing it: its exit leaves the network to be released in the background.
    removing: bool = False
    # The OCI process its last start wrote into config.json: each exec's template (process_of), not
    # read back from the file and parsed again (0.3-1.8 ms at load, before the exec's conmon spawn).
    process: dict[str, Any] | None = None


def _about(fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., Coroutine[Any, Any, T]]:
    """The trace records `fn` makes are about the container it is given (a ref, a full id or a Container)."""
    @functools.wraps(fn)
    async def traced(self: ContainerService, ref: Any, *args: Any, **kwargs: Any) -> T:
        if not trace.ENABLED:
            return await fn(self, ref, *args, **kwargs)
        cid = ref.id if isinstance(ref, Container) else self.id_of(ref)
        with trace.about(f"container:{cid}"):
            return await fn(self, ref, *args, **kwargs)
    return traced


class ContainerService:
    def __init__(
        self,
        db: Database,
        events: EventBus,
        images: ImageLayers,
        runtime: ContainerRuntime,
        data_root: Path,
        exec_root: Path,
        networks: NetworkAttacher | None = None,
        volumes: VolumeService | None = None,
        default_runtime: str = "runc",
        runtimes: dict[str, str] | None = None,
    ) -> None:
        self.db = db
        self.events = events
        self.images = images
        self.runtime = runtime
        self.networks = networks
        self.volumes = volumes
        self.data_root = data_root
        self.exec_root = exec_root
        self.default_runtime = default_runtime
        self.runtimes = runtimes or {"runc": shutil.which("runc") or "runc"}
        self.boot_id = boot_id()
        # Rootless (issue 17): why limits are refused at create and update (those of the controllers not in
        # limit_controllers: all without a delegated cgroup v2), and where containers' cgroups go: under
        # cgroup_parent; "" gives them none of ours (runc's rootless mode runs them in the daemon's).
        self.limits_refused: str | None = None
        self.limit_controllers: frozenset[str] = frozenset()
        self.cgroup_parent = "/dockyard"
        # `--verify-signatures` (daemon/wiring.py): awaited with the image before a create; raises to refuse it.
        self.image_gate: Callable[[Any, str], Awaitable[None]] | None = None
        self._live: dict[str, _Live] = {}
        self._emptying: set[asyncio.Task[None]] = set()  # removed containers' dirs being rm -rf'd (_remove_dirs)
        # Names of creates still on their way to the INSERT: with only 552 random names, concurrent
        # creates (a build's parallel stages) would otherwise pick the same one between check and insert.
        self._pending_names: set[str] = set()
        (data_root / "containers").mkdir(exist_ok=True)
        # Each container's writable layer is the snapshot keyed by its id (containers/<id>/upper).
        self.snapshots: Snapshotter = OverlaySnapshotter(data_root / "containers", data_root / "empty")
        mark_topdir(data_root / "containers")  # upper dirs (and build steps' layers) spread as layers are
        db.migrate("containers", SCHEMA)
        # Hooks other features attach to (healthchecks, restart policies, stats ...).
        self.on_started: list[Callable[[Container], None]] = []
        self.on_exited: list[Callable[[Container], None]] = []
        self.log_plugins: LogPlugins | None = None  # set by the wiring: --log-driver NAME of a plugin
        # Running containers found alive at daemon start (their state, e.g. health, carries on).
        self.on_adopted: list[Callable[[Container], None]] = []
        self.on_removed: list[Callable[[Container], None]] = []
        self._monitor_watch: dict[str, tuple[int, int]] = {}  # cid -> (pidfd, pid) of its conmon
        self._monitor_tasks: set[asyncio.Task[None]] = set()
        # The list's rows, decoded (and encoded for the API) once per rev of each row: id -> _Listed.
        self._listed_rows: dict[str, _Listed] = {}
        self._listed_order: list[_Listed] = []  # every row, newest first, as of _listed_mark
        self._listed_mark: tuple[int, int] | None = None  # db.version() when _listed_order was read
        # list_json's body without filters, by all_: (the _listed() list it was made of, until, body)
        self._list_bodies: dict[bool, tuple[builtins.list[_Listed], float, bytes]] = {}
        # (id, name, state, pid) by full id, as of our connection's db.changes() == _briefs_mark (brief,
        # state_of: `docker stats` of 500 containers asked for each row twice, ~15 µs a query).
        self._briefs: dict[str, tuple[str, str, str, int]] = {}
        self._briefs_mark: int | None = None
        self._briefs_listed = False  # the list's rows are in _briefs: it holds every container
        # With _briefs_listed: _briefs by name, and its ids sorted (a ref that is a name or an id prefix,
        # as the docker CLI's stats asks: each missed the dict and cost three queries).
        self._briefs_index: tuple[dict[str, tuple[str, str, str, int]], builtins.list[str]] | None = None
        # Awaited before a user's start takes the container's lock (a pod member's infra starts first).
        self.before_start: list[Callable[[Container], Awaitable[None]]] = []

    # ---------------------------------------------------------------- paths
    def lower_dirs(self, c: Container) -> list[Path]:
        """The read-only layers under the container's upper dir, bottom-first: the image's, then its init
        layer (store/initlayer.py; containers made before there was one have none)."""
        layers = self.images.layer_dirs(c.image_id)
        init = self.init_layer(c.id)
        if init is None:
            return layers
        if layers and init == layers[-1].parent / "init" and not init.is_dir():
            # The shared one went with its layer's snapshot (dropped unsynced after a power loss, then
            # extracted again): made anew, or every container of the image fails to mount its rootfs.
            initlayer.ensure_shared(layers)
        return layers + [init]

    def init_layer(self, cid: str) -> Path | None:
        """The container's init layer: the image's shared one its `init` symlink names (given as the
        target: the layer walks open their lowers with O_NOFOLLOW), or a dir of its own."""
        init = self.container_dir(cid) / "init"
        try:
            return Path(os.readlink(init))
        except OSError:
            return init if init.is_dir() else None

    def container_dir(self, cid: str) -> Path:
        return self.data_root / "containers" / cid

    def run_dir(self, cid: str) -> Path:
        return self.exec_root / "containers" / cid

    def rootfs(self, cid: str) -> Path:
        return self.run_dir(cid) / "rootfs"

    @staticmethod
    def log_driver(c: Container) -> str:
        lc = c.host_config.log_config
        return (lc.type if lc is not None else "") or "json-file"

    def log_path(self, cid: str) -> Path:
        return self.container_dir(cid) / "ctr.log"

    def live(self, cid: str) -> _Live:
        lv = self._live.get(cid)
        if lv is None:
            lv = self._live[cid] = _Live()
        return lv

    # ---------------------------------------------------------------- lookup
    def process_of(self, cid: str) -> dict[str, Any]:
        """The OCI process of the container's running command, as its start wrote it in config.json
        (read from there once after a daemon restart). Callers copy before they change it."""
        lv = self.live(cid)
        if lv.process is None:
            lv.process = json.loads((self.run_dir(cid) / "config.json").read_text())["process"]
        return lv.process

    def cgroup_path(self, cid: str) -> str:
        """runc's linux.cgroupsPath for the container ("" in rootless mode without a delegated cgroup)."""
        return f"{self.cgroup_parent}/{cid}" if self.cgroup_parent else ""

    def get(self, ref: str) -> Container:
        """By full id, name (with or without '/'), or unique id prefix — Docker's order."""
        return Container.from_row(self._row(ref, "*"))

    def brief(self, ref: str) -> tuple[str, str, str, int]:
        """(id, name, state, pid) of the container a ref names, as get() finds it, without decoding its
        row's documents (stats: the docker CLI asks for each running container at once)."""
        briefs = self._brief_rows()
        if briefs is not None:
            if (b := briefs.get(ref)) is not None:  # a full id: get()'s first lookup
                return b
            if self._briefs_listed:  # every row is in it: the rest of get()'s lookups are made here
                return self._brief_by_name_or_prefix(briefs, ref)
        r = self._row(ref, "id, name, state, pid")
        b = (r["id"], r["name"], r["state"], r["pid"])
        if briefs is not None:
            briefs[b[0]] = b
        return b

    def _brief_rows(self) -> dict[str, tuple[str, str, str, int]] | None:
        """The rows brief() and state_of() have read (or the list read) since our connection's last
        write; every write of ours empties it, so a row in it is what the database holds now. The mark
        is taken before the reads it covers: a write between them (a worker thread's) moves it, and the
        next call starts afresh. None inside a transaction."""
        mark = self.db.changes()
        if mark is None:
            return None
        if mark != self._briefs_mark:
            self._briefs, self._briefs_mark, self._briefs_listed, self._briefs_index = {}, mark, False, None
        if not self._briefs_listed and (listed := self._listed_mark) is not None and listed[0] == mark:
            # The list was read at this mark too (`docker stats` lists, then asks for each): its rows serve.
            self._briefs_listed = True
            self._briefs.update((e.c.id, (e.c.id, e.c.name, e.c.state, e.c.pid)) for e in self._listed_order)
        return self._briefs

    def _brief_by_name_or_prefix(self, briefs: dict[str, tuple[str, str, str, int]],
                                 ref: str) -> tuple[str, str, str, int]:
        """_row's lookups after the full id's, in `briefs` when it holds every container."""
        if self._briefs_index is None:
            self._briefs_index = {b[1]: b for b in briefs.values()}, sorted(briefs)
        names, ids = self._briefs_index
        if not ref:
            raise no_such_container(ref)
        b = names.get(ref.lstrip("/"))
        if b is None and all(c in "0123456789abcdef" for c in ref):
            i = bisect.bisect_left(ids, ref)
            found = [x for x in ids[i:i + 2] if x.startswith(ref)]
            if len(found) > 1:
                raise InvalidParameter(f"multiple IDs found with provided prefix: {ref}")
            b = briefs[found[0]] if found else None
        if b is None:
            raise no_such_container(ref)
        return b

    def _row(self, ref: str, columns: str) -> Any:
        if not ref:
            raise no_such_container(ref)
        r = self.db.query_one(f"SELECT {columns} FROM containers WHERE id=?", (ref,))
        if r is None:
            r = self.db.query_one(f"SELECT {columns} FROM containers WHERE name=?", (ref.lstrip("/"),))
        if r is None and all(c in "0123456789abcdef" for c in ref):
            rows = self.db.query(f"SELECT {columns} FROM containers WHERE id >= ? AND id < ? LIMIT 2", prefix_range(ref))
            if len(rows) > 1:
                raise InvalidParameter(f"multiple IDs found with provided prefix: {ref}")
            r = rows[0] if rows else None
        if r is None:
            raise no_such_container(ref)
        return r

    def state_of(self, cid: str) -> tuple[str, int] | None:
        """(state, pid) of a container by full id, without decoding its row's documents (stats)."""
        briefs = self._brief_rows()
        if briefs is not None and (b := briefs.get(cid)) is not None:
            return b[2], b[3]
        r = self.db.query_one("SELECT id, name, state, pid FROM containers WHERE id=?", (cid,))
        if r is None:
            return None
        if briefs is not None:
            briefs[cid] = (r["id"], r["name"], r["state"], r["pid"])
        return r["state"], r["pid"]

    def id_of(self, ref: str) -> str:
        """The full id for a ref (no lookup for a full id), or the ref itself if it names nothing."""
        if len(ref) == 64:
            return ref
        try:
            return self.get(ref).id
        except (NotFound, InvalidParameter):
            return ref

    def all(self) -> list[Container]:
        return [Container.from_row(r) for r in self.db.query("SELECT * FROM containers ORDER BY created DESC")]

    def using_image(self, image_id: str) -> builtins.list[tuple[str, bool]]:
        """(id, running) of the containers made from the image (ImageService.containers_using)."""
        return [(r["id"], r["state"] in RUNNING_STATES)
                for r in self.db.query("SELECT id, state FROM containers WHERE image_id=?", (image_id,))]

    def names_using_image(self, image_id: str) -> builtins.list[str]:
        """Names of the containers made from the image, sorted."""
        return [r["name"] for r in self.db.query(
            "SELECT name FROM containers WHERE image_id=? ORDER BY name", (image_id,))]

    def save(self, cid: str, **fields: Any) -> None:
        """Write fields of a container's row (for the services built on this one: io, health, exec).
        Only what a reboot voids (state, pid, times, exit code) is written without the fsync."""
        cols = ", ".join(f"{k}=?" for k in fields)
        vals = [_column(v) for v in fields.values()]
        self.db.execute(f"UPDATE containers SET {cols} WHERE id=?", (*vals, cid),
                        durable=not _RUN_STATE.issuperset(fields))

    def emit(self, c: Container, action: str, extra: dict[str, str] | None = None) -> None:
        """A container event, with the image, name and labels Docker puts in its attributes."""
        attrs = {"image": c.image_ref, "name": c.name}
        attrs.update({k: str(v) for k, v in (c.config.labels or {}).items()})
        attrs.update(extra or {})
        self.events.emit("container", action, c.id, attrs)

    # ---------------------------------------------------------------- create
    async def create(self, req: CreateRequest, name: str | None = None, verify: bool = True) -> dict[str, Any]:
        """A container from a create request, decoded once (wire.container.create_request). `verify=False`:
        the engine's own containers (a build's RUN, a pod's infra) skip `--verify-signatures`."""
        image_ref = req.image
        if not image_ref:
            raise InvalidParameter("Config cannot be empty in order to create a container")
        if name:
            name = validate_name(name)
            if name in self._pending_names:
                raise Conflict(f'Conflict. The container name "/{name}" is already in use.')
            if self.db.query_one("SELECT id FROM containers WHERE name=?", (name,)):
                other = self.get(name)
                raise Conflict(
                    f'Conflict. The container name "/{name}" is already in use by container "{other.id}". '
                    "You have to remove (or rename) that container to be able to reuse that name."
                )
        image = self.images.resolve(image_ref)
        if self.image_gate is not None and verify:
            await self.image_gate(image, image_ref)
        config = cc.merge_config(req, image.config)
        log_plugin = None
        kind = cc.log_driver_of(req.host_config)
        if kind not in cc.LOG_DRIVERS and kind not in cc.OTHER_DOCKER_LOG_DRIVERS and self.log_plugins is not None:
            try:
                await asyncio.to_thread(self.log_plugins.is_driver, kind)
            except NotFound as e:  # dockerd checks it with the HostConfig: a 400
                raise InvalidParameter(e.message) from None
            log_plugin = kind
        if self.limits_refused is not None:  # as given: validation derives fields (MemorySwap) of its own
            cc.refuse_limits(req.host_config, self.limits_refused, self.limit_controllers)
        host_config = cc.validate_host_config(req.host_config, log_plugin)
        requested_links = list(host_config.links or [])
        runtime = host_config.runtime or self.default_runtime
        if runtime not in self.runtimes:
            raise InvalidParameter(f"unknown or invalid runtime name: {runtime}")
        host_config.runtime = runtime
        if req.networking_config is not None and req.networking_config.endpoints_config:
            host_config.networking = req.networking_config
        cid = new_id()
        if not name:
            for _ in range(20):
                name = random_name()
                if name not in self._pending_names and \
                        not self.db.query_one("SELECT id FROM containers WHERE name=?", (name,)):
                    break
            else:
                name = f"{random_name()}_{cid[:6]}"
        if not config.hostname:
            config.hostname = cid[:12]
        if host_config.links:
            host_config.links = self._check_links(host_config.links, name, host_config.network_mode)
        cdir = self.container_dir(cid)
        self._pending_names.add(name)  # no await since the name was checked: taken before anyone else looks
        declaring = False
        try:
            # In the try: a full disk can fail any of these, and a dir without a row must not stay.
            image_layers = self.images.layer_dirs(image.id)
            with trace.about(f"container:{cid}"):  # the task, and its thread, take the context now
                prepare = asyncio.ensure_future(asyncio.to_thread(self._prepare_dirs, cid, image_layers))
            declare = None
            if self.networks is not None:
                # The networks it joins, so inspect shows them at once: beside the dirs, and without
                # the fsync, which the row's sync below does for both (one fsync, not two).
                mode, endpoints = _networks_of(host_config)
                declaring = True
                declare = self.networks.declare(cid, mode, endpoints, requested_links, durable=False)
            both = asyncio.ensure_future(_both(prepare, declare) if declare is not None else prepare)
            try:
                await asyncio.shield(both)
            except asyncio.CancelledError:
                await _settle(both)  # the undo below finds both steps ended
                raise
            with self.db.tx(durable=False) as tx:  # made durable below, before the answer
                tx.execute(
                    "INSERT INTO containers(id, name, image_id, image_ref, created, config, host_config, runtime)"
                    " VALUES(?,?,?,?,?,?,?,?)",
                    (cid, name, image.id, image_ref, time.time(), _column(config), _column(host_config), runtime),
                )
        except BaseException:  # a cancelled create (client gone) must not leave the dir either
            shutil.rmtree(cdir, ignore_errors=True)
            if declaring:
                assert self.networks is not None
                try:
                    await self.networks.forget(cid)
                except Exception as e:  # noqa: BLE001 - the create's own error is the answer
                    log.warning("network release of %s, whose create failed: %s", cid[:12], e)
            if self.db.query_one("SELECT id FROM containers WHERE name=?", (name,)):
                raise Conflict(f'Conflict. The container name "/{name}" is already in use.') from None
            raise
        finally:
            self._pending_names.discard(name)
        c = self.get(cid)
        try:
            if self.volumes is not None and _has_mounts(c):
                # Docker makes volumes (and checks bind sources) at create: `volume rm` and inspect see them.
                with trace.about(f"container:{cid}"):
                    try:
                        _oci, docker_mounts = await asyncio.to_thread(self._mounts_at_create, c)
                    finally:  # plugin volumes were mounted for the copy-up only: start mounts them again
                        await asyncio.to_thread(self.volumes.unmount_container, cid)
                self.db.execute("UPDATE containers SET mounts=? WHERE id=?", (_column(docker_mounts), cid),
                                durable=False)  # synced with the row
                c = self.get(cid)
            # The row durable before the answer: a client holding the id finds the container after a
            # power loss (dockerd fsyncs config.v2.json first). The fsync (1-23 ms at load) runs in a
            # worker thread: on the loop, inside the COMMIT, it held every other request.
            synced = asyncio.ensure_future(asyncio.to_thread(self.db.sync))
            try:
                await asyncio.shield(synced)
            except asyncio.CancelledError:
                await _settle(synced)
                raise
        except BaseException:
            await self.remove(cid, force=True, volumes=True, quiet=True)
            raise
        self.emit(c, "create")
        return {"Id": cid, "Warnings": []}

    def _prepare_dirs(self, cid: str, image_layers: list[Path]) -> None:
        """The container's dir: its snapshot's upper and work dirs, its init layer (one thread hop; the
        mkdirs ran on the loop, 0.2-5 ms on a busy disk)."""
        self.snapshots.prepare(cid, image_layers)
        initlayer.link(self.container_dir(cid) / "init", image_layers)

    def _mounts_at_create(self, c: Container) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        view = self.run_dir(c.id) / "create-view"
        mount_all(self.snapshots.mounts(c.id, self.lower_dirs(c)), view)
        try:
            return self._resolve_mounts(c, view)
        finally:
            overlay.unmount(view)
            shutil.rmtree(self.run_dir(c.id), ignore_errors=True)

    # ---------------------------------------------------------------- start
    @_about
    async def start(self, ref: str) -> None:
        c = self.get(ref)
        for hook in self.before_start:
            await hook(c)
        async with self.live(c.id).lock:
            c = self.get(c.id)
            if c.state == "paused":
                raise Conflict("cannot start a paused container, try unpause instead")
            if c.running:
                raise NotModified("container already started")
            await self._start_locked(c, restart_count=0)  # a user's start resets the count, as in Docker

    @_about
    async def _start_locked(self, c: Container, restart_count: int | None = None) -> None:
        """Start under the container's lock. restart_count: the new RestartCount (None keeps it).

        Never abandoned half-way. A cancelled start (a policy restart that stop, kill or rm ended, a
        build whose client hung up, the daemon's shutdown) runs on to its end first, and the
        cancellation is raised after: its steps run in threads and in conmon and runc, which a
        cancellation does not stop, and an await cut short skipped the undo (for an exception only).
        That left a container recorded as not running with its netns, its veth on the bridge, its
        addresses, its rootfs mount and a runc container in "created" (the chaos run: one veth more
        on the bridge than running endpoints). The canceller finds it started, or failed and undone."""
        start = asyncio.ensure_future(self._start_body(c, restart_count))
        try:
            await asyncio.shield(start)
        except asyncio.CancelledError:
            await _settle(start)
            raise

    async def _start_body(self, c: Container, restart_count: int | None) -> None:
        lv = self.live(c.id)
        lv.exited.clear()
        run_dir = self.run_dir(c.id)
        run_dir.mkdir(parents=True, exist_ok=True)
        rootfs = self.rootfs(c.id)
        steps: list[Callable[[], Any]] = []  # undo stack for a failed start
        try:
            # One thread hop for both: each is a wakeup of a worker, milliseconds on a loaded machine.
            await asyncio.to_thread(lambda: mount_all(self.snapshots.mounts(c.id, self.lower_dirs(c)), rootfs))
            steps.append(lambda: overlay.unmount(rootfs))
            net = None
            link_env: list[str] = []
            if self.networks is not None:
                link_env, link_hosts = self._legacy_links(c)
                net = await self.networks.attach(**self._network_args(c), link_hosts=link_hosts,
                                                 defer_plumbing=True)
                steps.append(lambda: None)
            oci_mounts: list[dict[str, Any]] = []
            docker_mounts: list[dict[str, Any]] = []
            if self.volumes is not None and _has_mounts(c):  # else none to resolve: no thread hop
                oci_mounts, docker_mounts = await asyncio.to_thread(self._resolve_mounts, c, rootfs)
            if c.host_config.ipc_mode == "shareable":
                shm = run_dir / "shm"
                await asyncio.to_thread(overlay.mount_shm, shm, c.host_config.shm_size or 64 << 20)
                steps.append(lambda: overlay.unmount(shm))
            spec = self._build_spec(c, rootfs, net, oci_mounts)
            if lv.transient_env:
                spec["process"]["env"] = [*spec["process"]["env"], *lv.transient_env]
            if link_env:  # before the container's own variables, which win (getenv takes the first)
                own = {kv.partition("=")[0] for kv in spec["process"]["env"]}
                spec["process"]["env"] = [kv for kv in link_env if kv.partition("=")[0] not in own] + \
                    spec["process"]["env"]
            bundle = run_dir
            lv.process = spec["process"]
            with trace.step("file", f"write {bundle / 'config.json'}",
                            "the OCI bundle: everything runc will do, from the container's config and flags") as s:
                s.result = f"{(bundle / 'config.json').write_text(json.dumps(spec))} bytes"
            stdin = c.config.open_stdin
            create = self.runtime.create(
                c.id, bundle, runtime=c.runtime, tty=c.config.tty,
                log_path=None if self.log_driver(c) == "none" else str(self.log_path(c.id)),
                log_max=cc.log_max_size(c.host_config.log_config), stdin=stdin,
                leave_stdin_open=stdin and not c.config.stdin_once,
                spec=spec,
            )
            if net is not None and net.plumb is not None:
                # runc create needs only the netns; the veths are wired meanwhile, before the process runs.
                pid, _ = await _both(create, asyncio.to_thread(net.plumb))
            else:
                pid = await create
            # Attach sessions that came before start connect now, so they see the first byte.
            pending, lv.pending_attach = lv.pending_attach, []
            for connect in pending:
                await connect(None)
            await self.runtime.start(c.id)
            self._watch_monitor(c.id)
            # In the try: if the state cannot be written (a full disk), the running process is undone
            # with the rest, not left running under a container the daemon calls created.
            # Counted in the same write as the state change, so nobody sees a half-made restart.
            policy = {"stopped_by_user": 0,
                      "restart_count": c.restart_count if restart_count is None else restart_count}
            self.save(
                c.id, state="running", pid=pid, started_at=time.time(), finished_at=0, exit_code=0, error="",
                oom_killed=0, boot_id=self.boot_id,
                network_settings=(net.network_settings if net is not None else {}), mounts=docker_mounts,
                # unchanged, they are left out, and the write needs no fsync (see save)
                **{k: v for k, v in policy.items() if getattr(c, k) != v},
            )
        except Exception as e:
            log.warning("start of %s failed: %s", c.id[:12], e)
            pending, lv.pending_attach = lv.pending_attach, []
            for connect in pending:
                await connect(e)
            await self._cleanup_runtime(c)
            for undo in reversed(steps):
                try:
                    undo()
                except Exception:  # noqa: BLE001 - best effort undo
                    pass
            if self.networks is not None:
                await self.networks.detach(c.id)
            full = out_of_space(e)
            msg = describe(e) if full or isinstance(e, DockyardError) else str(e)
            code = exit_code_of(msg, 128)
            try:
                self.save(c.id, error=msg, exit_code=code)
            except Exception as save_error:
                if not out_of_space(save_error):
                    raise
                log.warning("start of %s failed and its error was not recorded: %s", c.id[:12], describe(save_error))
            self.emit(c, "die", {"exitCode": str(code)})
            if c.host_config.auto_remove:
                # Docker removes an auto-remove container whose start failed (its waiters see it go).
                asyncio.get_running_loop().create_task(self.remove(c.id, force=True, volumes=True))
            from dockyard.runtime.monitor import RuntimeError_

            if isinstance(e, RuntimeError_):
                # Docker's wording, which the CLI maps to exit codes 126/127.
                err = type(e)(f"failed to create task for container: OCI runtime create failed: {msg}: unknown")
                raise err from e
            if isinstance(e, DockyardError) or full:
                raise  # a full disk answers as any other: 500, "... no space left on device"
            raise InvalidParameter(f"failed to create task for container: {msg}: unknown") from e
        lv.exit_on_next = False
        c = self.get(c.id)
        self.emit(c, "start")
        for on_started in self.on_started:
            on_started(c)

    def _network_args(self, c: Container) -> dict[str, Any]:
        hc, cfg = c.host_config, c.config
        mode, endpoints_config = _networks_of(hc)
        return dict(
            cid=c.id, name=c.name, hostname=cfg.hostname or c.id[:12],
            network_mode=mode, endpoints_config=endpoints_config,
            port_bindings={k: [b.doc() for b in v or []] for k, v in (hc.port_bindings or {}).items()},
            exposed_ports=cfg.exposed_ports or {},
            publish_all=hc.publish_all_ports, dns=hc.dns or [],
            dns_search=hc.dns_search or [], dns_options=hc.dns_options or [],
            extra_hosts=hc.extra_hosts or [], mac=cfg.mac_address or None,
        )

    def _resolve_mounts(self, c: Container, rootfs: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        from dockyard.store.mounts import resolve_mounts

        if self.volumes is None:  # a daemon built without volumes (the builder's own tests)
            return [], []
        # Config.Volumes holds the image's VOLUMEs merged at create with `-v /path` ones.
        return resolve_mounts(self.volumes, c.id, c.host_config, c.config.volumes, rootfs,
                              lambda ref: self.get(ref).mounts)

    def _check_links(self, specs: list[str], name: str, mode: str) -> list[str]:
        """HostConfig.Links as dockerd stores them ("/target:/name/alias"); each target must exist."""
        if mode == "host" or (mode or "").startswith("container:"):
            raise InvalidParameter("conflicting options: host type networking can't be used with links. "
                                   "This would result in undefined behavior")
        out = []
        for spec in specs:
            link = links.parse(spec, name)
            try:
                self.get(link.target)
            except NotFound:
                raise InvalidParameter(f"could not get container for {link.target}: "
                                       f"No such container: {link.target}") from None
            out.append(link.spec())
        return out

    def _legacy_links(self, c: Container) -> tuple[list[str], list[tuple[str, list[str]]]]:
        """Environment and hosts entries of --link on the default bridge (on a user network a link is only
        a DNS alias: the network service answers it). Each linked container must be running."""
        mode = c.host_config.network_mode or "default"
        if mode not in ("default", "bridge") or not c.host_config.links:
            return [], []
        env: list[str] = []
        hosts: list[tuple[str, list[str]]] = []
        for spec in c.host_config.links:
            link = links.parse(spec, c.name)
            try:
                target = self.get(link.target)
            except NotFound:
                raise NotFound(f"could not get container for {link.target}") from None
            if not target.running:
                raise Conflict(f"Cannot link to a non running container: /{target.name} AS {link.spec().split(':')[1]}")
            ns = self.networks.settings(target.id) if self.networks is not None else {}
            ip = ((ns.get("Networks") or {}).get("bridge") or {}).get("IPAddress") or ""
            if not ip:
                continue  # not on the default bridge: nothing to point at
            env += links.env(link, ip, sorted(target.config.exposed_ports or {}), target.config.env or [])
            hosts.append((ip, [link.alias, target.config.hostname or target.id[:12], target.name]))
        return env, hosts

    def _build_spec(self, c: Container, rootfs: Path, net: Attachment | None, mounts: list[dict[str, Any]]) -> dict[str, Any]:
        from dockyard.runtime import spec as rtspec

        hc, cfg = c.host_config, c.config
        mode = hc.network_mode or "default"
        netns: str | None = None
        if mode == "host":
            netns = "host"
        elif net is not None and net.netns_path:
            netns = str(net.netns_path)
        inp = rtspec.SpecInput(
            rootfs=str(rootfs),
            args=c.command,
            env=list(cfg.env or []),
            cwd=cfg.working_dir or "/",
            user=cfg.user,
            hostname=cfg.hostname or c.id[:12],
            domainname=cfg.domainname,
            tty=cfg.tty,
            stdin=cfg.open_stdin,
            readonly_rootfs=hc.readonly_rootfs,
            cap_add=list(hc.cap_add or []),
            cap_drop=list(hc.cap_drop or []),
            privileged=hc.privileged,
            security_opt=list(hc.security_opt or []),
            mounts=mounts,
            netns=netns,
            hosts_path=(str(net.hosts_path) if net is not None and net.hosts_path else None),
            resolv_conf_path=(str(net.resolv_path) if net is not None and net.resolv_path else None),
            hostname_path=(str(net.hostname_path) if net is not None and net.hostname_path else None),
            shm_size=hc.shm_size or 64 * 1024 * 1024,
            ulimits=list(hc.ulimits or []),
            cgroups_path=self.cgroup_path(c.id),
            resources=resources_of(hc),
            init=bool(hc.init),
            sysctls=dict(hc.sysctls or {}),
            devices=list(hc.devices or []),
            masked_paths=hc.masked_paths,
            readonly_paths=hc.readonly_paths,
            ipc_host=hc.ipc_mode == "host",
            pid_host=hc.pid_mode == "host",
            ipc_path=self._joined_ns(hc.ipc_mode, "ipc"),
            shm_path=self._shm_path(c),
            uts_path=self._joined_ns(hc.uts_mode, "uts"),
            oom_score_adj=hc.oom_score_adj,
            group_add=list(hc.group_add or []),
        )
        spec = rtspec.build_spec(inp)
        size = hc.console_size or [0, 0]
        if inp.tty and len(size) == 2 and size[0] and size[1]:
            # The CLI's first resize races the shell's first prompt; start at the client's size.
            spec["process"]["consoleSize"] = {"height": int(size[0]), "width": int(size[1])}
        from dockyard.store.mounts import needs_rootfs_propagation

        propagation = needs_rootfs_propagation(mounts)
        if propagation:
            spec.setdefault("linux", {})["rootfsPropagation"] = propagation
        return spec

    def _shm_path(self, c: Container) -> str | None:
        """POSIX shm lives in /dev/shm, not in the IPC namespace: a shareable container's is a tmpfs on
        the host (mounted at start), which containers joining its IPC namespace bind as theirs."""
        mode = c.host_config.ipc_mode
        owner = c.id if mode == "shareable" else mode.partition(":")[2] if mode.startswith("container:") else ""
        if not owner:
            return None
        path = self.run_dir(self.get(owner).id) / "shm"
        return str(path) if overlay.is_mounted(path) else None

    def _joined_ns(self, mode: str | None, kind: str) -> str | None:
        """`container:X` (a pod's members join its infra's IPC and UTS): X's namespace by its PID 1."""
        if not mode or not mode.startswith("container:"):
            return None
        other = self.get(mode.partition(":")[2])
        if not other.has_process or not other.pid:
            raise Conflict(f"cannot join {kind} namespace of a non running container: {other.id}")
        return f"/proc/{other.pid}/ns/{kind}"

    # ---------------------------------------------------------------- exit
    def _watch_monitor(self, cid: str) -> None:
        """conmon writes the exit file the exit watcher waits for. If conmon itself dies first (killed,
        OOM), nothing would ever record the exit and the container would show running with nobody
        minding it: a pidfd on conmon tells the loop it is gone, and the exit is finalized as a daemon
        restart would (exit file if there is one, else 255; the runtime's container deleted)."""
        pid = self.runtime.conmon_pid(cid)
        old = self._monitor_watch.get(cid)
        if not pid or (old is not None and old[1] == pid):
            return
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return
        if not self.runtime.conmon_alive(cid):  # the pid was read before the pidfd: make sure it is ours
            os.close(fd)
            return
        loop = asyncio.get_running_loop()
        if old is not None:
            # The previous run's conmon, its end not yet seen by the loop: that run's exit is finalized
            # (a start follows only that). Seen later, it would finalize this new run as if its conmon died.
            loop.remove_reader(old[0])
            os.close(old[0])
        watch = (fd, pid)
        self._monitor_watch[cid] = watch

        def gone() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            if self._monitor_watch.get(cid) is not watch:
                return
            del self._monitor_watch[cid]
            self._finalize_task(cid)

        loop.add_reader(fd, gone)

    def _finalize_task(self, cid: str) -> asyncio.Task[None]:
        """finalize_exit as a task of its own, held until done: a caller's cancellation (a kill's
        30 s wait, a client gone) must not cut it short half-way (rows left, recorded running)."""
        task = asyncio.get_running_loop().create_task(self.finalize_exit(cid))
        self._monitor_tasks.add(task)
        task.add_done_callback(self._monitor_tasks.discard)
        return task

    @_about
    async def finalize_exit(self, cid: str) -> None:
        """Idempotent: record the exit, release runtime/mounts/network, apply the restart policy."""
        try:
            c = self.get(cid)
        except NotFound:
            return
        lv = self.live(cid)
        async with lv.lock:
            try:
                c = self.get(cid)
            except NotFound:  # a --rm's removal, queued for the lock before this second call (the exit
                return  # file's and conmon's pidfd's) since the exit's cleanup got quick
            if not c.has_process:
                return
            # Inline: a few small reads (the exit file, the bundle's config, memory.events) that never wait
            # on a disk where they live (the exec root, a tmpfs, and the cgroup fs); a thread hop was
            # ~0.2 ms idle and 1-2 ms at load 8, on the way to `run --rm`'s answer.
            found, oom = self._exit_status(c, lv.unrecorded_exit is None)
            if found is not None:
                code = found
            elif lv.unrecorded_exit is not None:
                code, oom = lv.unrecorded_exit
            else:
                code = 255
            lv.unrecorded_exit = (code, oom)
            # A container about to be removed (--rm, rm -f) has its network released in the background,
            # after the removal has answered (--rm) or beside it (rm -f): the kernel's deleting of the
            # veth and netns (20-50 ms) is not on the way to `removed`.
            later = (c.host_config.auto_remove or lv.removing) and self._network_deferrable(cid)
            try:
                # --rm: the rootfs goes mounted into the trash with the container's dirs; its unmount
                # (an RCU grace period and the upper file system's sync: 5-60 ms) comes after the answer.
                await self._cleanup_runtime(c, network=not later, rootfs=not c.host_config.auto_remove)
                self.save(cid, state="exited", pid=0, exit_code=code, finished_at=time.time(), oom_killed=int(oom))
            except BaseException:
                if later:  # the exit is not recorded (a full disk): its network goes all the same
                    await self._release_network_later(cid)
                raise
            lv.unrecorded_exit = None
            c = self.get(cid)
            if oom:
                self.emit(c, "oom")
            self.emit(c, "die", {"exitCode": str(code)})
            lv.exited.set()
        for hook in self.on_exited:
            hook(c)
        if c.host_config.auto_remove:
            try:
                await self.remove(cid, force=True, volumes=True)
            except BaseException:
                if later:  # the container stays, exited: its network goes all the same
                    await self._release_network_later(cid)
                raise
            return
        if later:
            await self._release_network_later(cid)
        self._maybe_schedule_restart(c)

    def _network_deferrable(self, cid: str) -> bool:
        return self.networks is not None and self.networks.deferrable(cid)

    async def _release_network_later(self, cid: str, forget: bool = False) -> None:
        """Start the release of the container's network in the background (forget: its memberships too)."""
        if self.networks is None:
            return
        try:
            if forget:
                await self.networks.forget(cid, wait=False)
            else:
                await self.networks.detach(cid, wait=False)
        except Exception as e:  # noqa: BLE001
            log.warning("network release of %s: %s", cid[:12], e)

    def _exit_status(self, c: Container, oom_if_unknown: bool) -> tuple[int | None, bool]:
        """conmon's exit code (None without one) and whether the cgroup saw an OOM kill (asked only if it
        will be used)."""
        code = self.runtime.exit_code(c.id)
        return code, self._oom_killed(c) if code is not None or oom_if_unknown else False

    def _oom_killed(self, c: Container) -> bool:
        try:
            return self.runtime.oom_killed(c.id)
        except Exception:  # noqa: BLE001 - OOM detection is advisory
            return False

    async def _cleanup_runtime(self, c: Container, network: bool = True, rootfs: bool = True,
                               volumes: bool = True) -> None:
        """Delete runtime state, unmount the rootfs, release the network, unmount plugin volumes (unless
        not `network`, `rootfs` or `volumes`: the caller sees to them later). Safe to repeat. The three
        touch nothing of each other's: they run at once (a `run --rm` waits for the longest, runc delete,
        not for the sum). A step with nothing to do takes no thread hop: on the way from the exit to
        `run --rm`'s answer each was a wakeup of a worker, milliseconds on a loaded machine."""

        async def runtime_state() -> None:
            try:
                await self.runtime.delete(c.id, force=True)
            except Exception as e:  # noqa: BLE001
                log.debug("runtime delete %s: %s", c.id[:12], e)
            # plugin volumes it mounted (VolumeDriver.Unmount), once runc killed any straggler
            if volumes and self.volumes is not None and self.volumes.mounted_for(c.id):
                await asyncio.to_thread(self.volumes.unmount_container, c.id)

        async def release_network() -> None:
            if self.networks is not None and network:
                try:
                    await self.networks.detach(c.id)
                except Exception as e:  # noqa: BLE001
                    log.warning("network detach %s: %s", c.id[:12], e)

        steps = [runtime_state(), release_network()]
        if rootfs:
            steps.append(asyncio.to_thread(self._unmount_rootfs, c))
        await asyncio.gather(*steps)

    def _unmount_rootfs(self, c: Container) -> None:
        """Lazy (MNT_DETACH): a process still exiting keeps its own view."""
        overlay.unmount(self.rootfs(c.id))
        if c.host_config.ipc_mode == "shareable":
            overlay.unmount(self.run_dir(c.id) / "shm")

    # Restart policies: Docker's increasing delay (100 ms doubling, reset after 10 s of running).
    def _maybe_schedule_restart(self, c: Container) -> None:
        rp = c.host_config.restart_policy
        name = (rp.name if rp is not None else "") or "no"
        lv = self.live(c.id)
        if name == "no" or lv.exit_on_next or (name == "unless-stopped" and c.stopped_by_user):
            return
        if name == "on-failure":
            if c.exit_code == 0:
                return
            mx = rp.maximum_retry_count if rp is not None else 0
            if mx and c.restart_count >= mx:
                return
        ran = (c.finished_at - c.started_at) if c.started_at else 0
        count = 0 if ran > 10 else c.restart_count
        delay = min(0.1 * (2 ** count), 60.0) if ran <= 10 else 0.1
        # Docker shows the delay as Status "restarting" (Running and Restarting true, no Pid), the
        # restart already counted in RestartCount.
        self.save(c.id, state="restarting", restart_count=c.restart_count + 1)

        async def restart() -> None:
            await asyncio.sleep(delay)
            try:
                cur = self.get(c.id)
            except NotFound:
                return
            if cur.state != "restarting" or lv.exit_on_next:
                return
            async with lv.lock:
                cur = self.get(c.id)
                if cur.state != "restarting" or lv.exit_on_next:
                    return
                try:
                    # No "restart" event: dockerd emits only start/die for policy restarts.
                    await self._start_locked(cur)
                except Exception as e:  # noqa: BLE001
                    log.warning("restart of %s failed: %s", c.id[:12], e)
                    self.save(c.id, state="exited")
            lv.restart_task = None

        lv.restart_task = asyncio.get_running_loop().create_task(restart())

    # ---------------------------------------------------------------- stop / kill
    @_about
    async def kill(self, ref: str, sig: str | int | None = None) -> None:
        c = self.get(ref)
        if not c.running:
            raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        signum = parse_signal(sig or "KILL")
        # dockerd counts every kill as a manual stop (unless-stopped stays down after it), and it ends
        # the restart policy for SIGKILL, the container's StopSignal, or any signal when none is set.
        self.save(c.id, stopped_by_user=1)
        stop_sig = c.config.stop_signal
        if not stop_sig or signum == signal_mod.SIGKILL or signum == parse_signal(stop_sig):
            self.live(c.id).exit_on_next = True
            if c.state == "restarting":
                if await self._cancel_restart(c.id):
                    return  # no process to signal, as in dockerd
                c = self.get(c.id)  # the policy's start was under way and completed: signalled below
        if c.state == "restarting":
            return  # no process to signal, as in dockerd
        await self.runtime.kill(c.id, signum)
        self.emit(c, "kill", {"signal": str(signum)})
        if signum == signal_mod.SIGKILL:
            # dockerd's Kill returns once the container is dead: a client may inspect it (exit code
            # 137, state exited) or remove it right after, without a wait of its own.
            try:
                await asyncio.wait_for(self._wait_exited(c.id), 30)
            except TimeoutError:
                log.warning("container %s still running 30 s after SIGKILL", c.id[:12])

    @_about
    async def stop(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        c = self.get(ref)
        lv = self.live(c.id)
        lv.exit_on_next = True
        if lv.restart_task is not None or c.state == "restarting":
            # Waiting out the restart delay: nothing runs, the container just stays exited. A policy
            # start already under way ends first: a container it started is stopped below.
            if await self._cancel_restart(c.id):
                self.emit(self.get(c.id), "stop")
                return
            c = self.get(c.id)
        if not c.running:
            raise NotModified("container already stopped")
        self.save(c.id, stopped_by_user=1)
        if c.state == "paused":
            await self.runtime.resume(c.id)
            self._set_state_if(c.id, "paused", "running", keep_owner=True)
        if timeout is None or timeout < -1:
            st = c.config.stop_timeout
            timeout = 10 if st is None else int(st)
        signum = parse_signal(sig or c.config.stop_signal or "TERM")
        try:
            await self.runtime.kill(c.id, signum)
        except Exception as e:  # noqa: BLE001 - it may have exited just now
            log.debug("stop signal to %s: %s", c.id[:12], e)
        if timeout != -1:
            try:
                await asyncio.wait_for(lv.exited.wait(), timeout)
            except TimeoutError:
                try:
                    await self.runtime.kill(c.id, signal_mod.SIGKILL)
                except Exception as e:  # noqa: BLE001
                    log.debug("SIGKILL to %s: %s", c.id[:12], e)
        else:
            await lv.exited.wait()
        await self._wait_exited(c.id)
        self.emit(self.get(c.id), "stop")

    async def _cancel_restart(self, cid: str) -> bool:
        """End a pending policy restart; True when the container is left not running (exited, and it
        stays so). False when the policy's start was already under way and started it: a start is not
        cut short (see _start_locked), so this waits for it, and the caller stops or kills what it
        started (its exit then ends the policy)."""
        lv = self.live(cid)
        lv.exit_on_next = True
        task, lv.restart_task = lv.restart_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])
        async with lv.lock:  # a start whose task another caller ended may still be under way
            c = self.get(cid)
            if c.state == "restarting":
                self.save(cid, state="exited", stopped_by_user=1)
                return True
            lv.exit_on_next = True  # a start that completed reset it
            return not c.running

    async def _wait_exited(self, cid: str, poll: float = 0.05) -> None:
        """Wait until finalize_exit has run (it is triggered by the exit watcher)."""
        lv = self.live(cid)
        while True:
            try:
                c = self.get(cid)
            except NotFound:
                return
            if not c.has_process:
                return
            try:
                await asyncio.wait_for(lv.exited.wait(), 1.0)
            except TimeoutError:
                # The watcher may have missed it (e.g. conmon died): check directly.
                if await asyncio.to_thread(self.runtime.exit_code, cid) is not None or not await asyncio.to_thread(
                    self.runtime.conmon_alive, cid
                ):
                    await asyncio.shield(self._finalize_task(cid))

    @_about
    async def restart(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        c = self.get(ref)
        if c.running:
            await self.stop(c.id, timeout, sig)
        for hook in self.before_start:
            await hook(c)
        async with self.live(c.id).lock:
            await self._start_locked(self.get(c.id))
        self.emit(self.get(c.id), "restart")

    @_about
    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        if c.state != "running":
            if c.state == "paused":
                raise Conflict(f"Container {c.id} is already paused")
            if c.state == "restarting":
                raise Conflict(f"Container {c.id} is restarting, wait until the container is running")
            raise Conflict(f"Container {c.id} is not running")
        await self.runtime.pause(c.id)
        # only if still running: an exit finalized while runc paused has written 'exited', which stays
        self._set_state_if(c.id, "running", "paused")
        self.emit(c, "pause")

    @_about
    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        if c.state != "paused":
            raise SystemError_(f"Container {c.id} is not paused")  # dockerd answers 500 here, not 409
        await self.runtime.resume(c.id)
        self._set_state_if(c.id, "paused", "running")  # an exit finalized meanwhile stays
        self.emit(c, "unpause")

    async def pause_for(self, cid: str, owner: str) -> bool:
        """Pause a running container on the daemon's own behalf (commit), recorded *before* runc
        freezes it so that a crash at any point leaves a record recover() can undo. dockerd's
        commit pauses through the same path as `docker pause` (recorded, with events); False when
        it is not running."""
        c = self.get(cid)
        if c.state != "running":
            return False
        self._set_state_if(c.id, "running", "paused", paused_by=owner)
        try:
            await self.runtime.pause(c.id)
        except DockyardError:  # it exited a moment ago (its exit not processed yet): nothing to pause
            self._set_state_if(c.id, "paused", "running", owner=owner)
            return False
        self.emit(c, "pause")
        return True

    async def unpause_for(self, cid: str, owner: str) -> None:
        """Undo pause_for, unless the user unpaused (or stopped) it meanwhile."""
        try:
            c = self.get(cid)
        except NotFound:
            return
        if c.state != "paused" or c.paused_by != owner:
            return
        try:
            await self.runtime.resume(c.id)
        except DockyardError as e:
            log.warning("unpause %s after %s: %s", c.id[:12], owner, e)
        self._set_state_if(c.id, "paused", "running", owner=owner)
        self.emit(c, "unpause")

    def _set_state_if(self, cid: str, old: str, new: str, *, paused_by: str = "", owner: str | None = None,
                      keep_owner: bool = False) -> None:
        """state old -> new only if still old (and, with owner, paused by it): an exit processed in
        between has written 'exited', which must stay. keep_owner leaves paused_by as it is (stop's
        resume: a commit that paused it undoes its own pause by it)."""
        sql = "UPDATE containers SET state=?" + ("" if keep_owner else ", paused_by=?") + " WHERE id=? AND state=?"
        args: list[Any] = [new, *([] if keep_owner else [paused_by]), cid, old]
        if owner is not None:
            sql += " AND paused_by=?"
            args.append(owner)
        self.db.execute(sql, tuple(args), durable=not keep_owner)  # paused_by outlives a reboot (_RUN_STATE)

    # ---------------------------------------------------------------- wait / remove / rename
    async def wait(self, ref: str, condition: str = "not-running") -> dict[str, Any]:
        c = self.get(ref)
        lv = self.live(c.id)
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidParameter(f"invalid condition: {condition!r}")
        if condition == "removed":
            await lv.removed.wait()
            if lv.final_exit is not None:  # the row is gone (no lookup to find it so)
                return {"StatusCode": lv.final_exit, "Error": None}
            c2 = c
            try:
                c2 = self.get(c.id)
            except NotFound:
                pass
            return {"StatusCode": c2.exit_code, "Error": None}
        # A container waiting to restart counts as not running (dockerd wakes waiters on its exit).
        if condition in ("", "not-running") and not c.has_process:
            return {"StatusCode": c.exit_code, "Error": None}
        if condition == "next-exit" and not c.has_process:
            lv.exited.clear()
            await lv.exited.wait()
        elif c.has_process:
            await self._wait_exited(c.id)
        try:
            c = self.get(c.id)
        except NotFound:
            return {"StatusCode": c.exit_code if lv.final_exit is None else lv.final_exit, "Error": None}
        return {"StatusCode": c.exit_code, "Error": None}

    @_about
    async def remove(self, ref: str, force: bool = False, volumes: bool = False, link: bool = False,
                     quiet: bool = False) -> None:
        if link:
            return self._remove_link(ref)
        c = self.get(ref)
        lv = self.live(c.id)
        if c.running:
            if not force:
                raise Conflict(
                    f'cannot remove container "/{c.name}": container is {c.state}: '
                    "stop the container before removing or force remove"
                )
            if c.state == "paused":
                await self.runtime.resume(c.id)
            self.save(c.id, stopped_by_user=1)
            lv.exit_on_next = True
            lv.removing = True
            try:
                try:
                    await self.runtime.kill(c.id, signal_mod.SIGKILL)
                except Exception as e:  # noqa: BLE001
                    log.debug("kill for remove %s: %s", c.id[:12], e)
                await self._wait_exited(c.id)
            finally:
                lv.removing = False
        if lv.restart_task is not None:
            lv.restart_task.cancel()
        later = False
        async with lv.lock:
            try:
                c = self.get(c.id)
            except NotFound:
                return
            self.save(c.id, state="removing")
            handed = False  # to _remove_files, which unmounts the rootfs itself if it fails
            try:
                # Plugin volumes are unmounted by release_container, in _remove_files.
                await self._cleanup_runtime(c, network=False, rootfs=False, volumes=False)
                # Its network (what the exit left, and its memberships) goes after the answer if it can:
                # a published port or a plugin's endpoint goes before it, as with dockerd.
                later = self._network_deferrable(c.id)
                if self.networks is not None and not later:
                    await self.networks.forget(c.id)
                handed = True
                trash = await asyncio.to_thread(self._remove_files, c, volumes)
            except BaseException:
                if later:  # the removal failed (to be retried): the network goes all the same
                    await self._release_network_later(c.id)
                if not handed:
                    await asyncio.to_thread(self._unmount_rootfs, c)
                raise
            lv.final_exit = c.exit_code
        if not quiet:
            self.emit(c, "destroy")
        lv.exited.set()
        lv.removed.set()  # first: the waiters' answers go out before the trash's unmount and rm -rf begin
        if trash:
            task = asyncio.get_running_loop().create_task(self._empty_trash_of(c.id, trash))
            self._emptying.add(task)
            task.add_done_callback(self._emptying.discard)
        self._live.pop(c.id, None)
        trace.drop(f"container:{c.id}")
        for hook in self.on_removed:
            hook(c)
        if later:
            await self._release_network_later(c.id, forget=True)

    def _remove_files(self, c: Container, volumes: bool) -> list[Path]:
        """A removal's work on disk and in the database, in one thread hop (each was one, 4 in a row on the
        way to `run --rm`'s answer): volume references, the dirs into the trash, the row. Returns the trash.
        The rootfs (still mounted, for --rm) and the snapshot's upper dir go with the dirs into the trash,
        unmounted and removed after the answer (_empty_trash); the snapshot is then gone. If the dirs were
        not moved, the rootfs is unmounted here.

        The row's DELETE is committed without the fsync (the answer waited 0.5 ms idle, 9-11 ms at load
        for it). A daemon killed after it: the commit is in the WAL, in the page cache, which a process's
        death does not drop: the container stays removed. A power loss: SQLite recovers a prefix of the
        WAL's commits, so the row is back as it was before `removing` (with its dirs, or without them if
        their renames reached the disk: `recover` finishes that removal, `_dirs_gone`), or `removing`
        (recover finishes it), or gone (the sweep takes dirs and network without a row)."""
        moved = False
        try:
            if self.volumes is not None:
                self.volumes.release_container(c.id, volumes)
            trash = self._remove_dirs(c.id)
            moved = True
            self.snapshots.remove(c.id)
            self.db.execute("DELETE FROM containers WHERE id=?", (c.id,), durable=False)
        except BaseException:
            if not moved:
                self._unmount_rootfs(c)
            raise
        return trash

    async def _empty_trash_of(self, cid: str, trash: list[Path]) -> None:
        try:
            await asyncio.to_thread(_empty_trash, trash)
        finally:
            trace.drop(f"container:{cid}")  # the unmount's record, made after the removal dropped the rest

    async def settle(self) -> None:
        """At the daemon's stop: removed containers' dirs still being unmounted and removed go first."""
        if self._emptying:
            await asyncio.wait(builtins.list(self._emptying))

    def _remove_dirs(self, cid: str) -> list[Path]:
        """The container's dirs (init layer and log; bundle) leave their places by a rename each into a
        trash dir beside them, and their files go once the removal has answered (_empty_trash): an rm -rf
        of their ~30 entries took 1-90 ms of every removal (each unlink waits on the journal when the
        disk is busy). What a crash leaves in the trash goes at the next start (daemon/sweep.py)."""
        moved: list[Path] = []
        with trace.step("file", f"rm -rf {self.container_dir(cid)} {self.run_dir(cid)} (renamed into trash/ "
                        "now, their files removed after the answer)",
                        "the init layer, log and bundle go with the container") as s:
            # Mounts below (the rootfs, a view of it: cp, export, create's) move with the dirs, and are
            # unmounted in the trash (_empty_trash).
            for d in (self.container_dir(cid), self.run_dir(cid)):
                dest = trash_dir(d.parent.parent) / f"{cid}-{os.urandom(4).hex()}"
                try:
                    dest.parent.mkdir(exist_ok=True)
                    os.rename(d, dest)
                except FileNotFoundError:
                    continue
                except OSError as e:  # not renamed (another file system?): removed here
                    s.result = f"{d}: {e.strerror}: removed in place"
                    overlay.unmount_under(d)
                    shutil.rmtree(d, True)
                    continue
                moved.append(dest)
        return moved

    def _remove_link(self, ref: str) -> None:
        """`rm --link parent/alias`: the parent forgets the link; both containers stay."""
        parent_ref, slash, alias = ref.strip("/").rpartition("/")
        if not slash:
            raise InvalidParameter("Conflict, cannot remove the default link name of the container")
        parent = self.get(parent_ref)
        hc = parent.host_config
        kept = [s for s in hc.links or [] if links.parse(s, parent.name).alias != alias]
        if len(kept) == len(hc.links or []):
            raise NotFound(f"Could not find entity for {ref}")
        hc.links = kept or None
        self.save(parent.id, host_config=hc)

    async def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        new_name = validate_name(new_name)
        if new_name == c.name:
            raise Conflict("Renaming a container with the same name as its current name")
        if self.db.query_one("SELECT id FROM containers WHERE name=?", (new_name,)):
            other = self.get(new_name)
            raise Conflict(  # Docker wraps the name-reservation error; compose matches on the prefix
                f'Error when allocating new name: Conflict. The container name "/{new_name}" is already in use '
                f'by container "{other.id}". '
                "You have to remove (or rename) that container to be able to reuse that name."
            )
        self.save(c.id, name=new_name)
        if self.networks is not None:
            self.networks.rename(c.id, new_name)
        self.emit(self.get(c.id), "rename", {"oldName": "/" + c.name})

    async def prune(self, filters: dict[str, builtins.list[str]]) -> dict[str, Any]:
        until = filters.get("until")
        until_ts = parse_time_arg(until[0]) if until else None
        deleted, reclaimed = [], 0
        for c in self.all():
            if c.running or c.state == "removing":
                continue
            if until_ts is not None and c.created >= until_ts:
                continue
            if not self.matches(c, {k: v for k, v in filters.items() if k in ("label",)}):
                continue
            if filters.get("label!") and self.matches(c, {"label": filters["label!"]}):
                continue  # Docker: `label!=k[=v]` keeps containers that have the label
            size = self.snapshots.usage(c.id)
            try:
                await self.remove(c.id)
            except Exception as e:  # noqa: BLE001
                log.warning("prune %s: %s", c.id[:12], e)
                continue
            deleted.append(c.id)
            reclaimed += size
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # ---------------------------------------------------------------- recovery
    async def recover(self) -> None:
        """At daemon start: adopt live monitors, finalize the dead, mark all exited after a reboot."""
        for c in self.all():
            if c.state != "removing" and self._dirs_gone(c):
                # A removal a power loss cut short: its dirs' renames into the trash reached the disk, its
                # row's `removing` and DELETE did not (written without the fsync). It cannot start again
                # (no upper dir, no init layer): finish the removal rather than show it broken.
                log.info("container %s: its dirs are gone (a removal cut short): removing it", c.id[:12])
                if c.running:  # a row of an earlier boot: nothing of it runs
                    await self._cleanup_runtime(c)
                    self.save(c.id, state="exited", pid=0)
                c = self.get(c.id)
                await self.remove(c.id, force=True)
                continue
            if c.state == "removing":
                await self.remove(c.id, force=True)
                continue
            if c.state == "restarting":  # the daemon died during a restart delay: the policy below decides
                # Or during the policy's start (recorded running only once started): what it made goes.
                await self._cleanup_runtime(c)
                self.save(c.id, state="exited")
                continue
            if not c.running:
                if self.networks is not None and (self.networks.has_sandbox(c.id) or self.networks.netns_left(c.id)):
                    # A start (or exit) the crash cut short: its netns, veths and addresses, perhaps a
                    # runtime container and its mounts, are there for a container that does not run.
                    log.info("container %s: releasing what a start cut short by the crash left", c.id[:12])
                    await self._cleanup_runtime(c)
                continue
            if c.boot_id != self.boot_id:
                await self._cleanup_runtime(c)
                self.save(c.id, state="exited", pid=0, exit_code=255, finished_at=time.time())
                continue
            # Inline, not in worker threads: a few procfs and tmpfs reads each, which never wait on a disk,
            # and two thread hand-offs per container cost more than the reads (the restart with 500).
            alive = self.runtime.conmon_alive(c.id)
            code = self.runtime.exit_code(c.id)
            if code is not None or not alive:
                await self.finalize_exit(c.id)
            else:
                await self._reconcile_pause(c)
                if self.networks is not None:
                    await self.networks.reconcile(c.id)
                self._watch_monitor(c.id)
                log.info("re-adopted running container %s", c.id[:12])
                if self.on_adopted:
                    now = self.get(c.id)
                    for hook in self.on_adopted:
                        hook(now)
        # Restart policies apply across daemon restarts: always comes back even if the user stopped it
        # (what dockerd does, and what tells it apart from unless-stopped), unless-stopped only if not.
        for r in self.db.query("SELECT id FROM containers WHERE state='exited' ORDER BY created DESC"):
            c = self.get(r["id"])  # the exited alone: decoding every row again cost ~50 µs a running one
            name = c.host_config.restart_policy.name if c.host_config.restart_policy is not None else ""
            if c.running or c.state != "exited":
                continue
            if name == "always" or (name == "unless-stopped" and not c.stopped_by_user):
                try:
                    async with self.live(c.id).lock:
                        await self._start_locked(c)
                except Exception as e:  # noqa: BLE001
                    log.warning("restart at boot of %s failed: %s", c.id[:12], e)

    def _dirs_gone(self, c: Container) -> bool:
        """A row whose container dir (its snapshot's upper and work dirs, its init layer) is not there: a
        create writes the row only once the dir is made, and only a removal moves it away. A running
        container of this boot keeps its row whatever happened to its dir (it is not ours to kill)."""
        if c.running and c.boot_id == self.boot_id:
            return False
        return not self.container_dir(c.id).is_dir()

    async def _reconcile_pause(self, c: Container) -> None:
        """Make our record and runc agree on a live container's pause, after a crash.

        - Paused by a commit the crash ended: unpause, as that commit would have on its way out.
        - Recorded paused, runc running: record running. This is dockerd's restore ("syncing
          container on disk state with real state": the runtime's state wins).
        - Recorded running, runc paused (a pause whose record never landed, e.g. by a daemon from
          before commit recorded its pause): record it paused by the user, by the same rule. Then
          inspect tells the truth and `docker unpause` works; unpausing behind the user's back could
          undo a pause someone made with runc on purpose.
        """
        if c.state == "running" and self.cgroup_parent:
            # The common case, once per running container at every start: the freezer's file says it is
            # not paused, and no `runc state` process is needed (one each made recovery grow by
            # ~10-20 ms per container).
            from dockyard.runtime import cgroups

            if cgroups.frozen(self.cgroup_path(c.id)) is False:  # a cgroupfs read: inline, as above
                return
        st = await self.runtime.state(c.id)
        frozen = st is not None and st.get("status") == "paused"
        if c.state == "paused" and c.paused_by:
            if frozen:
                try:
                    await self.runtime.resume(c.id)
                except DockyardError as e:
                    log.warning("unpause %s left paused by %s: %s", c.id[:12], c.paused_by, e)
                    return
            log.info("container %s: unpaused, its %s ended with the daemon", c.id[:12], c.paused_by)
            self.save(c.id, state="running", paused_by="")
        elif c.state == "paused" and st is not None and not frozen:
            self.save(c.id, state="running", paused_by="")
        elif c.state == "running" and frozen:
            log.warning("container %s is paused in the runtime but not in our records: recorded paused", c.id[:12])
            self.save(c.id, state="paused", paused_by="")

    def networks_changed(self, cid: str) -> None:
        """`network connect/disconnect` changed a container's networks: a running one's settings in its row
        (written at start, shown by the list; inspect asks the network service) become the live ones."""
        if self.networks is None:
            return
        ns = self.networks.settings(cid)
        self.db.execute("UPDATE containers SET network_settings=? WHERE id=? AND state IN ('running', 'paused')",
                        (json.dumps(ns), cid), durable=False)

    # ---------------------------------------------------------------- views
    def inspect(self, ref: str, size: bool = False) -> dict[str, Any]:
        c = self.get(ref)
        image_id = c.image_id
        from dockyard.runtime.spec import MASKED_PATHS, READONLY_PATHS

        hc = cc.host_config_view(c.host_config.doc(), list(MASKED_PATHS), list(READONLY_PATHS))
        ns = dict(c.network_settings or {})
        if self.networks is not None:
            # Live view first: `network connect/disconnect` change a running container's networks.
            try:
                ns = self.networks.settings(c.id) or ns
            except Exception:  # noqa: BLE001
                pass
        if not c.running:
            ns["Ports"] = {}  # dockerd drops the published ports with the network at stop
        ns.setdefault("Ports", {})
        ns.setdefault("Networks", {})
        state: dict[str, Any] = {
            "Status": c.state,
            "Running": c.state in ("running", "paused", "restarting"),
            "Paused": c.state == "paused",
            "Restarting": c.state == "restarting",
            "OOMKilled": c.oom_killed,
            "Dead": c.state == "dead",
            "Pid": c.pid,
            "ExitCode": c.exit_code,
            "Error": c.error,
            "StartedAt": rfc3339(c.started_at) if c.started_at else ZERO_TIME,
            "FinishedAt": rfc3339(c.finished_at) if c.finished_at else ZERO_TIME,
        }
        if c.health is not None:
            state["Health"] = c.health
        try:
            layer_dirs = self.lower_dirs(c)
        except Exception:  # noqa: BLE001
            layer_dirs = []
        rw = self.snapshots.mounts(c.id, layer_dirs)[0]
        out = {
            "Id": c.id,
            "Created": rfc3339(c.created),
            "Path": (c.command[:1] or [""])[0],
            "Args": c.command[1:],
            "State": state,
            "Image": image_id,
            "ResolvConfPath": str(self.run_dir(c.id) / "resolv.conf"),
            "HostnamePath": str(self.run_dir(c.id) / "hostname"),
            "HostsPath": str(self.run_dir(c.id) / "hosts"),
            "LogPath": "" if self.log_driver(c) == "none" else str(self.log_path(c.id)),
            "Name": "/" + c.name,
            "RestartCount": c.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": None,
            "HostConfig": hc,
            "GraphDriver": {
                "Name": "overlay2",
                "Data": {
                    "LowerDir": rw.option("lowerdir") if layer_dirs else "",
                    "MergedDir": str(self.rootfs(c.id)),
                    "UpperDir": rw.option("upperdir"),
                    "WorkDir": rw.option("workdir"),
                },
            },
            "Mounts": c.mounts,
            "Config": cc.config_view(c.config.doc()),
            "NetworkSettings": ns,
        }
        if size:
            out["SizeRw"] = self.snapshots.usage(c.id)
            out["SizeRootFs"] = out["SizeRw"]
        return out

    def summary(self, c: Container, size: bool = False) -> dict[str, Any]:
        """One row of GET /containers/json."""
        ns = c.network_settings or {}
        ports: list[dict[str, Any]] = []
        # Only a running container has ports: dockerd lists none for created or exited ones.
        for key, binds in ((ns.get("Ports") or {}) if c.running else {}).items():
            port, _, proto = key.partition("/")
            if not binds:
                ports.append({"PrivatePort": int(port), "Type": proto or "tcp"})
                continue
            for b in binds:
                ports.append({"IP": b.get("HostIp", ""), "PrivatePort": int(port),
                              "PublicPort": int(b.get("HostPort") or 0), "Type": proto or "tcp"})
        if c.running and not ns.get("Ports"):
            for key in (c.config.exposed_ports or {}):
                port, _, proto = key.partition("/")
                ports.append({"PrivatePort": int(port), "Type": proto or "tcp"})
        out = {
            "Id": c.id,
            "Names": ["/" + c.name],
            "Image": c.image_ref,
            "ImageID": c.image_id,
            # dockerd joins Path and Args, each argument holding a space in single quotes
            "Command": " ".join(c.command[:1] + [f"'{a}'" if " " in a else a for a in c.command[1:]]),
            "Created": int(c.created),
            "Ports": ports,
            "Labels": c.config.labels or {},
            "State": c.state,
            "Status": status_text(c),
            "HostConfig": {"NetworkMode": c.host_config.network_mode or "default"},
            "NetworkSettings": {"Networks": ns.get("Networks") or {}},
            "Mounts": c.mounts,
        }
        if size:
            out["SizeRw"] = self.snapshots.usage(c.id)
        return out

    def _listed(self) -> builtins.list[_Listed]:
        """Every container, newest first, for the list, each with its names (its own, then those it has as
        the target of other containers' links: "/parent/alias"). Nothing is read again while the database
        is unchanged (db.version()); else a row is decoded again only when its rev moved: decoding each
        row's documents at every list was ~50 µs a container (cProfile at 500)."""
        mark = self.db.version()  # before the reads: a write after it moves the next list's mark
        if mark is not None and mark == self._listed_mark:
            return self._listed_order
        known = self._listed_rows
        order = self.db.query("SELECT id, rev FROM containers ORDER BY created DESC")
        stale = [r["id"] for r in order if (e := known.get(r["id"])) is None or e.rev != r["rev"]]
        fresh = {}
        if stale:
            rows = (self.db.query("SELECT * FROM containers") if len(stale) > 100 else self.db.query(
                "SELECT * FROM containers WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(stale),)))
            fresh = {r["id"]: _Listed(r["rev"], Container.from_row(r)) for r in rows}
        out = [fresh.get(r["id"]) or known[r["id"]] for r in order if r["id"] in fresh or r["id"] in known]
        linked: dict[str, list[str]] = {}  # target name -> "/parent/alias" (one pass over all containers)
        for e in out:
            for spec in e.c.host_config.links or []:
                link = links.parse(spec, e.c.name)
                linked.setdefault(link.target, []).append(f"/{e.c.name}/{link.alias}")
        for e in out:
            names = ["/" + e.c.name, *linked.get(e.c.name, [])]
            if names != e.names:
                e.names, e.entry = names, None
        self._listed_rows = {e.c.id: e for e in out}  # removed containers leave the cache here
        self._listed_order, self._listed_mark = out, mark
        return out

    def _select(self, all_: bool, limit: int, filters: dict[str, builtins.list[str]] | None,
                before: str | None, since: str | None,
                listed: builtins.list[_Listed] | None = None) -> builtins.list[_Listed]:
        """The containers a list shows, newest first (of `listed`, _listed()'s answer, if given)."""
        filters = dict(filters or {})
        if before:
            filters.setdefault("before", []).append(before)
        if since:
            filters.setdefault("since", []).append(since)
        es = self._listed() if listed is None else listed
        if "before" in filters:
            ref = self.get(filters["before"][0])
            es = [e for e in es if e.c.created < ref.created]
        if "since" in filters:
            ref = self.get(filters["since"][0])
            es = [e for e in es if e.c.created > ref.created]
        if not all_ and limit <= 0 and "status" not in filters and "exited" not in filters:
            es = [e for e in es if e.c.running]
        if any(filters.values()):
            es = [e for e in es if self.matches(e.c, filters)]
        if limit > 0:
            es = es[:limit]
        return es

    def list(self, all_: bool = False, limit: int = -1, size: bool = False,
             filters: dict[str, builtins.list[str]] | None = None, before: str | None = None,
             since: str | None = None) -> builtins.list[dict[str, Any]]:
        out = []
        for e in self._select(all_, limit, filters, before, since):
            row = self.summary(e.c, size)
            row["Names"] = list(e.names)
            out.append(row)
        return out

    def list_json(self, all_: bool = False, limit: int = -1, filters: dict[str, builtins.list[str]] | None = None,
                  before: str | None = None, since: str | None = None) -> bytes:
        """GET /containers/json's body (without sizes). Each row's entry is kept encoded: whole until its
        status text may change (then only Names and Status are encoded again, and only if they changed),
        and a new rev of the row or new names make it anew. An unchanged container costs a comparison."""
        encode = _wire().ENCODER
        now = time.time()
        listed = self._listed()
        # `docker ps` (-a): the whole body is kept too, while the rows are those it was made of (the list
        # object _listed() keeps while nothing was written) and no Status in it has changed with the time.
        plain = not filters and not before and not since and limit <= 0
        if plain and (kept := self._list_bodies.get(all_)) is not None and kept[0] is listed and now < kept[1]:
            return kept[2]
        parts = []
        until = math.inf
        for e in self._select(all_, limit, filters, before, since, listed):
            if e.entry is None or now >= e.until:
                status, e.until = status_until(e.c, now)
                if e.entry is None or status != e.status:
                    if e.body is None:
                        row = self.summary(e.c)
                        del row["Names"], row["Status"]
                        e.body = encode(row)
                    e.status = status
                    e.entry = b'{"Names":%s,"Status":%s,%s' % (encode(e.names), encode(status), e.body[1:])
            until = min(until, e.until)
            parts.append(e.entry)
        body = b"[" + b",".join(parts) + b"]\n"
        if plain:
            self._list_bodies[all_] = (listed, until, body)
        return body

    def matches(self, c: Container, filters: dict[str, builtins.list[str]]) -> bool:
        for key, values in filters.items():
            if not values or key in ("before", "since"):
                continue
            if key == "id" and not any(c.id.startswith(v) for v in values):
                return False
            if key == "name" and not any(_name_match(v, c.name) for v in values):
                return False
            if key == "status" and c.state not in values:
                return False
            if key == "exited" and not (c.state == "exited" and str(c.exit_code) in values):
                return False
            if key == "label":
                labels = c.config.labels or {}
                for v in values:
                    k, eq, val = v.partition("=")
                    if k not in labels or (eq and labels[k] != val):
                        return False
            if key == "ancestor":
                ok = False
                for v in values:
                    try:
                        if self.images.resolve(v).id == c.image_id:
                            ok = True
                    except Exception:  # noqa: BLE001
                        pass
                    if v == c.image_ref or c.image_id.startswith(v) or c.image_id == "sha256:" + v:
                        ok = True
                if not ok:
                    return False
            if key == "network":
                nets = (c.network_settings or {}).get("Networks") or {}
                if not any(v in nets or any(n.get("NetworkID", "").startswith(v) for n in nets.values()) for v in values):
                    return False
            if key == "health":
                h = (c.health or {}).get("Status", "none")
                if h not in values:
                    return False
            if key == "is-task":
                if "true" in values:
                    return False
        return True


def trash_dir(root: Path) -> Path:
    """Where removed containers' dirs under `root` (the data or exec root) wait for their rm -rf."""
    return root / "trash"


def _empty_trash(paths: builtins.list[Path]) -> None:
    for p in paths:  # the rootfs moved here mounted goes first: it holds the upper dir, removed next
        overlay.unmount_under(p)
    for p in paths:
        shutil.rmtree(p, True)


async def _settle(fut: asyncio.Future[Any]) -> None:
    """Wait for `fut` to end, through any cancellation of our own (the caller raises its own after);
    its outcome is retrieved, so an exception of a start nobody waits for is not logged as lost."""
    while not fut.done():
        try:
            await asyncio.wait([fut])
        except asyncio.CancelledError:
            continue
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("a cancelled start or create ended in an error: %s", fut.exception())


async def _both(a: Awaitable[Any], b: Awaitable[Any]) -> tuple[Any, Any]:
    """Run two steps at once; if either fails, wait for the other too (so the undo sees a settled
    state), then raise the first failure."""
    results: tuple[Any, Any] = await asyncio.gather(a, b, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results[0], results[1]


# Columns whose value a reboot makes void (boot_id tells; recovery marks such a container exited).
# Not stopped_by_user, restart_count or paused_by: restart policies read them after a reboot.
_RUN_STATE = frozenset(("state", "pid", "started_at", "finished_at", "exit_code", "error", "oom_killed",
                        "boot_id", "network_settings", "mounts"))


def _networks_of(hc: HostConfig) -> tuple[str, dict[str, Any]]:
    """The network mode and the endpoints' settings by network, as the network service takes them."""
    endpoints = (hc.networking.endpoints_config if hc.networking is not None else None) or {}
    return ("bridge" if hc.network_mode in ("", "default") else hc.network_mode,
            {("bridge" if k == "default" else k): v.doc() for k, v in endpoints.items()})


def _has_mounts(c: Container) -> bool:
    """Whether the container asks for any volume, bind or tmpfs (else create need not mount its rootfs)."""
    hc = c.host_config
    return bool(c.config.volumes or hc.binds or hc.mounts or hc.tmpfs or hc.volumes_from)


def _name_match(pattern: str, name: str) -> bool:
    import re

    try:
        return re.search(pattern.lstrip("/"), name) is not None
    except re.error:
        return pattern.lstrip("/") in name


def status_text(c: Container) -> str:
    return status_until(c, time.time())[0]


def status_until(c: Container, now: float) -> tuple[str, float]:
    """The list's Status of c at `now`, and a time before which it stays the same (the texts that tell a
    duration change with it: human_duration's, at the next second under a minute, else at the next minute,
    which is as soon as or sooner than it changes)."""
    if c.state == "created":
        return "Created", math.inf
    if c.state == "removing":
        return "Removal In Progress", math.inf
    if c.state in ("running", "paused"):
        s = f"Up {human_duration(now - c.started_at)}"
        if c.state == "paused":
            s += " (Paused)"
        elif c.health and c.health.get("Status") in ("healthy", "unhealthy", "starting"):
            st = c.health["Status"]
            s += " (health: starting)" if st == "starting" else f" ({st})"
        return s, now + human_duration_left(now - c.started_at)
    if c.state == "restarting":
        return (f"Restarting ({c.exit_code}) {human_duration(now - c.finished_at)} ago",
                now + human_duration_left(now - c.finished_at))
    if c.state == "exited":
        if not c.finished_at:
            return ("Created" if not c.started_at else f"Exited ({c.exit_code})"), math.inf
        return (f"Exited ({c.exit_code}) {human_duration(now - c.finished_at)} ago",
                now + human_duration_left(now - c.finished_at))
    return c.state.capitalize(), math.inf


def resources_of(r: WireResources) -> Resources:
    """HostConfig's resource fields (typed: wire.container.Resources) as the runtime's Resources
    (NanoCpus → CFS quota over 100 ms)."""
    from dockyard.runtime.spec import Resources

    quota, period = r.cpu_quota, r.cpu_period
    if r.nano_cpus:
        period = 100_000
        quota = r.nano_cpus * period // 1_000_000_000
    return Resources(
        memory=r.memory, memory_swap=r.memory_swap, memory_reservation=r.memory_reservation,
        cpu_shares=r.cpu_shares, cpu_quota=quota, cpu_period=period, cpuset_cpus=r.cpuset_cpus,
        cpuset_mems=r.cpuset_mems, pids_limit=r.pids_limit or 0, oom_kill_disable=bool(r.oom_kill_disable),
        blkio_weight=r.blkio_weight,
    )


def _column(v: Any) -> Any:
    """A value for a containers row: JSON for documents and wire structs, else as it is."""
    if isinstance(v, dict | list):
        return json.dumps(v)
    if v is None or isinstance(v, str | int | float | bytes):
        return v
    from dockyard.wire.container import ENCODER

    return ENCODER(v).decode()
