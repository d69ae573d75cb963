"""`docker exec`: sessions kept in memory (as dockerd does), each process under its own conmon."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dockyard.errors import Conflict, DockyardError, InvalidParameter, NotFound
from dockyard.runtime.failures import exit_code_of
from dockyard.runtime.logs import frame
from dockyard.services.attach import HijackHandler, parse_detach_keys, pump_session
from dockyard.services.containers import ContainerService
from dockyard.util.ids import new_id

if TYPE_CHECKING:
    from dockyard.runtime.monitor import ExecSession
    from dockyard.wire.container import ExecConfig

log = logging.getLogger("dockyard.exec")

# An exec created for attaching gets its conmon spawned at once, held, so that conmon's start-up
# overlaps the client's create -> start round trip. Clients start right after create; one that
# doesn't within this many seconds has its held monitor dropped (a later start spawns afresh).
PREPARED_TTL = 5.0
# What dockerd writes on an exec's stream when the client detaches (its escape error, as text).
DETACHED = b"exec attach failed: error on attach stdin: read escape sequence\r\n"


@dataclass
class Exec:
    id: str
    container_id: str
    config: ExecConfig  # as created (wire.container.exec_request: decoded once at the API)
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    session: ExecSession | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    pumped: asyncio.Event = field(default_factory=asyncio.Event)  # the attach stream was copied out
    prepared: asyncio.Task[ExecSession] | None = None  # a held session spawned at create (tty, stdin) below
    prepared_mode: tuple[bool, bool] = (False, False)


class ExecService:
    def __init__(self, containers: ContainerService) -> None:
        self.cs = containers
        self.runtime = containers.runtime
        self._execs: dict[str, Exec] = {}

    def get(self, exec_id: str) -> Exec:
        e = self._execs.get(exec_id)
        if e is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return e

    def create(self, ref: str, cfg: ExecConfig) -> dict[str, Any]:
        c = self.cs.get(ref)
        if c.state == "paused":
            raise Conflict(f"Container {ref} is paused, unpause the container before exec")  # the ref, as moby
        if c.state == "restarting":
            raise Conflict(f"Container {c.id} is restarting, wait until the container is running")
        if c.state != "running":
            raise Conflict(f"Container {c.id} is not running")
        cmd = cfg.cmd
        if not cmd:
            raise InvalidParameter("No exec command specified")
        if cfg.detach_keys:
            parse_detach_keys(cfg.detach_keys)
        e = Exec(new_id(), c.id, cfg)
        self._execs[e.id] = e
        self.cs.live(c.id)  # keep coordination state alive for this container
        self.cs.emit(c, f"exec_create: {' '.join(cmd)}", {"execID": e.id})
        if not cfg.detach and (cfg.attach_stdin or cfg.attach_stdout or cfg.attach_stderr):
            self._prepare(e)
        return {"Id": e.id}

    def _prepare(self, e: Exec) -> None:
        tty, stdin = e.config.tty, e.config.attach_stdin

        async def spawn() -> Any:
            return await self.runtime.exec_(e.container_id, e.id, self.process_spec(e, tty), tty=tty, stdin=stdin,
                                            attach=True, hold=True)

        loop = asyncio.get_running_loop()
        e.prepared, e.prepared_mode = loop.create_task(spawn()), (tty, stdin)

        def expire() -> None:
            if e.prepared is not None:
                task, e.prepared = e.prepared, None
                loop.create_task(self._drop(task))

        loop.call_later(PREPARED_TTL, expire)

    @staticmethod
    async def _drop(task: asyncio.Task[Any]) -> None:
        try:
            session = await task
        except Exception:  # noqa: BLE001 - start would have reported it; nothing was started
            return
        session.abandon()

    def inspect(self, exec_id: str) -> dict[str, Any]:
        e = self.get(exec_id)
        cfg = e.config
        cmd = list(cfg.cmd or [])
        return {
            "ID": e.id, "Running": e.running, "ExitCode": e.exit_code, "CanRemove": False,
            # dockerd keeps the parsed keys as Go bytes, which its JSON shows in base64
            "ContainerID": e.container_id,
            "DetachKeys": base64.b64encode(parse_detach_keys(cfg.detach_keys)).decode() if cfg.detach_keys else "",
            "OpenStdin": cfg.attach_stdin, "OpenStdout": cfg.attach_stdout,
            "OpenStderr": cfg.attach_stderr, "Pid": e.pid,
            "ProcessConfig": {"tty": cfg.tty, "entrypoint": cmd[0] if cmd else "",
                              "arguments": cmd[1:], "privileged": cfg.privileged,
                              **({"user": cfg.user} if cfg.user else {})},
        }

    def process_spec(self, e: Exec, tty: bool) -> dict[str, Any]:
        """The container's OCI process with the exec's command, env, cwd, user and terminal."""
        from dockyard.runtime.spec import capabilities
        from dockyard.runtime.users import resolve_user

        c = self.cs.get(e.container_id)
        proc = dict(self.cs.process_of(c.id))  # a shallow copy: the keys changed below are replaced, not edited
        cfg = e.config
        proc["args"] = list(cfg.cmd or [])
        proc["terminal"] = tty
        env = {k.split("=", 1)[0]: k for k in proc.get("env") or []}
        for entry in cfg.env or []:
            env[entry.split("=", 1)[0]] = entry
        proc["env"] = list(env.values())
        if cfg.working_dir:
            proc["cwd"] = cfg.working_dir
        if cfg.user:
            u = resolve_user(self.cs.rootfs(c.id), cfg.user)
            proc["user"] = {"uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids}
        if cfg.privileged:
            from dockyard.runtime.spec import SpecInput

            caps = capabilities(SpecInput(rootfs="", args=[], privileged=True))
            proc["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
        proc.pop("consoleSize", None)
        return proc

    async def start(self, exec_id: str, detach: bool, raw: bool) -> HijackHandler | None:
        """Run the exec. raw: the client asked for a TTY stream (no multiplexing frames); whether the
        process has a terminal was fixed at create."""
        e = self.get(exec_id)
        prepared, e.prepared = e.prepared, None
        cfg = e.config
        use_tty = cfg.tty
        stdin = cfg.attach_stdin and not detach
        attach = not detach and (stdin or cfg.attach_stdout or cfg.attach_stderr)
        try:
            if e.running or e.exit_code is not None:
                raise Conflict(f"Error: Exec command {exec_id} has already run")
            c = self.cs.get(e.container_id)
            if c.state != "running":
                raise Conflict(f"Container {c.id} is not running")
        except Exception:
            if prepared is not None:
                await self._drop(prepared)
            raise
        if prepared is not None and not (attach and e.prepared_mode == (use_tty, stdin)):
            await self._drop(prepared)  # started otherwise than created (detached, or another tty mode)
            prepared = None
        e.running = True
        try:
            if prepared is not None:
                session = await prepared
            else:
                session = await self.runtime.exec_(c.id, e.id, self.process_spec(e, use_tty), tty=use_tty,
                                                   stdin=stdin, attach=attach, hold=attach)
        except Exception as err:
            self._failed(e, err)
            raise
        e.session = session
        if not attach:
            self._started(e, session)
            e.pumped.set()
            return None
        keys = parse_detach_keys(cfg.detach_keys)

        async def exited() -> None:
            # The CLI reads the exit code right after the stream ends: make sure it is known by then.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(e.done.wait(), 10)

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # Run the process only now that the 101 headers are out, as moby does.
            try:
                await session.release()
            except Exception as err:  # noqa: BLE001 - reported in the stream, like moby
                self._failed(e, err)
                session.cleanup()
                text = err.message if isinstance(err, DockyardError) else str(err)
                msg = f"OCI runtime exec failed: {text}: unknown\r\n".encode()
                writer.write(msg if raw else frame(1, msg))
                with contextlib.suppress(Exception):
                    await writer.drain()
                writer.close()
                e.pumped.set()
                return
            self._started(e, session)
            assert session.attach is not None  # asked for with attach=True
            await pump_session(session.attach, reader, writer, tty=raw, stdin=stdin,
                               # a raw stream has no place for stderr: dockerd drops it
                               stdout=cfg.attach_stdout, stderr=cfg.attach_stderr and not raw,
                               detach_keys=keys, frame=frame, before_close=exited,
                               on_detach=DETACHED if raw else frame(1, DETACHED))
            e.pumped.set()

        return handler

    def _failed(self, e: Exec, err: BaseException | None = None) -> None:
        e.running = False
        # moby's translateContainerdStartErr: 127 for a missing executable, else 126
        e.exit_code = exit_code_of(err.message if isinstance(err, DockyardError) else str(err or ""), 126)
        e.done.set()

    def _started(self, e: Exec, session: ExecSession) -> None:
        e.pid = session.pid
        with contextlib.suppress(NotFound):
            c = self.cs.get(e.container_id)
            self.cs.emit(c, f"exec_start: {' '.join(e.config.cmd or [])}", {"execID": e.id})
        asyncio.get_running_loop().create_task(self._reap(e, session))

    async def _reap(self, e: Exec, session: ExecSession) -> None:
        try:
            e.exit_code = await session.wait()
        except Exception as err:  # noqa: BLE001
            log.warning("exec %s: %s", e.id[:12], err)
            e.exit_code = -1
        e.running = False
        e.done.set()
        # A fast process may end before the client's stream is hijacked: closing the attach socket
        # now would lose its output. Clean up once the stream was copied (or given up on).
        with contextlib.suppress(NotFound):
            c = self.cs.get(e.container_id)
            self.cs.emit(c, "exec_die", {"execID": e.id, "exitCode": str(e.exit_code)})
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(e.pumped.wait(), 60)
        with contextlib.suppress(Exception):
            session.cleanup()

    def resize(self, exec_id: str, h: int, w: int) -> None:
        e = self.get(exec_id)
        if not e.config.tty:
            raise InvalidParameter("resize: exec is not running with a TTY")
        if e.session is not None and e.running:
            e.session.resize(h, w)

    def forget_container(self, cid: str) -> None:
        for k in [k for k, e in self._execs.items() if e.container_id == cid]:
            e = self._execs.pop(k)
            if e.prepared is not None:
                asyncio.get_running_loop().create_task(self._drop(e.prepared))
                e.prepared = None

    async def close(self) -> None:
        """Daemon shutdown: held monitors of never-started execs must not outlive us (nor run)."""
        for e in self._execs.values():
            if e.prepared is not None:
                task, e.prepared = e.prepared, None
                await self._drop(task)
