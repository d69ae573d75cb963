"""Runtime adapter against the real kernel: runc under conmon, busybox rootfs (needs root)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.runtime import cgroups
from dockyard.runtime.exits import ExitWatcher
from dockyard.runtime.monitor import ExecNotFound, Monitor
from dockyard.runtime.spec import Resources, SpecInput, build_spec
from tests.conftest import SHARED

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

BUSYBOX = SHARED / "images" / "prebuilt" / "busybox"
RUNC = "/usr/sbin/runc"


def _busybox_layer() -> Path:
    index = json.loads((BUSYBOX / "index.json").read_text())
    manifest = json.loads((BUSYBOX / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text())
    return BUSYBOX / "blobs/sha256" / manifest["layers"][0]["digest"].split(":")[1]


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("busybox") / "rootfs"
    root.mkdir()
    subprocess.run(["tar", "-xzf", str(_busybox_layer()), "-C", str(root)], check=True)
    return root


class Env:
    def __init__(self, tmp: Path, rootfs: Path) -> None:
        self.tmp, self.rootfs = tmp, rootfs
        self.exec_root = tmp / "exec"
        self.monitor = Monitor(self.exec_root, {"runc": RUNC})
        self.cids: list[str] = []

    def bundle(self, cid: str, args: list[str], **kw: Any) -> Path:
        self.cids.append(cid)
        b = self.tmp / cid
        b.mkdir()
        spec = build_spec(SpecInput(rootfs=str(self.rootfs), args=args, cgroups_path=self.cgroup(cid), **kw))
        (b / "config.json").write_text(json.dumps(spec))
        return b

    def cgroup(self, cid: str) -> str:
        return f"/dockyard-test/{cid}"

    async def run(self, cid: str, args: list[str], stdin: bytes | None = None, **kw: Any
                  ) -> tuple[list[tuple[int, bytes]], int]:
        b = self.bundle(cid, args, stdin=stdin is not None, **kw)
        await self.monitor.create(cid, b, log_path=str(b / "ctr.log"), stdin=stdin is not None)
        att = await self.monitor.attach(cid)
        await self.monitor.start(cid)
        if stdin is not None:
            await att.send(stdin)
            att.close_stdin()
        frames = [f async for f in att.frames()]
        att.close()
        return frames, await self.monitor.wait_exit(cid, timeout=30)

    def cleanup(self) -> None:
        root = str(self.monitor.runtime_root("runc"))
        for cid in self.cids:
            subprocess.run([RUNC, "--root", root, "delete", "--force", cid], capture_output=True)
            if self.monitor.conmon_alive(cid):
                pid = self.monitor.conmon_pid(cid)
                assert pid
                os.kill(pid, signal.SIGKILL)
            assert cgroups.remove(self.cgroup(cid)) == []
        for d in cgroups.dirs("/dockyard-test"):
            d.rmdir()  # fails loudly if a test leaked a container cgroup


@pytest.fixture
def env(tmp_path: Path, rootfs: Path) -> Iterator[Env]:
    e = Env(tmp_path, rootfs)
    yield e
    e.cleanup()
    assert not list(Path("/sys/fs/cgroup").glob("*/dockyard-test/*/")), "leaked cgroup dirs"


def out(frames: list[tuple[int, bytes]], stream: int = 1) -> bytes:
    return b"".join(d for s, d in frames if s == stream)


def test_echo_output_exit_code_and_log(env: Env) -> None:
    async def go() -> None:
        frames, code = await env.run("echo1", ["echo", "hi"])
        assert frames == [(1, b"hi\n")] and code == 0
        log = (env.tmp / "echo1" / "ctr.log").read_text()
        assert log.endswith(" stdout F hi\n")
        state = await env.monitor.state("echo1")
        assert state and state["status"] == "stopped"
        await env.monitor.delete("echo1")
        assert await env.monitor.state("echo1") is None
        assert not cgroups.dirs(env.cgroup("echo1")), "runc delete removes the cgroup"

        frames, code = await env.run("exit3", ["sh", "-c", "echo err >&2; exit 3"])
        assert frames == [(2, b"err\n")] and code == 3

        t0 = time.monotonic()
        _, code = await env.run("lat", ["true"])
        print(f"\ncreate+start -> exit latency for `true`: {(time.monotonic() - t0) * 1000:.1f} ms")
        assert code == 0
    asyncio.run(go())


def test_create_error_message(env: Env) -> None:
    async def go() -> None:
        b = env.bundle("bad", ["nosuch"])
        with pytest.raises(ExecNotFound) as ei:
            await env.monitor.create("bad", b, log_path=str(b / "ctr.log"))
        assert 'exec: "nosuch": executable file not found in $PATH' in ei.value.message
    asyncio.run(go())


def test_stdin_half_close(env: Env) -> None:
    async def go() -> None:
        frames, code = await env.run("cat", ["sh", "-c", "cat; echo done"], stdin=b"x" * 10000 + b"\nline\n")
        assert out(frames) == b"x" * 10000 + b"\nline\ndone\n" and code == 0
    asyncio.run(go())


def test_tty_and_resize(env: Env) -> None:
    async def go() -> None:
        b = env.bundle("tty", ["sh", "-c", "read x; stty size; tty"], tty=True, stdin=True)
        await env.monitor.create("tty", b, log_path=str(b / "ctr.log"), tty=True, stdin=True)
        att = await env.monitor.attach("tty")
        await env.monitor.start("tty")
        env.monitor.resize("tty", 33, 99)
        await asyncio.sleep(0.1)  # let conmon apply the size before the shell reads it
        await att.send(b"go\n")
        frames = [f async for f in att.frames()]
        assert {s for s, _ in frames} == {1}  # a tty has one stream
        text = out(frames)
        assert b"33 99\r\n" in text and b"/dev/pts/0" in text
        assert await env.monitor.wait_exit("tty", 30) == 0
    asyncio.run(go())


def test_kill_pause_resume_exec(env: Env) -> None:
    async def go() -> None:
        m = env.monitor
        # PID 1 ignores signals it has no handler for, so give the shell one.
        b = env.bundle("svc", ["sh", "-c", "trap 'exit 7' TERM; sleep 300 & wait"])
        pid = await m.create("svc", b, log_path=str(b / "ctr.log"))
        await m.start("svc")
        assert pid > 0 and m.exit_code("svc") is None and m.conmon_alive("svc")

        await m.pause("svc")
        assert (await m.state("svc") or {})["status"] == "paused"
        await m.resume("svc")
        assert (await m.state("svc") or {})["status"] == "running"

        proc = json.loads((b / "config.json").read_text())["process"]
        sess = await m.exec_("svc", "ex1", {**proc, "args": ["sh", "-c", "echo o; echo e >&2; cat; exit 4"]},
                             stdin=True)
        assert sess.attach is not None
        await sess.attach.send(b"in\n")
        sess.attach.close_stdin()
        frames = [f async for f in sess.attach.frames()]
        assert out(frames, 1) == b"o\nin\n" and out(frames, 2) == b"e\n"
        assert await sess.wait(30) == 4
        sess.cleanup()
        with pytest.raises(ExecNotFound):
            await m.exec_("svc", "ex2", {**proc, "args": ["nosuch"]})

        sample = cgroups.sample(env.cgroup("svc"))
        assert sample.memory_usage and sample.pids_current and sample.pids_current >= 1 and sample.cpu_total_ns > 0

        await m.kill("svc", "TERM")
        assert await m.wait_exit("svc", 30) == 7
        await m.delete("svc")
        assert not m.conmon_alive("svc")
    asyncio.run(go())


def test_seccomp_and_user(env: Env) -> None:
    async def go() -> None:
        script = "unshare -U true; echo unshare=$?; mkdir -p /mnt/x; mount -t tmpfs t /mnt/x; echo mount=$?"
        frames, _ = await env.run("sec", ["sh", "-c", script])
        assert b"unshare=1" in out(frames) and b"mount=1" in out(frames)
        assert b"Operation not permitted" in out(frames, 2)
        frames, _ = await env.run("usr", ["id"], user="nobody")
        assert out(frames).startswith(b"uid=65534(nobody) gid=65534(nogroup)")
        frames, _ = await env.run("usr2", ["id"], user="33:100")
        assert out(frames).startswith(b"uid=33(www-data) gid=100(users)")
        frames, _ = await env.run("lim", ["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
                                  resources=Resources(memory=64 << 20, pids_limit=50))
        assert out(frames) == b"67108864\n"
    asyncio.run(go())


def test_init_and_exit_watcher(env: Env) -> None:
    async def go() -> None:
        (env.monitor.exit_dir / "old").write_text("9")  # a container that died while we were down
        watcher = ExitWatcher(env.monitor.exit_dir)
        seen: list[str] = []

        async def watch() -> None:
            async for cid in watcher:
                seen.append(cid)
        task = asyncio.create_task(watch())
        frames, code = await env.run("init", ["sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"], init=True)
        assert out(frames).startswith(b"/sbin/docker-init -- sh") and code == 0
        while "init" not in seen:
            await asyncio.sleep(0.02)
        watcher.stop()
        await task
        assert seen[0] == "old"
        (env.monitor.exit_dir / "old").unlink()
    asyncio.run(go())


def test_container_outlives_its_starter(env: Env) -> None:
    """Create+start from a separate Python process that then exits: conmon keeps the container."""
    b = env.bundle("orphan", ["sleep", "300"])
    code = textwrap.dedent(f"""
        import asyncio
        from dockyard.runtime.monitor import Monitor
        async def main():
            m = Monitor({str(env.exec_root)!r}, {{"runc": {RUNC!r}}})
            await m.create("orphan", {str(b)!r}, log_path={str(b / "ctr.log")!r})
            await m.start("orphan")
        asyncio.run(main())
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

    async def go() -> None:
        m = Monitor(env.exec_root, {"runc": RUNC})  # a "restarted daemon"
        assert "orphan" in m.known() and m.conmon_alive("orphan")
        assert (await m.state("orphan") or {})["status"] == "running"
        pid = m.conmon_pid("orphan")
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert ppid != os.getpid()
        await m.kill("orphan", signal.SIGKILL)
        assert await m.wait_exit("orphan", 30) == 137
        await m.delete("orphan")
    asyncio.run(go())
