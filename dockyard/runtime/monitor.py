"""Containers under conmon: create/start/attach/exec/kill/delete through runc.

conmon (2.1.x, podman's protocol) parents each container and outlives the daemon. It runs
`runc create`, holds stdio, writes the k8s-file log, owns `<bundle>/attach` (seqpacket) and the
`<bundle>/ctl` fifo, and writes `exit_dir/<cid>` with the exit status.

Layout under exec_root: `runtime/<name>/` (runc --root, never the host's default state),
`exits/<cid>`, `socks/` (conmon's socket dir; we run it with --full-attach so sockets stay in the
bundle), `monitor/<cid>.json` (bundle + runtime, so a restarted daemon can find them), `term/` (each
TTY conmon's own $TMPDIR while runc hands it the pty; see `term_root`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal as _signal
import socket
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from dockyard import trace
from dockyard.errors import Conflict, DockyardError, InvalidParameter, NotFound, SystemError_
from dockyard.runtime import create_trace, procfs
from dockyard.runtime.attach import AttachSocket, connect_seqpacket
from dockyard.runtime.failures import is_exec_failure
from dockyard.runtime.signals import parse_signal


class RuntimeError_(DockyardError):
    """The OCI runtime refused; `message` is its own error text (Docker answers 400/500 with it)."""

    status = 500


class ExecNotFound(RuntimeError_):
    """Executable missing / not executable: Docker answers these with 400 on create, 127/126 on run."""

    status = 400


# conmon binds a TTY's console socket as $TMPDIR/conmon-term.XXXXXX and unlinks it only once runc has
# passed it the pty: one killed before (a held exec abandoned, a crash) left the socket in /tmp. Each
# TTY conmon gets a private $TMPDIR that goes once runc has answered. A socket path holds 107 bytes,
# and the name and the per-spawn dir take 41 of them: the bundles are too deep for it.
_TERM_ROOT_MAX = 64


def term_root(exec_root: Path) -> Path:
    """Where TTY conmons' private $TMPDIRs go: `<exec_root>/term`, or a dir named for the exec root
    under /run (/tmp when not root) if that path is too long for a socket under it."""
    root = exec_root / "term"
    if len(str(root)) <= _TERM_ROOT_MAX:
        return root
    digest = hashlib.sha256(str(exec_root).encode()).hexdigest()[:12]
    return Path("/run" if os.geteuid() == 0 else "/tmp") / f"dockyard-term-{digest}"


_RUNC_ERR = re.compile(r'msg="(?P<msg>(?:[^"\\]|\\.)*)"')


def runtime_message(text: str) -> str:
    """Pull the useful sentence out of runc's stderr/log (plain, logfmt or JSON lines)."""
    msgs: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                obj = json.loads(line)
                if obj.get("level") in ("error", "fatal") or "msg" in obj:
                    msgs.append(str(obj.get("msg", "")))
                continue
            except json.JSONDecodeError:
                pass
        m = _RUNC_ERR.search(line)
        msgs.append(m.group("msg").encode().decode("unicode_escape") if m else line)
    msg = msgs[-1] if msgs else text.strip()
    return msg


def classify(message: str) -> RuntimeError_:
    return ExecNotFound(message) if is_exec_failure(message) else RuntimeError_(message)


# How often a create that has not answered yet is looked at (Monitor._create_answer); a create
# answers in ~50 ms, so most are never looked at.
_CREATE_LOOK = 0.25

_SPAWNER: concurrent.futures.ThreadPoolExecutor | None = None


def _spawner() -> concurrent.futures.ThreadPoolExecutor:
    """Threads that start conmon and runc and wait for them. Not the event loop: a spawn blocks its
    thread until the child has exec'd (vfork), ~18 ms under load, three per container (conmon, runc
    start, runc delete), and every other request waited meanwhile. Not the default executor either:
    its few workers are for short file work, and these wait on processes."""
    global _SPAWNER
    if _SPAWNER is None:
        _SPAWNER = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="runtime-spawn")
    return _SPAWNER


def _signal_name(sig: int | str) -> str:
    try:
        return _signal.Signals(parse_signal(sig)).name
    except (ValueError, DockyardError):
        return str(sig)


async def _read_line(fd: int, timeout: float) -> bytes:
    """One newline-terminated line from a pipe without blocking the loop; b"" on EOF.

    Read as the loop sees the pipe readable, not in a worker thread: a thread would be held for all of
    runc create (or a whole exec's life, for its exit code), and the default executor has cpu+4 of
    them: ten clients starting containers at once queued every other thread hop behind these reads."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    buf = bytearray()
    done: asyncio.Future[bytes] = loop.create_future()

    def readable() -> None:
        if done.done():
            return
        try:
            while True:
                b = os.read(fd, 1)  # a byte at a time: the next message stays in the pipe for its reader
                buf.extend(b)
                if not b or b == b"\n":
                    done.set_result(bytes(buf))
                    return
        except BlockingIOError:
            return
        except OSError as e:
            done.set_exception(e)

    loop.add_reader(fd, readable)
    try:
        return await asyncio.wait_for(done, timeout)
    finally:
        loop.remove_reader(fd)


async def _readable(fd: int) -> None:
    """Until `fd` polls readable (a pidfd: its process has exited), without blocking the loop."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _drain_fifo(fd: int, pidfd: int) -> bytes:
    """Read a runc exec fifo (opened O_NONBLOCK) until its writer, the init, has closed it, or until the
    init (its pidfd) has exited; what it wrote. A fifo polls readable at EOF only once a writer has
    come and gone, so one the init has not opened yet is waited for, not taken for EOF."""
    loop = asyncio.get_running_loop()
    buf = bytearray()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            while b := os.read(fd, 4096):
                buf.extend(b)
        except BlockingIOError:
            return
        except OSError as e:
            if not done.done():
                done.set_exception(e)
            return
        if not done.done():
            done.set_result(None)

    def exited() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    loop.add_reader(pidfd, exited)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        loop.remove_reader(pidfd)
    with contextlib.suppress(OSError):  # what an init that wrote and then died left in the pipe
        buf.extend(os.read(fd, 4096))
    return bytes(buf)


def _conmon_knows(path: str, option: bytes) -> bool:
    """Whether the conmon binary has this long option (in its option table's strings; conmon 2.0.x may
    lack newer ones, and an unknown option fails every container). No `conmon --help` spawn at start."""
    try:
        with open(path, "rb") as f:
            return option + b"\0" in f.read()
    except OSError:
        return False


class _RuncConfig(msgspec.Struct):
    # runc 1.1 writes every kind of hook, each null when the spec has none: {"prestart": null, ...}
    hooks: dict[str, Any] | None = msgspec.field(default=None, name="Hooks")

    def has_hooks(self) -> bool:
        return any(self.hooks.values()) if self.hooks else False


class _RuncState(msgspec.Struct):
    """What we read of runc's state.json. The rest (its config: the whole spec, ~30 KB) is skipped
    unparsed: json.loads of all of it took ~0.4 ms of every start, between runc create and the start."""

    init_process_pid: int = 0
    init_process_start: int = 0
    cgroup_paths: dict[str, str] | None = None
    config: _RuncConfig | None = None


_runc_state_decoder = msgspec.json.Decoder(_RuncState)


class _SpecLinux(msgspec.Struct):
    cgroupsPath: str = ""  # noqa: N815 - the OCI spec's name


class _SpecCgroup(msgspec.Struct):
    """The bundle's cgroupsPath, the rest of its config.json (~10 KB) skipped unparsed: json.loads of it
    took ~0.15 ms of every exit, twice (the OOM check, then runc delete's leftovers)."""

    linux: _SpecLinux | None = None


_spec_cgroup_decoder = msgspec.json.Decoder(_SpecCgroup)


async def _whole(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a worker thread, awaited to its end even through a cancellation (raised after it):
    the caller's next steps never run while it still does, as when it ran on the loop."""
    fut = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        while not fut.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([fut])
        raise


def _alive(state: _RuncState) -> bool:
    """Whether runc's state's init process still runs (its pid, with the same start time: not reused)."""
    pid = state.init_process_pid
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] != "Z" and int(fields[19]) == state.init_process_start  # field 22: starttime


def _parse_sync(line: bytes) -> tuple[int, str]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        # conmon 2.1.6 doesn't escape runc's message; recover what we can.
        m = re.match(rb'\{"data": (-?\d+)(?:, "message": "(.*)")?\}', line.strip(), re.S)
        if not m:
            raise SystemError_(f"conmon: unexpected sync message {line!r}") from None
        return int(m.group(1)), (m.group(2) or b"").decode(errors="replace")
    return int(obj.get("data", obj.get("pid", -1))), str(obj.get("message", ""))


class ExecSession:
    """A `docker exec` under its own conmon: attach socket, exit code via the sync pipe."""

    def __init__(self, exec_id: str, pid: int, attach: AttachSocket | None, sync_fd: int, exec_dir: Path,
                 term_dir: Path | None = None) -> None:
        self.exec_id, self.pid, self.attach, self.exec_dir = exec_id, pid, attach, exec_dir
        self._term_dir = term_dir  # a held TTY exec's conmon $TMPDIR: its console socket waits there
        self._sync_fd = sync_fd
        self._code: int | None = None
        self._start_fd = -1  # a held exec: conmon waits on this pipe until release()
        self._parse_pid: Callable[[bytes], int] | None = None
        self._timeout = 60.0
        self.trace_obj = ""  # its container ("container:<id>"), for the trace of a later release()

    def hold(self, start_fd: int, parse_pid: Callable[[bytes], int], timeout: float) -> None:
        self._start_fd, self._parse_pid, self._timeout = start_fd, parse_pid, timeout

    async def release(self) -> int:
        """Let a held exec run; returns its pid. moby starts the process only after the client's stream
        is hijacked: output racing the 101 headers is lost by clients reading past their buffer (docker-py)."""
        if self._start_fd < 0 or self._parse_pid is None:
            return self.pid
        with trace.about(self.trace_obj or trace.current()), \
                trace.step("runtime", f"release held exec {self.exec_id[:12]} (conmon's start pipe)",
                           "the client attached: conmon lets runc exec run the process now") as s:
            try:
                os.write(self._start_fd, b"0")
            finally:
                os.close(self._start_fd)
                self._start_fd = -1
            try:
                self.pid = self._parse_pid(await _read_line(self._sync_fd, self._timeout))
            finally:
                _remove_term_dir(self._term_dir)
                self._term_dir = None
            s.result = f"pid {self.pid}"
        return self.pid

    async def wait(self, timeout: float | None = None) -> int:
        """Exit code (128+signal when killed). Reads conmon's final sync message."""
        if self._code is None:
            line = await _read_line(self._sync_fd, timeout or 1e9)
            self._code = _parse_sync(line)[0] if line else -1  # b"": conmon died without a word
            os.close(self._sync_fd)
            self._sync_fd = -1
        return self._code

    def resize(self, height: int, width: int) -> None:
        _write_ctl(self.exec_dir / "ctl", f"1 {height} {width}\n")

    def abandon(self) -> None:
        """Drop a held exec without running it. conmon takes EOF on its start pipe as "go", so the
        held conmon is killed before the pipe is closed."""
        if self._start_fd >= 0 and self.attach is not None:
            try:  # the attach socket's listener is the held conmon (no pid file: see _conmon_args)
                os.kill(_peer_pid(self.attach.sock), _signal.SIGKILL)
            except OSError:
                pass
        self._close()
        # At once, not off the loop: a start that drops a held exec spawns it again in the same dir.
        shutil.rmtree(self.exec_dir, ignore_errors=True)

    def cleanup(self) -> None:
        """After the exec ran (or failed to): its id never runs again, so its dir goes off the loop."""
        self._close()
        _remove_off_loop(self.exec_dir)

    def _close(self) -> None:
        if self.attach:
            self.attach.close()
        if self._start_fd >= 0:
            os.close(self._start_fd)
            self._start_fd = -1
        if self._sync_fd >= 0:
            os.close(self._sync_fd)
            self._sync_fd = -1
        _remove_term_dir(self._term_dir)
        self._term_dir = None


def _peer_pid(sock: socket.socket) -> int:
    """The pid of the process that listens on the unix socket `sock` is connected to (SO_PEERCRED)."""
    pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return int(pid)


def _remove_off_loop(path: Path) -> None:
    """rm -rf in a worker thread when called on the loop: an exec's dir (its spec, pid files, exit dir,
    attach socket and ctl fifo) took 4-15 ms at load to remove, on the loop, right as the CLI asks for
    the exec's exit code."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        shutil.rmtree(path, ignore_errors=True)
        return
    loop.run_in_executor(None, shutil.rmtree, path, True)


def _remove_term_dir(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def _write_ctl(path: Path, msg: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise Conflict(f"cannot resize: no control fifo ({e.strerror})") from e
    try:
        os.write(fd, msg.encode())
    finally:
        os.close(fd)


class Monitor:
    def __init__(self, exec_root: str | os.PathLike[str], runtime_paths: dict[str, str] | None = None,
                 conmon: str = "conmon", log_level: str = "error") -> None:
        self.exec_root = Path(exec_root)
        self.runtime_paths = dict(runtime_paths or {"runc": shutil.which("runc") or "/usr/sbin/runc"})
        # Looked up once: spawned by name, each container's conmon was an execve per $PATH entry before it
        # (root's PATH here: 8 misses, each a failed exec in the forked child).
        self.conmon = shutil.which(conmon) or conmon
        self._no_sync_log = _conmon_knows(self.conmon, b"no-sync-log")
        self.log_level = log_level
        self.exit_dir = self.exec_root / "exits"
        self.socket_dir = self.exec_root / "socks"
        self.record_dir = self.exec_root / "monitor"
        self.term_root = term_root(self.exec_root)
        # what a daemon killed while a TTY conmon waited for runc left (one daemon per exec root)
        shutil.rmtree(self.term_root, ignore_errors=True)
        for d in (self.exit_dir, self.socket_dir, self.record_dir, self.term_root):
            d.mkdir(parents=True, exist_ok=True)
        # The records as read or written (this daemon alone writes them): a restart with 500 running read
        # each container's file three times to find its bundle.
        self._records: dict[str, dict[str, Any]] = {}

    # --- bookkeeping -------------------------------------------------------------------------
    def runtime_root(self, runtime: str) -> Path:
        return self.exec_root / "runtime" / runtime

    def _record(self, cid: str) -> dict[str, Any]:
        if (record := self._records.get(cid)) is not None:
            return record
        try:
            record = json.loads((self.record_dir / f"{cid}.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"No such container: {cid}") from None
        assert isinstance(record, dict)
        self._records[cid] = record
        return record

    def bundle(self, cid: str) -> Path:
        return Path(self._record(cid)["bundle"])

    def _runtime_argv(self, runtime: str) -> list[str]:
        try:
            path = self.runtime_paths[runtime]
        except KeyError:
            raise InvalidParameter(f"unknown or invalid runtime name: {runtime}") from None
        root = self.runtime_root(runtime)
        root.mkdir(parents=True, exist_ok=True)
        return [path, "--root", str(root)]

    async def _runtime(self, cid: str, *args: str, check: bool = True, why: str = "") -> tuple[int, str, str]:
        """Run `runtime ARGS`; with `why`, the call is a host change and goes in the trace."""
        runtime = self._record(cid).get("runtime", "runc") if (self.record_dir / f"{cid}.json").exists() else "runc"
        with trace.about(f"container:{cid}"):  # whoever asks, a runtime call is about its container
            step = trace.step("runtime", f"{runtime} {' '.join(args)}", why) if why else trace.OFF  # queries: none
        with step as s:
            argv = [*self._runtime_argv(runtime), *args]

            def run() -> subprocess.CompletedProcess[bytes]:
                return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True)
            done = await asyncio.get_running_loop().run_in_executor(_spawner(), run)
            out, err, rc = done.stdout, done.stderr, done.returncode or 0
            s.result = f"exit {rc}" + (f": {runtime_message(err.decode(errors='replace'))}" if rc else "")
            s.ok = rc == 0
        if check and rc != 0:
            raise classify(runtime_message(err.decode(errors="replace")) or f"runtime {args[0]} failed")
        return rc, out.decode(errors="replace"), err.decode(errors="replace")

    def _conmon_args(self, cid: str, cuuid: str, runtime: str, bundle: Path, log_path: str | None,
                     tty: bool, stdin: bool, exit_dir: Path | None, pidfile: Path, conmon_pidfile: Path | None,
                     leave_stdin_open: bool, log_max: int | None) -> list[str]:
        argv = [self.conmon, "--api-version", "1", "-c", cid, "-u", cuuid, "-n", cid,
                "-r", self.runtime_paths[runtime], "-b", str(bundle), "-p", str(pidfile),
                "--socket-dir-path", str(self.socket_dir), "--full-attach", "--log-level", self.log_level,
                "--runtime-arg", "--root", "--runtime-arg", str(self.runtime_root(runtime)),
                "-l", f"k8s-file:{log_path or '/dev/null'}"]
        # An exec's conmon (--exec) needs neither: its exit code comes on the sync pipe, its pid from the
        # attach socket's peer (each file is a create, a write and a rename; the exit file's is on the
        # way to the exec's answer, the pid file's on the way to its start).
        if exit_dir is not None:
            argv += ["--exit-dir", str(exit_dir)]
        if conmon_pidfile is not None:
            argv += ["--conmon-pidfile", str(conmon_pidfile)]
        if self._no_sync_log:
            # conmon fsyncs the log before it writes the exit file (and an exec's exit code): a journal
            # commit on every exit with output, 1-20 ms here. dockerd's json-file never fsyncs a log.
            argv.append("--no-sync-log")
        if log_max and log_max > 0:
            argv += ["--log-size-max", str(log_max)]
        if tty:
            argv.append("-t")
        if stdin:
            argv.append("-i")
        if leave_stdin_open:
            argv.append("--leave-stdin-open")
        return argv

    # --- lifecycle ---------------------------------------------------------------------------
    async def create(self, cid: str, bundle_dir: str | os.PathLike[str], runtime: str = "runc",
                     log_path: str | None = None, tty: bool = False, stdin: bool = False,
                     log_max: int | None = None, leave_stdin_open: bool = False, timeout: float = 60,
                     spec: dict[str, Any] | None = None) -> int:
        """Start conmon, which runs `runtime create`. Returns the container's pid (state: created).
        `spec` (the bundle's config.json, when the caller has it) names in the trace what runc was asked."""
        bundle = Path(bundle_dir)
        self._runtime_argv(runtime)  # validates the name, makes its root
        self._records.pop(cid, None)
        (self.record_dir / f"{cid}.json").write_text(json.dumps({"bundle": str(bundle), "runtime": runtime}))
        (self.exit_dir / cid).unlink(missing_ok=True)
        (bundle / "pidfile").unlink(missing_ok=True)  # a previous start's: runc create's is its last step
        argv = self._conmon_args(cid, cid, runtime, bundle, log_path, tty, stdin, self.exit_dir,
                                 bundle / "pidfile", bundle / "conmon.pid", leave_stdin_open, log_max)
        term_dir = self._term_dir(cid) if tty else None
        r_sync, w_sync = os.pipe2(os.O_CLOEXEC)
        with trace.step("runtime", f"conmon -> {runtime} create --bundle {bundle} {cid}",
                        "runc makes the namespaces, mounts the rootfs and pivots into it, applies the cgroup, "
                        "capabilities and seccomp, then waits for start", create_trace.asked(spec or {})) as s:
            try:
                await self._spawn(argv, bundle, {"_OCI_SYNCPIPE": w_sync}, [w_sync], term_dir)
                os.close(w_sync)
                w_sync = -1
                line = await self._create_answer(cid, bundle, r_sync, timeout)
            finally:
                if w_sync >= 0:
                    os.close(w_sync)
                os.close(r_sync)  # conmon keeps its end open; we only need the first message
                _remove_term_dir(term_dir)  # runc has answered: the pty was handed over or never will be
            pid = self._pid_from_sync(line, bundle, "create")
            if trace.ENABLED:
                s.result = create_trace.observe(pid, spec or {})
        if trace.ENABLED:
            create_trace.limits(spec or {})
        return pid

    async def _create_answer(self, cid: str, bundle: Path, r_sync: int, timeout: float) -> bytes:
        """conmon's first sync message (the container's pid, or runc's error), or b"" if conmon died.

        A `runc create` killed once it has told its init to go on (chaos: a runc SIGKILLed at a random
        moment) leaves that init alive, waiting on runc's exec fifo for a `runc start` that will never
        come, and holding the container's stderr: conmon's pipe. conmon (2.1.x), seeing its runtime
        fail, reads that pipe for runc's error before it reports anything, and the read blocks as long
        as the init lives: no message, no EOF, and this create (a start, a build's RUN step) waited for
        its whole timeout with the container's lock held. Nobody but conmon, runc's parent, is told
        that runc create died, so while no answer has come conmon's children are looked at every
        _CREATE_LOOK (see _kill_left_by_create): its leftovers are killed, conmon reads EOF and exits, and
        the create fails at once."""
        loop = asyncio.get_running_loop()
        answer = loop.create_task(_read_line(r_sync, timeout))
        killed: list[int] = []
        try:
            while not answer.done():
                await asyncio.wait({answer}, timeout=_CREATE_LOOK)
                if not answer.done() and not killed:
                    killed = await self._kill_left_by_create(cid, bundle)
        finally:
            if not answer.done():
                answer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await answer
        line = answer.result()
        if killed and not line:
            pids = ", ".join(map(str, killed))
            raise RuntimeError_(f"runc create was killed before it finished: its init (pid {pids}), left waiting "
                                "for a start, was killed")
        return line

    async def _kill_left_by_create(self, cid: str, bundle: Path) -> list[int]:
        """SIGKILL what a dead `runc create` left under conmon and wait until it is gone (out of its
        cgroups too, which can then go); the pids killed ([]: nothing to do).

        While runc create runs, it is conmon's child (named for the runtime; "conmon" until it has
        exec'd), and its init and the steps before it (`runc:[N:...]`) are runc's. Once it has exited,
        its init, if alive, is conmon's (the subreaper's) child: after a success runc create has
        written its pid file first and conmon answers; without the pid file, runc create died before
        finishing and conmon waits for the init to close its stderr. The looks are inline, as
        recovery's checks are: a few procfs reads, which never wait on a disk."""
        try:
            conmon = self.conmon_pid(cid)
            if not conmon or not self.conmon_alive(cid):
                return []
            runtime = Path(self.runtime_paths.get(self._record(cid).get("runtime", "runc"), "runc")).name[:15]
        except (OSError, NotFound, ValueError):
            return []
        names = {k: procfs.comm(k) for k in procfs.children(conmon)}
        if any(n in (runtime, "conmon") for n in names.values()):
            return []  # runc create not exec'd yet, or still running
        # Only now: runc create was gone when the children were read, so its pid file is as it left it.
        # Looked at before, a create that wrote it and exited in between left its init looking orphaned
        # (a start then failed: "cannot start a container that has stopped", seen at load 27).
        if (bundle / "pidfile").exists():
            return []
        kids = [k for k, n in names.items() if n.startswith("runc:[")]
        if not kids:
            return []  # nothing of runc's left: conmon answers
        killed: dict[int, int] = {}  # pid -> pidfd
        with trace.about(f"container:{cid}"), trace.step(
                "runtime", f"kill {' '.join(map(str, kids))}: runc's init, left by a runc create that died",
                "it waits on runc's exec fifo for a start that will not come, holding conmon's stderr: "
                "conmon cannot report the failed create until it is gone") as s:
            for k in kids:
                try:
                    fd = os.pidfd_open(k)
                except OSError:
                    continue
                try:
                    if procfs.comm(k).startswith("runc:["):  # the pidfd holds the pid: still that process
                        _signal.pidfd_send_signal(fd, _signal.SIGKILL)
                        killed[k] = fd
                        continue
                except OSError:
                    pass
                os.close(fd)
            try:
                for fd in killed.values():  # a pidfd is readable once its process has exited
                    await _readable(fd)
            finally:
                for fd in killed.values():
                    os.close(fd)
            s.result = f"killed {list(killed)}"
        return list(killed)

    def _term_dir(self, name: str) -> Path:
        """A TTY conmon's private $TMPDIR (its console socket's dir), short enough for the socket."""
        return Path(tempfile.mkdtemp(prefix=f"{name[:12]}-", dir=self.term_root))

    async def _spawn(self, argv: list[str], cwd: Path, env_fds: dict[str, int], fds: list[int],
                     term_dir: Path | None = None) -> None:
        env = dict(os.environ, **{k: str(v) for k, v in env_fds.items()})
        if term_dir is not None:
            env["TMPDIR"] = str(term_dir)

        def spawn() -> None:
            with open(cwd / "conmon.log", "ab") as errlog:
                # the intermediate process exits once conmon has double-forked
                subprocess.run(argv, cwd=str(cwd), env=env, pass_fds=fds, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=errlog)
        await asyncio.get_running_loop().run_in_executor(_spawner(), spawn)

    def _pid_from_sync(self, line: bytes, bundle: Path, what: str) -> int:
        if not line:
            log = (bundle / "conmon.log").read_text(errors="replace") if (bundle / "conmon.log").exists() else ""
            raise SystemError_(f"conmon failed to {what} the container: {log.strip() or 'no output'}")
        pid, message = _parse_sync(line)
        if pid < 0:
            raise classify(runtime_message(message) or f"runtime {what} failed")
        return pid

    async def start(self, cid: str) -> None:
        if not await self._start_by_fifo(cid):
            await self._runtime(cid, "start", cid, why="runc init, waiting since create, execs the container's command")

    def _runc_state(self, cid: str) -> tuple[Path, _RuncState] | None:
        """runc's state dir and state.json of a runc container; None for another runtime or no state."""
        try:
            runtime = self._record(cid).get("runtime", "runc")
            state_dir = self.runtime_root(runtime) / cid
            state = _runc_state_decoder.decode((state_dir / "state.json").read_bytes())
        except (OSError, ValueError, NotFound):  # msgspec.DecodeError is a ValueError
            return None
        return (state_dir, state) if runtime == "runc" else None

    async def _start_by_fifo(self, cid: str) -> bool:
        """What `runc start` does for a created runc container (runc's Container.exec): open its exec
        fifo for reading, which lets the init, blocked opening it for writing, write a byte and exec the
        command (the write end is close-on-exec: EOF means the command runs), then remove the fifo (runc
        then calls the container running). ~0.2 ms, where runc start (a Go start and its state's load)
        took ~10 ms of every `run` before its command ran. Confinement is the init's, set by runc create.

        False (nothing done) where runc start should answer: another runtime, no state, no fifo (started
        already), an init that is gone. An init that dies while we wait fails as runc start's does."""
        found = self._runc_state(cid)
        if found is None or not _alive(found[1]):
            return False
        state_dir, state = found
        try:
            pidfd = os.pidfd_open(state.init_process_pid)
        except OSError:
            return False
        try:
            if not _alive(state):  # the pidfd holds the pid: still that init
                return False
            fifo = state_dir / "exec.fifo"
            try:
                fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except FileNotFoundError:
                return False
            with trace.about(f"container:{cid}"), trace.step(
                    "runtime", f"runc start's work: read {fifo}, then remove it",
                    "runc init, waiting since create on its exec fifo, execs the container's command") as s:
                try:
                    data = await _drain_fifo(fd, pidfd)
                finally:
                    os.close(fd)
                if not data:
                    s.result, s.ok = "the init exited before it was started", False
                    raise RuntimeError_("container process is already dead")
                fifo.unlink(missing_ok=True)
                s.result = f"pid {state.init_process_pid} runs the command"
        finally:
            os.close(pidfd)
        return True

    async def attach(self, cid: str) -> AttachSocket:
        try:
            return AttachSocket(connect_seqpacket(self.bundle(cid) / "attach"))
        except OSError as e:
            raise Conflict(f"cannot attach to container {cid}: {e.strerror}") from e

    def resize(self, cid: str, height: int, width: int) -> None:
        _write_ctl(self.bundle(cid) / "ctl", f"1 {height} {width}\n")

    def reopen_log(self, cid: str) -> None:
        _write_ctl(self.bundle(cid) / "ctl", "2 0 0\n")

    async def kill(self, cid: str, sig: int | str = _signal.SIGTERM, all_: bool = False) -> None:
        args = ["kill", *(["--all"] if all_ else []), cid, str(parse_signal(sig))]
        rc, _, err = await self._runtime(cid, *args, check=False, why=f"kill(2) {_signal_name(sig)} to the "
                                         "container's init (stop sends StopSignal, then SIGKILL after the timeout)")
        if rc != 0:
            msg = runtime_message(err)
            if "not running" in msg or "process already finished" in msg or "container not running" in msg:
                raise Conflict(f"Container {cid} is not running")
            raise classify(msg)

    async def pause(self, cid: str) -> None:
        await self._runtime(cid, "pause", cid, why="the freezer cgroup stops every process of the container")

    async def resume(self, cid: str) -> None:
        await self._runtime(cid, "resume", cid, why="the freezer cgroup lets the container's processes run again")

    async def update(self, cid: str, res: Any) -> None:
        """Change a running container's limits (`docker update`): `runtime update -r` with the OCI
        resources as JSON (runc's own flags are not Docker's: --cpu-share, no --cpuset-mems in some)."""
        from dockyard.runtime.spec import linux_resources

        resources = linux_resources(res)
        if not resources:
            return
        path = self.bundle(cid) / "update-resources.json"
        path.write_text(json.dumps(resources))
        try:
            await self._runtime(cid, "update", "-r", str(path), cid,
                                why=f"docker update: runc rewrites the cgroup's limit files ({resources})")
        finally:
            path.unlink(missing_ok=True)

    async def state(self, cid: str) -> dict[str, Any] | None:
        if not (self.record_dir / f"{cid}.json").exists():
            return None
        rc, out, _ = await self._runtime(cid, "state", cid, check=False)
        if rc != 0:
            return None
        state: dict[str, Any] = json.loads(out)
        return state

    async def delete(self, cid: str, force: bool = False) -> None:
        """Remove the runtime state (and its cgroup) and our records. Idempotent."""
        from dockyard.runtime import cgroups

        cgroups.forget(cid)  # files kept open by stats samples: not across the cgroup's removal
        if force and (self.record_dir / f"{cid}.json").exists():
            # what a runc create killed before it finished left (a daemon restarted since could not see
            # it happen): runc may not know the container, and its init holds conmon up. Not after a
            # create that finished (its last step wrote the pid file), where _kill_left_by_create finds
            # nothing to do, after ~0.4 ms of /proc reads with conmon still up (every `run --rm`'s exit).
            with contextlib.suppress(NotFound, ValueError):
                bundle = self.bundle(cid)
                if not (bundle / "pidfile").exists():
                    await self._kill_left_by_create(cid, bundle)
        if (self.record_dir / f"{cid}.json").exists() and not await _whole(self._delete_stopped, cid):
            rc, _, err = await self._runtime(cid, "delete", *(["--force"] if force else []), cid, check=False,
                                             why="the runtime's state and the container's cgroup go")
            left = await self._rmdir_cgroups_left(cid)
            if rc != 0 and "does not exist" not in err and "not exist" not in err and left:
                raise classify(runtime_message(err))
        cgroups.forget(cid)  # what a stats sample opened again while the thread removed the cgroups
        (self.exit_dir / cid).unlink(missing_ok=True)
        self._records.pop(cid, None)
        (self.record_dir / f"{cid}.json").unlink(missing_ok=True)

    def _delete_stopped(self, cid: str) -> bool:
        """What `runc delete` does for a container none of whose processes is left (no hooks: we set
        none): rmdir its cgroups and remove its state dir. ~1 ms, where runc (a Go start) takes ~10 ms of
        CPU and, at the end of every `run --rm`, of the client's wait. In a worker thread: each cgroup-v1
        rmdir waits for the kernel's global cgroup_mutex, 13-28 ms for the ~10 at load 11, in which the
        loop answered nothing. False, with whatever was done
        left for runc delete to finish, if the init still runs (a start that failed after create) or a
        cgroup is not empty (a process that outlived the init, e.g. with --pid host): runc kills them."""
        found = self._runc_state(cid)
        if found is None:
            return False
        state_dir, state = found
        if (state.config and state.config.has_hooks()) or _alive(state):
            return False
        paths = [p for p in (state.cgroup_paths or {}).values() if p]
        with trace.about(f"container:{cid}"), trace.step(
                "runtime", f"runc delete's work: rmdir {len(paths)} cgroups of {cid[:12]}; remove runc's state {state_dir}",
                "the container's processes are all gone: its cgroups and the runtime's state go") as s:
            for path in paths:
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    continue
                except OSError as e:  # EBUSY: a process or a child cgroup is still there
                    s.result = f"{path}: {e.strerror}: left to runc delete"
                    return False
            try:  # what runc leaves there once a container ran: its state.json alone (start took the fifo)
                (state_dir / "state.json").unlink()
                state_dir.rmdir()
            except OSError:  # more in it (never started: the fifo), or gone already
                shutil.rmtree(state_dir, ignore_errors=True)
        return True

    async def _rmdir_cgroups_left(self, cid: str) -> list[Path]:
        """The cgroup dirs runc delete left; [] once none is. runc delete removes the cgroups of a container
        it knows. One whose runc create was killed before it wrote its state.json it does not know: it
        removes the state dir and answers, with --force, success; the cgroups runc create had made stay.
        Once its processes are gone (the init is killed: see _kill_left_by_create) they are empty and go
        here. And `--force` SIGKILLs a process that outlived the init (--pid host) but cannot wait for it
        (not its child): at load ~10 it left the cgroup after runc's ~0.3 s of rmdir retries, runc failed
        with EBUSY and all the dirs stayed, empty, for good. So a busy dir is tried again, up to ~3 s."""
        from dockyard.runtime import cgroups

        path = self._cgroups_path(cid)
        if not path or ":" in path:
            return []
        left = cgroups.dirs(path)
        if left:  # each cgroup-v1 rmdir waits for the kernel's global cgroup_mutex: off the loop
            left = await asyncio.to_thread(cgroups.rmdir_until_gone, left, 3.0)
        return left

    def oom_killed(self, cid: str) -> bool:
        """The container's cgroup saw an OOM kill (call before `delete`, which removes the cgroup)."""
        from dockyard.runtime import cgroups

        path = self._cgroups_path(cid)
        return bool(path) and ":" not in path and cgroups.oom_killed(path)

    def _cgroups_path(self, cid: str) -> str:
        """linux.cgroupsPath of the container's bundle ("" without one, or without a bundle)."""
        try:
            spec = _spec_cgroup_decoder.decode((self.bundle(cid) / "config.json").read_bytes())
        except (OSError, ValueError, NotFound):  # msgspec.DecodeError (a ValidationError too) is a ValueError
            return ""
        return spec.linux.cgroupsPath if spec.linux is not None else ""

    def exit_code(self, cid: str) -> int | None:
        try:
            text = (self.exit_dir / cid).read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.lstrip("-").isdigit() else None

    async def wait_exit(self, cid: str, timeout: float | None = None, interval: float = 0.02) -> int:
        """Poll for conmon's exit file (written just after it closes the attach sockets)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            code = self.exit_code(cid)
            if code is not None:
                return code
            if deadline is not None and loop.time() > deadline:
                raise TimeoutError(f"container {cid} did not exit")
            await asyncio.sleep(interval)

    def conmon_pid(self, cid: str) -> int | None:
        try:
            return int((self.bundle(cid) / "conmon.pid").read_text().strip())
        except (FileNotFoundError, ValueError, NotFound):
            return None

    def conmon_alive(self, cid: str) -> bool:
        """The pidfile's process is live and still *our* conmon for this container (not a reused pid)."""
        pid = self.conmon_pid(cid)
        if not pid:
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
        if state in ("Z", "X") or not cmdline or not cmdline[0].endswith(b"conmon"):
            return False
        return b"-c" in cmdline and cid.encode() in cmdline

    def known(self) -> list[str]:
        """Containers we have records for (for re-adoption after a daemon restart)."""
        return sorted(p.stem for p in self.record_dir.glob("*.json"))

    # --- exec --------------------------------------------------------------------------------
    async def exec_(self, cid: str, exec_id: str, process: dict[str, Any], tty: bool = False,
                    stdin: bool = False, attach: bool = True, timeout: float = 60,
                    hold: bool = False) -> ExecSession:
        """Run `process` (an OCI process spec) in the container under its own conmon.

        With attach, conmon waits (start pipe) until we've connected its attach socket, so no
        output is lost. Returns once the process runs; `await session.wait()` gives the exit code.
        With hold (and attach) it returns attached but not yet running, pid 0: `await session.release()`.
        """
        rec = self._record(cid)
        runtime = rec.get("runtime", "runc")
        exec_dir = self.exec_root / "execs" / exec_id
        exec_dir.mkdir(parents=True, exist_ok=True)
        spec_path = exec_dir / "process.json"
        spec_path.write_text(json.dumps(process))
        # No log file: an exec's output goes to its attach socket only (dockerd keeps none either).
        argv = self._conmon_args(cid, exec_id, runtime, exec_dir, None, tty, stdin,
                                 None, exec_dir / "pidfile", None, False, None)
        argv += ["--exec", "--exec-process-spec", str(spec_path)]
        with trace.about(f"container:{cid}"):  # a step is about the object current when it is made
            step = trace.step("runtime", f"conmon -> {runtime} exec --process {spec_path} {cid}",
                              "a new process joins the container's namespaces and cgroup, with its capabilities "
                              "and seccomp filter", [f"args: {process.get('args')}",
                                                     f"user: {process.get('user')}", f"cwd: {process.get('cwd')}"])
        step.__enter__()
        r_sync, w_sync = os.pipe2(os.O_CLOEXEC)
        r_start, w_start = os.pipe2(os.O_CLOEXEC)
        r_att, w_att = os.pipe2(os.O_CLOEXEC)
        env = {"_OCI_SYNCPIPE": w_sync, "_OCI_STARTPIPE": r_start}
        child = [w_sync, r_start]
        if attach:
            argv.append("--exec-attach")
            env["_OCI_ATTACHPIPE"] = w_att
            child.append(w_att)
        sock: AttachSocket | None = None
        term_dir = self._term_dir(exec_id) if tty else None
        try:
            # conmon blocks on the start pipe before it double-forks; pre-load that first byte.
            os.write(w_start, b"0")
            try:
                await self._spawn(argv, exec_dir, env, child, term_dir)
            finally:
                for fd in child:
                    os.close(fd)
            if attach:
                line = await _read_line(r_att, timeout)
                if not line:
                    self._pid_from_sync(await _read_line(r_sync, timeout), exec_dir, "exec in")
                sock = AttachSocket(connect_seqpacket(exec_dir / "attach"))
                if hold:
                    held = ExecSession(exec_id, 0, sock, r_sync, exec_dir, term_dir)
                    term_dir = None  # the session removes it once runc has answered
                    held.trace_obj = f"container:{cid}"
                    held.hold(w_start, lambda ln: self._pid_from_sync(ln, exec_dir, "exec in"), timeout)
                    w_start = -1  # the session owns it now
                    step.result = "conmon attached, runc exec held until the client starts it"
                    step.__exit__(None, None, None)
                    return held
                os.write(w_start, b"0")  # attached: let it run the process
            pid = self._pid_from_sync(await _read_line(r_sync, timeout), exec_dir, "exec in")
            step.result = f"pid {pid}"
            step.__exit__(None, None, None)
        except BaseException as e:
            step.__exit__(type(e), e, None)
            if sock:
                sock.close()
            os.close(r_sync)
            raise
        finally:
            _remove_term_dir(term_dir)
            for fd in (w_start, r_att) if attach else (w_start, r_att, w_att):
                try:
                    os.close(fd)
                except OSError:
                    pass
        return ExecSession(exec_id, pid, sock, r_sync, exec_dir)
