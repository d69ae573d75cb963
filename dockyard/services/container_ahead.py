"""A start's work begun at create, while the client makes its next round trips (issue 20).

`docker run` sends create, then attach and wait, then start: ~7-10 ms in which the daemon idles. Right
after a create has answered, the container's rootfs is mounted, its own netns made, its bundle written
and, for the plain cases, `conmon -> runc create` run (~55 ms), leaving runc's init waiting on its exec
fifo. The start then finds it all done (`take`) and only attaches the network and opens the fifo.

Invisible until the start: the container stays "created" with Pid 0 and no address in inspect, no event
is emitted, and nothing of it is recorded. The start rebuilds the spec as it always does and uses the
runc container only if the spec (and conmon's options) came out the same, so whatever changed in
between (rename, update, connect, a link's target) is honoured; any write to the container before its
start (save, network connect/disconnect, a view of its rootfs: cp, export) drops the speculation
anyway, as do its removal, the daemon's stop and a timeout with no start. Dropped, it leaves nothing:
runc's container deleted and its conmon gone (before its exit file is removed), the rootfs unmounted,
the netns deleted, the bundle's files removed. A daemon killed meanwhile leaves what recovery and the
startup sweep remove (a runtime record and a netns for a container that does not run).

Off unless the daemon's environment has DOCKYARD_START_AHEAD=on (see MODE).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard import trace
from dockyard.store import overlay
from dockyard.store.snapshotter import mount_all

if TYPE_CHECKING:
    from dockyard.services.containers import Container, ContainerService

log = logging.getLogger("dockyard.containers")

# A `docker create` with no start keeps a conmon and a runc init this long (after runc create) at most.
TIMEOUT = 2.0
# At most this many at once: a burst of creates whose starts come later (compose up, a script creating
# hundreds) would otherwise hold as many runc inits, and make each one twice once they time out.
LIMIT = 4
# The runtime's files a speculative create leaves in the bundle (besides the rootfs mount point).
_NET_FILES = ("hosts", "resolv.conf", "hostname")
_BUNDLE_FILES = ("config.json", "pidfile", "conmon.pid", "conmon.log", "attach", "ctl", "winsz", "oom",
                 *_NET_FILES, *(f"{n}.ahead" for n in _NET_FILES))


def _session(cid: str) -> str:
    """The trace session of a container's work done ahead of its start."""
    return f"ahead:{cid[:12]}"


@dataclass
class _Paths:
    """What the spec builder takes from a network attachment: the paths attach will use."""

    netns_path: Path | None
    hosts_path: Path
    resolv_path: Path
    hostname_path: Path
    network_settings: dict[str, Any] = field(default_factory=dict)
    plumb: Callable[[], None] | None = None


@dataclass
class Prepared:
    """One container's start work done ahead. Owned by whoever pops it from Ahead._by_id."""

    cid: str
    valid: bool = True
    mounted: bool = False
    netns: bool = False
    files: bool = False
    pid: int = 0  # runc's init, waiting on its exec fifo
    spec_text: str = ""
    create_kw: dict[str, Any] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    staged: asyncio.Future[None] | None = None  # the rootfs, netns and network files are there
    timer: asyncio.TimerHandle | None = None
    dropping: asyncio.Task[None] | None = None


# DOCKYARD_START_AHEAD in the daemon's environment: "on" (all of it), "mount" (the rootfs and netns,
# nothing of the runtime's), else none. Off by default: at load 4-10 on the 2-core bench machine,
# interleaved runs of two daemons found `run --rm` 2-5 % slower with it, `run -d` within noise (the
# client's gap it fills is ~5-10 ms, and runc create, sharing the CPUs with the start's own work, took
# longer). To be measured again on an idle machine before it is turned on.
MODE = os.environ.get("DOCKYARD_START_AHEAD", "off").lower()


class Ahead:
    def __init__(self, cs: ContainerService, timeout: float = TIMEOUT, runtime_create: bool = MODE != "mount") -> None:
        self.cs = cs
        self.timeout = timeout
        self.runtime_create = runtime_create
        self.enabled = MODE in ("on", "1", "yes", "true", "mount")
        self._by_id: dict[str, Prepared] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------ who may
    def eligible(self, c: Container) -> bool:
        """The plain cases only: the default runtime runc, a network of its own (bridge, a user network or
        none), no TTY, no volumes, links or namespaces of other containers, nothing of a pod's."""
        hc, cfg = c.host_config, c.config
        mode = hc.network_mode or "default"
        return (self.cs.networks is not None and c.runtime == "runc" == self.cs.default_runtime
                and mode != "host" and not mode.startswith("container:")
                and not cfg.tty and not hc.links and not hc.init
                and (hc.ipc_mode or "private") == "private" and not hc.pid_mode and not hc.uts_mode
                and not hc.cgroup_parent and not hc.devices and not hc.privileged
                and not (cfg.volumes or hc.binds or hc.mounts or hc.tmpfs or hc.volumes_from)
                and not self.cs.live(c.id).transient_env)

    # ------------------------------------------------------------ begin
    def begin(self, c: Container) -> None:
        """After a create has written its row: start the work in the background (not awaited)."""
        if not self.enabled or c.id in self._by_id or len(self._by_id) >= LIMIT or not self.eligible(c):
            return
        loop = self._loop = asyncio.get_running_loop()
        p = Prepared(c.id, staged=loop.create_future())
        self._by_id[c.id] = p
        p.task = loop.create_task(self._prepare(p, c))

        def prepared(_: asyncio.Task[None]) -> None:  # the timeout runs from here: no start came
            if p.valid and self._by_id.get(c.id) is p:
                p.timer = loop.call_later(self.timeout, self.invalidate, c.id)
        p.task.add_done_callback(prepared)

    async def _prepare(self, p: Prepared, c: Container) -> None:
        assert p.staged is not None
        # Not the create's work (its --explain runs nothing): the start that takes it shows it (take).
        trace.set_session(_session(c.id))
        try:
            await self._stages(p, c, p.staged)
        except BaseException as e:
            if not p.staged.done():
                p.staged.set_exception(e)
                p.staged.exception()  # retrieved: the task's own exception is the one reported
            raise
        finally:
            if not p.staged.done():
                p.staged.set_result(None)

    async def _stages(self, p: Prepared, c: Container, staged: asyncio.Future[None]) -> None:
        cs = self.cs
        assert cs.networks is not None
        networks = cs.networks
        run_dir, rootfs = cs.run_dir(c.id), cs.rootfs(c.id)
        with trace.about(f"container:{c.id}"), trace.step(
                "ahead", "the start's work begun at create (rootfs, netns, bundle, runc create)",
                "the client's round trips between create and start overlap it; the start uses it if "
                "nothing changed") as s:
            def stage() -> Path:
                run_dir.mkdir(parents=True, exist_ok=True)
                mount_all(cs.snapshots.mounts(c.id, cs.lower_dirs(c)), rootfs)
                p.mounted = True
                netns = networks.make_netns(c.id)
                p.netns = True
                if self.runtime_create:
                    # Files runc binds: each with a second name (.ahead), which tells the start's attach to
                    # write them in place (networks._write_runtime), so the inode runc binds, before or
                    # after that write, is the one the path names from then on.
                    for name in _NET_FILES:
                        f = run_dir / name
                        f.write_bytes(f"{c.config.hostname or c.id[:12]}\n".encode() if name == "hostname" else b"")
                        os.chmod(f, 0o644)
                        os.link(f, run_dir / f"{name}.ahead")
                    p.files = True
                return netns
            netns = await asyncio.to_thread(stage)
            staged.set_result(None)  # a start may take it from here: runc create goes on beside its attach
            if not p.valid or not self.runtime_create:
                s.result = "rootfs and netns" if p.valid else "dropped"
                return
            paths = _Paths(netns, run_dir / "hosts", run_dir / "resolv.conf", run_dir / "hostname")
            spec = cs._build_spec(c, rootfs, paths, [])
            p.spec_text = json.dumps(spec)
            p.create_kw = cs.create_kwargs(c)
            await asyncio.to_thread((run_dir / "config.json").write_text, p.spec_text)
            if not p.valid:
                s.result = "dropped"
                return
            p.pid = await cs.runtime.create(c.id, run_dir, spec=spec, **p.create_kw)
            s.result = f"runc init {p.pid} waits for the start"

    # ------------------------------------------------------------ drop
    def holds(self, cid: str) -> bool:
        return cid in self._by_id

    def invalidate(self, cid: str) -> None:
        """Something wrote to the container (or no start came): drop what was done ahead. From any thread."""
        if self._loop is None or cid not in self._by_id:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self._loop:
            self._loop.call_soon_threadsafe(self.invalidate, cid)
            return
        p = self._by_id.get(cid)
        if p is None or not p.valid:
            return
        p.valid = False
        if p.timer is not None:
            p.timer.cancel()
        p.dropping = self._loop.create_task(self._drop(p))

    async def discard(self, cid: str) -> None:
        """Drop it and wait until nothing of it is left (a removal, before it takes the container's lock)."""
        p = self._by_id.get(cid)
        if p is None:
            return
        self.invalidate(cid)
        if p.dropping is not None:
            await asyncio.shield(p.dropping)

    async def discard_all(self) -> None:
        for cid in list(self._by_id):
            await self.discard(cid)

    async def _drop(self, p: Prepared) -> None:
        try:
            if p.task is not None:
                await asyncio.wait([p.task])
                if not p.task.cancelled() and p.task.exception() is not None:
                    log.debug("start ahead of %s failed: %s", p.cid[:12], p.task.exception())
            with trace.about(f"container:{p.cid}"), trace.step(
                    "ahead", "drop the start's work done ahead", "the container changed, or no start came") as s:
                await self.undo(p)
                s.result = "nothing left"
        finally:
            if self._by_id.get(p.cid) is p:
                del self._by_id[p.cid]

    async def undo(self, p: Prepared, keep_mount: bool = False) -> None:
        """Remove what p made (the runtime's container and conmon first: they hold the mount and netns)."""
        cs, cid = self.cs, p.cid
        run_dir = cs.run_dir(cid)
        try:
            await cs.runtime.delete(cid, force=True)  # nothing if it never got a record
        except Exception as e:  # noqa: BLE001
            log.warning("start ahead of %s: runtime delete: %s", cid[:12], e)
        p.pid = 0

        def files() -> None:
            if p.mounted and not keep_mount:
                overlay.unmount(cs.rootfs(cid))
                with contextlib.suppress(OSError):
                    cs.rootfs(cid).rmdir()
                p.mounted = False
            if p.netns and not keep_mount and cs.networks is not None:
                cs.networks.drop_netns(cid)
                p.netns = False
            for name in _BUNDLE_FILES if not keep_mount else ("config.json", *(f"{n}.ahead" for n in _NET_FILES)):
                (run_dir / name).unlink(missing_ok=True)
            p.files = False
            if not keep_mount:
                with contextlib.suppress(OSError):
                    run_dir.rmdir()  # only if empty: a view of the rootfs (cp) may be mounted in it
        await asyncio.to_thread(files)

    # ------------------------------------------------------------ take
    async def take(self, c: Container) -> Prepared | None:
        """For the start (under the container's lock): the work done ahead, its rootfs, netns and files
        there (its runc create may still run: runtime_of), or None (none, or dropped: then nothing of it
        is left and the start does it all, as without it)."""
        p = self._by_id.get(c.id)
        if p is None:
            return None
        if not p.valid:
            await self.discard(c.id)
            return None
        del self._by_id[c.id]
        if p.timer is not None:
            p.timer.cancel()
        assert p.task is not None and p.staged is not None
        await asyncio.wait([p.staged])
        if p.staged.exception() is not None:
            await self.settle(p)
            await self.undo(p)
            return None
        return p

    async def settle(self, p: Prepared) -> None:
        """Until its work has ended (a start that failed undoes it after)."""
        assert p.task is not None
        await asyncio.wait([p.task])
        if not p.task.cancelled() and p.task.exception() is not None:
            log.debug("start ahead of %s failed: %s", p.cid[:12], p.task.exception())

    async def runtime_of(self, p: Prepared) -> int:
        """The pid of the runc container made ahead, waiting on its exec fifo, once its create has
        answered; 0 if there is none (failed, or its conmon gone: its remains are removed)."""
        await self.settle(p)
        trace.replay(f"container:{p.cid}", _session(p.cid))  # an explained start shows it
        assert p.task is not None
        if p.pid and not p.task.cancelled() and p.task.exception() is None and self.cs.runtime.conmon_alive(p.cid):
            return p.pid
        if p.files or p.pid or p.task.cancelled() or p.task.exception() is not None:
            await self.undo(p, keep_mount=True)
        return 0

    def adopt(self, p: Prepared) -> None:
        """The start runs the runc container made ahead (or failed): the network files' second names go."""
        run_dir = self.cs.run_dir(p.cid)
        for name in _NET_FILES:
            (run_dir / f"{name}.ahead").unlink(missing_ok=True)
