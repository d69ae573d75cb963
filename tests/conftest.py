"""Shared fixtures: a real daemon on a temporary socket, the busybox fixture image, and leak checks."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import docker

# pytest loads this file as the module `conftest`, and test files import `tests.conftest` (tests/ has
# no __init__.py): make them one module, or a daemon made through the import (own_daemon) would be
# registered in a second _BASES that the leak check below never reads.
if __name__ == "conftest":
    sys.modules.setdefault("tests.conftest", sys.modules[__name__])

ROOT = Path(__file__).resolve().parent.parent
# The workspace's shared images and tools: beside the checkout, or above a worktree (/work/wt/NAME).
SHARED = Path(os.environ.get("DOCKYARD_SHARED") or next(
    (p / "shared" for p in ROOT.parents if (p / "shared" / "images").is_dir()), ROOT.parent / "shared"))
PREBUILT = SHARED / "images" / "prebuilt"
DOCKER_CLI = shutil.which("docker") or "/usr/local/bin/docker"


def oci_layout_tar(layout: Path) -> bytes:
    """An OCI image layout directory as a tarball (what `docker load` accepts)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for p in sorted(layout.rglob("*")):
            if p.name == "fixture.json":
                continue
            tf.add(p, arcname=str(p.relative_to(layout)), recursive=False)
    return buf.getvalue()


def static_binary(source: str, out_dir: Path) -> Path:
    """tests/data/<source>.c built static with gcc (scripts/setup installs gcc and libc6-dev), for
    containers whose images have no compiler and whose busybox lacks the syscall a test needs."""
    out = out_dir / source
    p = subprocess.run(["gcc", "-static", "-O1", "-o", str(out), str(ROOT / "tests" / "data" / f"{source}.c")],
                       capture_output=True)
    if p.returncode != 0:
        pytest.fail(f"cannot build tests/data/{source}.c static: {p.stderr.decode()[-300:]}")
    return out


# Base directories of every daemon this test run made: the leak check looks only at these.
_BASES: list[Path] = []


class Daemon:
    """A dockyard daemon with its own data root, exec root and socket."""

    def __init__(self, base: Path) -> None:
        _BASES.append(base)
        self.base = base
        self.data_root = base / "data"
        self.exec_root = base / "run"
        self.sock = base / "d.sock"
        self.host = f"unix://{self.sock}"
        self.log = base / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_HOST"] = self.host
        env.pop("DOCKER_CONTEXT", None)
        env["DOCKER_CONFIG"] = str(self.base / "docker-config")
        return env

    def start(self, *extra: str, recovered: bool = True) -> None:
        """Start it and wait until it answers `_ping`, and with `recovered` (the default) until it has
        recovered its containers too (it answers `_ping` before; other requests wait for that)."""
        args = [sys.executable, "-m", "dockyard.daemon.main", "-H", self.host, "--data-root", str(self.data_root),
                "--exec-root", str(self.exec_root), "--log-level", "debug", "--config-file", str(self.base / "daemon.json"),
                *extra]
        if not (self.base / "daemon.json").exists():
            (self.base / "daemon.json").write_text("{}")
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT)
        logf.close()
        self.wait_ready(recovered=recovered)

    def wait_ready(self, timeout: float = 30, recovered: bool = True) -> None:
        wait_for_ping(self.sock, self.proc, self.log, timeout)
        if recovered:  # any request but _ping waits for the recovery
            import httpx

            try:
                with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.sock)), timeout=timeout) as c:
                    c.get("http://d/version").raise_for_status()
            except httpx.HTTPError as e:
                raise RuntimeError(f"daemon did not recover: {e}\n{self.log.read_text()[-4000:]}") from e

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None

    def api(self):  # type: ignore[no-untyped-def]
        import httpx

        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.sock)), base_url="http://d", timeout=60)

    def docker(self, *args: str, input: bytes | None = None, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        """The real docker CLI against this daemon."""
        p = subprocess.run([DOCKER_CLI, *args], env=self.env, input=input, capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {p.returncode}\nstdout: {p.stdout!r}\nstderr: {p.stderr!r}")
        return p

    def dockyard(self, *args: str, input: bytes | None = None, check: bool = True,
                 timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        """Our own CLI against this daemon."""
        p = subprocess.run([sys.executable, "-m", "dockyard.cli.main", *args], env=self.env, input=input,
                           capture_output=True, timeout=timeout, cwd=ROOT)
        if check and p.returncode != 0:
            raise AssertionError(f"dockyard {' '.join(args)} -> {p.returncode}\nstdout: {p.stdout!r}\nstderr: {p.stderr!r}")
        return p

    def load_busybox(self) -> None:
        with self.api() as c:
            r = c.post("/images/load", content=oci_layout_tar(PREBUILT / "busybox"),
                       headers={"Content-Type": "application/x-tar"})
            assert r.status_code == 200, r.text
            # The OCI layout names it `latest`; give it the name tests use.
            for ref in ("busybox:latest",):
                if c.get(f"/images/{ref}/json").status_code != 200:
                    imgs = c.get("/images/json").json()
                    assert imgs, "load produced no image"
                    c.post(f"/images/{imgs[0]['Id']}/tag", params={"repo": "busybox", "tag": "latest"})

    def cleanup_containers(self) -> None:
        with self.api() as c:
            for ctr in c.get("/containers/json", params={"all": "1"}).json():
                c.delete(f"/containers/{ctr['Id']}", params={"force": "1", "v": "1"})

    def teardown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.cleanup_containers()
                with self.api() as c:
                    for net in c.get("/networks").json():
                        if net["Name"] not in ("bridge", "host", "none"):
                            c.delete(f"/networks/{net['Id']}")
            except Exception:  # noqa: BLE001 - teardown goes on regardless
                pass
        self.stop()
        host_cleanup(self)


def host_cleanup(d: Daemon) -> None:
    """Remove what a daemon made on the host: its bridge, nft table, mounts, cgroups."""
    from dockyard.daemon.config import DaemonConfig
    from dockyard.daemon.wiring import instance_id

    iid = instance_id(DaemonConfig(data_root=d.data_root))
    subprocess.run(["nft", "delete", "table", "inet", f"dockyard_{iid}"], capture_output=True)
    subprocess.run(["nft", "delete", "table", "ip", f"dockyard_{iid}"], capture_output=True)
    subprocess.run(["ip", "link", "del", f"dy{iid}"[:15]], capture_output=True)
    # FORWARD accepts the network service adds next to a DROP policy (a daemon killed mid-test leaves them).
    rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout.splitlines()
    for rule in rules:
        if f"dockyard:dockyard_{iid}" in rule and rule.startswith("-A "):
            subprocess.run(["iptables", "-D", *shlex.split(rule)[1:]], capture_output=True)
    base = str(d.base)
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    for m in sorted((m for m in mounts if m.startswith(base)), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    shutil.rmtree(d.base, ignore_errors=True)


@contextlib.contextmanager
def own_daemon(prefix: str = "dy-", *args: str, busybox: bool = True) -> Iterator[Daemon]:
    """A daemon of the caller's own (its roots, socket, bridge and nft table), started with `args`,
    with busybox loaded; torn down after, restarted first if the test left it stopped (teardown
    removes containers and networks through its API). The one way tests make a daemon."""
    if os.geteuid() != 0:
        pytest.fail("a daemon of our own needs root (it runs real containers)")
    d = Daemon(Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")))
    try:
        d.start(*args)
        if busybox:
            d.load_busybox()
        yield d
    finally:
        if d.proc is None:
            with contextlib.suppress(RuntimeError):
                d.start(*args)
        d.teardown()


@pytest.fixture(scope="session")
def daemon() -> Iterator[Daemon]:
    with own_daemon() as d:
        yield d


@pytest.fixture()
def clean_daemon(daemon: Daemon) -> Iterator[Daemon]:
    """The shared daemon, with every container the test made removed afterwards."""
    yield daemon
    daemon.cleanup_containers()


@pytest.fixture(scope="session")
def real_dockerd() -> Iterator[str]:
    """A private real dockerd (the reference), started with the peers script and stopped at the end.

    `--bridge=none --iptables=false`: it must not depend on (or touch) a docker0 bridge or firewall
    rules that other daemons on the host own. Its DOCKER_HOST comes from DOCKYARD_TEST_DOCKERD when set.
    """
    if os.environ.get("DOCKYARD_TEST_DOCKERD"):
        yield os.environ["DOCKYARD_TEST_DOCKERD"]
        return
    peers = SHARED / "peers"
    state = f"/tmp/peer/dy-tests-{os.getpid()}"
    env = {**os.environ, "DOCKERD_EXTRA_ARGS": f"--exec-root {state}-exec --bridge=none --iptables=false"}
    # With --iptables=false dockerd adds no FORWARD accepts; where the policy is DROP (a dockerd ran here
    # before), bridged traffic between its containers would be dropped. Let its bridges through meanwhile.
    accepts = [["FORWARD", "-i", "br-+", "-m", "comment", "--comment", f"dy-tests-{os.getpid()}", "-j", "ACCEPT"],
               ["FORWARD", "-o", "br-+", "-m", "comment", "--comment", f"dy-tests-{os.getpid()}", "-j", "ACCEPT"]]
    for rule in accepts:
        subprocess.run(["iptables", "-I", *rule], capture_output=True)
    r = subprocess.run([str(peers / "start-dockerd"), state], capture_output=True, text=True, env=env, timeout=300)
    try:
        if r.returncode != 0:
            pytest.fail(f"the real dockerd could not start: {r.stderr.strip()[-400:]}")
        yield r.stdout.strip().splitlines()[-1]
    finally:
        for rule in accepts:
            subprocess.run(["iptables", "-D", *rule], capture_output=True)
        subprocess.run([str(peers / "stop-dockerd"), state], capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(f"{state}-exec", ignore_errors=True)
        for leftover in (f"{state}d.log", f"{state}.pid", f"{state}.sock"):
            Path(leftover).unlink(missing_ok=True)


class Engines:
    """Our daemon and the real dockerd through the same docker-py client: the conformance tests' pair.

    `ours`/`ref` are the low-level APIClients, `clients` the DockerClients by engine name. What a test
    makes through `create` and `tag`, or labels with `labels`, is removed from both at the end."""

    LABEL = "dockyard.test.parity"

    def __init__(self, ours: str, ref: str, version: str | None = "1.41", timeout: int = 300) -> None:
        import docker

        self.clients = {"dockyard": docker.DockerClient(base_url=ours, version=version, timeout=timeout),
                        "dockerd": docker.DockerClient(base_url=ref, version=version, timeout=timeout)}
        self.ours, self.ref = self.clients["dockyard"].api, self.clients["dockerd"].api
        self.run_id = uuid.uuid4().hex[:12]
        self.labels = {self.LABEL: self.run_id}
        self._containers: list[tuple[docker.APIClient, str]] = []
        self._tags: list[tuple[docker.APIClient, str]] = []

    def both(self, fn: Callable[[docker.APIClient], Any]) -> tuple[Any, Any]:
        """fn on our daemon, then on dockerd: (ours, dockerd's)."""
        return fn(self.ours), fn(self.ref)

    def both_docker(self, fn: Callable[[docker.DockerClient], Any]) -> tuple[Any, Any]:
        """fn on dockerd's DockerClient, then on ours: (ours, dockerd's)."""
        ref = fn(self.clients["dockerd"])
        return fn(self.clients["dockyard"]), ref

    def create(self, c: docker.APIClient, image: str = "busybox", **kw: Any) -> str:
        cid: str = c.create_container(image, **kw)["Id"]
        self._containers.append((c, cid))
        return cid

    def tag(self, c: docker.APIClient) -> str:
        t = f"dy-bp-{uuid.uuid4().hex[:10]}"
        self._tags.append((c, t))
        return t

    def close(self) -> None:
        import docker.errors

        labelled = [(c.api, ctr["Id"]) for c in self.clients.values()
                    for ctr in c.api.containers(all=True, filters={"label": f"{self.LABEL}={self.run_id}"})]
        for c, cid in self._containers + labelled:
            with contextlib.suppress(docker.errors.NotFound):
                c.remove_container(cid, force=True, v=True)
        for c, t in self._tags:
            with contextlib.suppress(docker.errors.APIError):
                c.remove_image(t, force=True)
        for dc in self.clients.values():
            dc.close()


@pytest.fixture()
def engines(daemon: Daemon, real_dockerd: str, request: pytest.FixtureRequest) -> Iterator[Engines]:
    """The pair on the shared daemon and the reference dockerd; a module may set ENGINES_API_VERSION
    (None: docker-py negotiates)."""
    e = Engines(daemon.host, real_dockerd, version=getattr(request.module, "ENGINES_API_VERSION", "1.41"))
    try:
        yield e
    finally:
        e.close()


@pytest.fixture()
def registry(tmp_path: Path) -> Iterator[str]:
    """Our registry server (`dockyard registry serve`) on a free loopback port: its host:port, stopped after."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.registry.server", "serve", "--addr", f"127.0.0.1:{port}",
                             "--root", str(tmp_path / "reg")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None and "listening" in proc.stdout.readline().decode()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def wait_for_ping(sock: Path, proc: subprocess.Popen[bytes] | None, log: Path, timeout: float,
                  what: str = "daemon", every: float = 0.05) -> None:
    """Until a daemon answers `_ping` on its unix socket; its log's tail in the error if it exits or never answers."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=2) as c:
                if c.get("http://d/_ping").status_code == 200:
                    return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(every)
    raise RuntimeError(f"{what} did not answer /_ping:\n{log.read_text()[-4000:]}")


def processes_named(exe: str, base: Path) -> dict[int, list[bytes]]:
    """Processes whose program is `exe` and whose command line mentions `base` (a daemon's dirs): pid -> argv."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(exe.encode()) and any(str(base).encode() in a for a in cmd):
            out[int(pid)] = cmd
    return out


def flock_waiter(path: os.PathLike[str], pid: int) -> bool:
    """Process `pid` is blocked on a flock of `path` (a "->" waiter row of /proc/locks)."""
    inode = os.stat(path).st_ino
    with open("/proc/locks") as f:
        for row in f:
            words = row.split()
            if "->" in words and words[words.index("->") + 4] == str(pid) \
                    and words[words.index("->") + 5].endswith(f":{inode}"):
                return True
    return False


def conmon_pids_for(base: Path) -> list[int]:
    return list(processes_named("conmon", base))


def _favordynmods() -> bool | None:
    from dockyard.runtime.cgroup_tuning import cgroup2_mount

    m = cgroup2_mount()
    return None if m is None else m.favored


# The suite's daemons turn on cgroup2 favordynmods (runtime/cgroup_tuning.py): put it back as found.
_FAVORDYNMODS_AT_START = _favordynmods()


def dockyard_cgroups() -> set[str]:
    """Every cgroup below the containers' parent (/dockyard, services/containers.py) in each hierarchy."""
    found: set[str] = set()
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for dirpath, dirnames, _ in os.walk(hierarchy / "dockyard"):
            found.update(os.path.join(dirpath, d) for d in dirnames)
    return found


def _no_process_in(cgroup: str) -> bool:
    for dirpath, _, _ in os.walk(cgroup):
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                if f.read().strip():
                    return False
        except OSError:  # removed meanwhile
            pass
    return True


def empty_cgroups_since(before: set[str]) -> list[str]:
    """Cgroups made after `before` was taken that hold no process: a container's, left behind (runc
    delete's work is ours for a stopped container). Checked twice, 2 s apart: a container of a
    concurrent daemon (the docker-py stage's) may be between its exit and its cleanup."""
    left = [c for c in dockyard_cgroups() - before if _no_process_in(c)]
    if left:
        time.sleep(2)
        left = [c for c in left if os.path.isdir(c) and _no_process_in(c)]
    return sorted(left, key=len, reverse=True)


_CGROUPS_AT_START = dockyard_cgroups()

# Test files that change or lean on host-global state: they never run beside other tests. With
# DOCKYARD_TEST_WORKERS=N, scripts/test runs the rest on N pytest-xdist workers (`-m "not serial"`),
# then these in a pytest of their own (`-m serial`). Path below tests/ -> why.
SERIAL = {
    "integration/test_cgroup_tuning.py": "turns the host's cgroup2 favordynmods off and on",
    "integration/test_rootless.py": "adds users, their /etc/subuid and /etc/subgid lines, /dev/net/tun's mode",
    "integration/test_subnet_pick.py": "holds the host's subnet lock and makes a bridge on the subnet a daemon picks",
    "integration/test_subnet_shadow.py": "makes bridges whose routes shadow a daemon's stored subnets",
    "integration/test_kube_podman.py": "podman's CNI bridge (a fixed name and subnet) and its iptables chains",
    "integration/test_full_disk.py": "fills a loop-mounted disk (and a daemon's restarts on it) with real writes",
    "integration/test_snapshot_no_room.py": "a tmpfs out of inodes: the kernel's ENOSPC at one moment",
    "integration/test_daemon_restart.py": "daemon crashes and restarts, timed against containers' exits",
    "integration/test_crash_cut_short.py": "daemon crashes timed into an operation's middle",
    "integration/test_runc_create_killed.py": "runc create killed at a chosen moment, within fixed waits",
    "integration/test_recover_freezer.py": "a kill -9 and the recovery of paused containers",
    "integration/test_unsynced_layers.py": "daemon kills before the page cache is synced",
}
# The pytest-xdist worker this process is, if it is one (then the controller gathers its leak report).
WORKER = os.environ.get("PYTEST_XDIST_WORKER")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    files = {item: item.path.relative_to(ROOT / "tests").as_posix() for item in items}
    for item, file in files.items():
        if file in SERIAL:
            item.add_marker(pytest.mark.serial)
    # --dist loadgroup (xdist sets this option in its workers, where it collects): a file's tests stay
    # on one worker (its module-scoped fixtures, daemons and fixed addresses, exist once), and every
    # file with a test of the reference dockerd goes to one worker, so one dockerd runs, as in a
    # serial run (dockerd picks its networks' subnets without looking at the host's routes).
    if getattr(config.option, "loadgroup", False) or config.getoption("dist", "no") == "loadgroup":
        with_dockerd = {file for item, file in files.items() if "real_dockerd" in getattr(item, "fixturenames", ())}
        for item, file in files.items():
            item.add_marker(pytest.mark.xdist_group("real-dockerd" if file in with_dockerd else file))


def _leaks() -> str:
    """This process's leaks, cleaned up: mounts under its daemons' bases and their conmon monitors; in
    the controller or a serial run also empty container cgroups (not in a worker: another worker's
    container may be between its exit and its cleanup)."""
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    leaked = [m for m in mounts if any(m == str(b) or m.startswith(f"{b}/") for b in _BASES)]
    monitors = [pid for b in _BASES for pid in conmon_pids_for(b)]
    cgroups = [] if WORKER else empty_cgroups_since(_CGROUPS_AT_START)
    for c in cgroups:  # the deepest first; then the host is clean again
        with contextlib.suppress(OSError):
            os.rmdir(c)
    if not (leaked or monitors or cgroups):
        return ""
    return (f"LEAK{f' ({WORKER})' if WORKER else ''}: mounts left behind: {leaked}; conmon monitors still running: "
            f"{monitors}; empty container cgroups left: {len(cgroups)} {cgroups[:10]}")


_WORKER_LEAKS: list[str] = []


@pytest.hookimpl(optionalhook=True)  # xdist's hook: unknown without it
def pytest_testnodedown(node: Any, error: object) -> None:
    """(xdist's controller) a worker is done: keep its leak report."""
    leak = getattr(node, "workeroutput", {}).get("dockyard_leaks")
    if leak:
        _WORKER_LEAKS.append(leak)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A leak is a failure: no dockyard mounts or monitors may outlive the suite (in a worker: its
    part of it, reported to the controller, which fails the run)."""
    from tests.subnets import release_subnets

    release_subnets()
    # the controller's (or a serial run's) to restore: a worker's daemons are not the last
    if not WORKER and _FAVORDYNMODS_AT_START is not None and _favordynmods() != _FAVORDYNMODS_AT_START:
        from dockyard.runtime.cgroup_tuning import set_favordynmods

        print(f"\ncgroup tuning restored: {set_favordynmods(_FAVORDYNMODS_AT_START)}", file=sys.stderr)
    leaks = [*_WORKER_LEAKS, _leaks()]
    if WORKER:
        session.config.workeroutput["dockyard_leaks"] = "\n".join(filter(None, leaks))  # type: ignore[attr-defined]
    elif any(leaks):
        print("\n" + "\n".join(filter(None, leaks)), file=sys.stderr)
        session.exitstatus = 1


def docker_json(p: subprocess.CompletedProcess[bytes]) -> object:
    return json.loads(p.stdout)
