"""Rootless mode (issue 17) as a user would meet it: a throw-away ordinary user with subordinate ids
(given by `dockyard rootless setup --apply`), `dockyard daemon` started by that user through runuser
with no flag, and the real docker CLI (and docker-compose) run as that user against it.

Everything made here goes at the end: the daemon, every process of the user (by pid), the user with
its home and /etc/subuid and /etc/subgid lines, the registry, /dev/net/tun's mode if the fixture had
to change it. The daemon's mounts, netns and nft table live in its own namespaces and go with them."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DOCKER_CLI, PREBUILT, ROOT, SHARED, oci_layout_tar, wait_for_ping

VENV = Path(os.environ.get("DOCKYARD_USER_VENV", "/opt/dockyard/venv-user"))
IMAGES = SHARED / "images"
PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _uid_pids(uid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    out.append(int(d))
            except OSError:
                pass
    return out


class RootlessUser:
    def __init__(self, base: Path, name: str) -> None:
        self.base = base
        self.name = name
        self.home = base / "home"
        self.run_dir = base / "run"  # the user's XDG_RUNTIME_DIR (no login session makes /run/user/UID here)
        self.src = base / "src"  # this checkout's dockyard package, readable by the user
        self.sock = self.run_dir / "dockyard.sock"
        self.log = base / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.uid = self.gid = -1
        self.registry = ""

    def env(self, **extra: str) -> list[str]:
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name, "PATH": PATH,
               "XDG_RUNTIME_DIR": str(self.run_dir), "PYTHONPATH": str(self.src), **extra}
        return ["env", "-i", *(f"{k}={v}" for k, v in env.items())]

    def run(self, *argv: str, check: bool = True, timeout: float = 180, input: bytes | None = None,
            cwd: Path | None = None, **extra: str) -> subprocess.CompletedProcess[bytes]:
        p = subprocess.run(["runuser", "-u", self.name, "--", *self.env(**extra), *argv], input=input,
                           capture_output=True, timeout=timeout, cwd=cwd or self.home)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> {p.returncode}\nstdout: {p.stdout!r}\nstderr: {p.stderr!r}")
        return p

    def docker(self, *args: str, check: bool = True, **kw: object) -> subprocess.CompletedProcess[bytes]:
        """The real docker CLI, as the user, against the user's daemon."""
        return self.run(DOCKER_CLI, *args, check=check, DOCKER_HOST=f"unix://{self.sock}",
                        DOCKER_CONFIG=str(self.home / ".docker"), **kw)  # type: ignore[arg-type]

    def dockyard(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Our CLI, as the user, with no DOCKER_HOST: it must find the user's socket itself."""
        return self.run(str(VENV / "bin" / "python"), "-m", "dockyard.cli.main", *args, check=check)

    def start(self, **env: str) -> None:
        logf = open(self.log, "ab")
        # `dockyard daemon` with no flag; host loopback open so the daemon reaches the test's registry
        # (at 10.0.2.2, slirp4netns's address for the host's 127.0.0.1).
        self.proc = subprocess.Popen(
            ["runuser", "-u", self.name, "--",
             *self.env(DOCKYARD_ROOTLESS_DISABLE_HOST_LOOPBACK="false", **env),
             str(VENV / "bin" / "python"), "-m", "dockyard.cli.main", "daemon", "--log-level", "info"],
            stdout=logf, stderr=subprocess.STDOUT, cwd=self.home)
        logf.close()
        wait_for_ping(self.sock, self.proc, self.log, 60, what="rootless daemon", every=0.1)

    def daemon_pid(self) -> int | None:
        for pid in _uid_pids(self.uid):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"dockyard.daemon.main" in cmd and not any(b"rootlesskit" in a or a == b"/proc/self/exe" for a in cmd):
                return pid
        return None

    def stop(self) -> None:
        pid = self.daemon_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


def _setup_user(base: Path) -> RootlessUser:
    name = "dyrl" + secrets.token_hex(3)
    u = RootlessUser(base, name)
    # No subordinate ids from useradd: `dockyard rootless setup --apply` is to give them.
    subprocess.run(["useradd", "--home-dir", str(u.home), "--create-home", "--shell", "/bin/sh",
                    "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name], check=True, capture_output=True)
    pw = pwd.getpwnam(name)
    u.uid, u.gid = pw.pw_uid, pw.pw_gid
    u.run_dir.mkdir(mode=0o700)
    os.chown(u.run_dir, u.uid, u.gid)
    shutil.copytree(ROOT / "dockyard", u.src / "dockyard", ignore=shutil.ignore_patterns("__pycache__"))
    for p in [u.base, u.src, *u.src.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if p.is_dir() else 0))
    return u


def _remove_user(u: RootlessUser) -> None:
    """The daemon, every process of the user (conmon and containers a failed test left), the user with
    its home, its /etc/subuid and /etc/subgid lines; then check that nothing of it is left."""
    u.stop()
    for pid in _uid_pids(u.uid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while _uid_pids(u.uid) and time.monotonic() < deadline:
        time.sleep(0.1)
    subprocess.run(["userdel", "--remove", u.name], capture_output=True)
    for f in ("/etc/subuid", "/etc/subgid"):
        lines = Path(f).read_text().splitlines(keepends=True)
        kept = [ln for ln in lines if not ln.startswith(f"{u.name}:")]
        if kept != lines:
            Path(f).write_text("".join(kept))
    assert not _uid_pids(u.uid), "processes of the rootless user are left"
    assert u.name not in Path("/etc/passwd").read_text()
    assert f"{u.name}:" not in Path("/etc/subuid").read_text()


def _load_busybox(u: RootlessUser) -> None:
    tar = u.base / "busybox.tar"
    tar.write_bytes(oci_layout_tar(PREBUILT / "busybox"))
    tar.chmod(0o644)
    loaded = u.docker("load", "-i", str(tar)).stdout.decode()
    u.docker("tag", loaded.split("sha256:")[1].split()[0], "busybox:latest")


def _get(url: str, limit: float = 20) -> bytes:
    """The body at url once it answers (a published port is there when the container's server is)."""
    deadline = time.monotonic() + limit
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return bytes(r.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def rl() -> Iterator[RootlessUser]:
    if os.geteuid() != 0:
        pytest.fail("the rootless tests make a user: run them as root")
    for tool in ("rootlesskit", "slirp4netns", "newuidmap", "runuser"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} missing: run scripts/setup")
    if not (VENV / "bin" / "python").exists():
        pytest.fail(f"{VENV} missing: run scripts/setup (scripts/setup-user-venv)")
    base = Path(tempfile.mkdtemp(prefix="rootless-", dir="/tmp"))
    tun_mode = stat.S_IMODE(os.stat("/dev/net/tun").st_mode)
    port = _free_port()
    storage = base / "registry"
    u: RootlessUser | None = None
    try:
        u = _setup_user(base)
        # The setup command, as the user would run it: it sees what is missing and, with --apply, fixes it.
        before = u.run(str(VENV / "bin" / "python"), "-m", "dockyard.cli.main", "rootless", "setup", check=False)
        assert before.returncode == 1, before
        assert b"/etc/subuid" in before.stdout and b"MISSING" in before.stdout, before.stdout
        assert b"sudo usermod --add-subuids" in before.stdout, before.stdout
        applied = subprocess.run([str(VENV / "bin" / "python"), "-m", "dockyard.cli.main", "rootless", "setup",
                                  "--apply", "--user", u.name], capture_output=True, cwd="/",
                                 env={"PATH": PATH, "PYTHONPATH": str(u.src)})
        assert applied.returncode == 0, applied
        after = u.run(str(VENV / "bin" / "python"), "-m", "dockyard.cli.main", "rootless", "setup")
        assert b"MISSING" not in after.stdout, after.stdout
        # The daemon reads ~/.config/dockyard/daemon.json: the test's registry, reached at 10.0.2.2.
        u.registry = f"10.0.2.2:{port}"
        u.run("mkdir", "-p", str(u.home / ".config" / "dockyard"))
        u.run("sh", "-c", f"echo '{json.dumps({'insecure-registries': [u.registry]})}' > "
                          f"{u.home}/.config/dockyard/daemon.json")
        subprocess.run([str(IMAGES / "serve-registry"), "--port", str(port), "--dir", str(storage), "nginx"], check=True, capture_output=True, timeout=300)
        u.start()
        _load_busybox(u)
        yield u
    finally:
        if u is not None:
            _remove_user(u)
        subprocess.run([str(IMAGES / "stop-registry"), "--port", str(port), "--dir", str(storage)],
                       capture_output=True)
        os.chmod("/dev/net/tun", tun_mode)
        shutil.rmtree(base, ignore_errors=True)


def _subid_start(u: RootlessUser) -> int:
    for line in Path("/etc/subuid").read_text().splitlines():
        name, start, _count = line.split(":")
        if name == u.name:
            return int(start)
    raise AssertionError("no subuid range")


def test_defaults_follow_xdg_and_the_cli_finds_the_socket(rl: RootlessUser) -> None:
    st = os.stat(rl.sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == rl.uid
    data = rl.home / ".local" / "share" / "dockyard"
    assert (data / "dockyard.db").exists() and os.stat(data / "dockyard.db").st_uid == rl.uid
    # No DOCKER_HOST: our CLI finds $XDG_RUNTIME_DIR/dockyard.sock (the user cannot use /run/dockyard.sock).
    info = json.loads(rl.dockyard("info", "--format", "{{json .}}").stdout)
    assert info["DockerRootDir"] == str(data)
    assert "name=rootless" in info["SecurityOptions"]
    assert any("cgroup" in w for w in info["Warnings"]), info["Warnings"]  # limits: why they are refused
    # The real docker CLI shows the same.
    out = rl.docker("info").stdout.decode()
    assert "rootless" in out and "Cgroup Driver: none" in out


def test_run_exec_logs_and_container_root_is_the_user(rl: RootlessUser) -> None:
    cid = rl.docker("run", "-d", "--name", "rl-root", "busybox", "sh", "-c",
                    "echo from-the-container; echo x > /root/made-by-root; exec sleep 300").stdout.decode().strip()
    try:
        assert rl.docker("exec", "rl-root", "id", "-u").stdout.strip() == b"0"
        deadline = time.monotonic() + 10
        while b"from-the-container" not in rl.docker("logs", "rl-root").stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rl.docker("logs", "rl-root").stdout == b"from-the-container\n"
        pid = int(rl.docker("inspect", "-f", "{{.State.Pid}}", "rl-root").stdout)
        # Container root is the user on the host; uids 1.. are the user's subordinate ids.
        maps = [line.split() for line in Path(f"/proc/{pid}/uid_map").read_text().splitlines()]
        assert maps[0] == ["0", str(rl.uid), "1"]
        assert maps[1] == ["1", str(_subid_start(rl)), "65536"]
        assert os.stat(f"/proc/{pid}").st_uid == rl.uid
        upper = rl.home / ".local/share/dockyard/containers" / cid / "upper" / "root" / "made-by-root"
        assert os.stat(upper).st_uid == rl.uid and os.stat(upper).st_gid == rl.gid
    finally:
        rl.docker("rm", "-f", "rl-root", check=False)


def test_image_with_many_owners_keeps_them_in_the_mapping(rl: RootlessUser, tmp_path: Path) -> None:
    ctx = rl.base / "ctx-owners"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN mkdir /owned && touch /owned/f && chown -R 1234:4321 /owned\n")
    os.chown(ctx, rl.uid, rl.gid)
    rl.docker("build", "-q", "-t", "rl-owners", str(ctx))
    try:
        out = rl.docker("run", "--rm", "rl-owners", "stat", "-c", "%u:%g", "/owned/f").stdout.strip()
        assert out == b"1234:4321"
        # On the host the layer's file belongs to subordinate id 1234 (1234 - 1 + start).
        start = _subid_start(rl)
        found = [p for p in (rl.home / ".local/share/dockyard/overlay").glob("*/fs/owned/f")]
        assert found, "the built layer is not in the layer store"
        assert {(os.stat(p).st_uid, os.stat(p).st_gid) for p in found} == {(start + 1233, start + 4320)}
    finally:
        rl.docker("rmi", "rl-owners", check=False)


def test_published_port_reaches_nginx_from_the_host(rl: RootlessUser) -> None:
    rl.docker("pull", f"{rl.registry}/library/nginx:latest")
    port = _free_port()
    rl.docker("run", "-d", "--name", "rl-web", "-p", f"{port}:80", f"{rl.registry}/library/nginx:latest")
    try:
        assert b"Welcome to nginx!" in _get(f"http://127.0.0.1:{port}/")
        assert rl.docker("port", "rl-web").stdout.decode().strip() == f"80/tcp -> 0.0.0.0:{port}"
        # The host side is a C proxy in the container's own netns (podman's rootlessport dials from there
        # too): no bridge, veth or NAT between it and nginx.
        pid = int(rl.docker("inspect", "-f", "{{.State.Pid}}", "rl-web").stdout)
        proxies = [p for p in _uid_pids(rl.uid)
                   if Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"/lib/systemd/systemd-socket-proxyd\0")]
        assert proxies and {os.readlink(f"/proc/{p}/ns/net") for p in proxies} == {os.readlink(f"/proc/{pid}/ns/net")}
    finally:
        rl.docker("rm", "-f", "rl-web", check=False)
    # The port's host side went with the container.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_ports_below_the_unprivileged_start_are_refused_naming_the_sysctl(rl: RootlessUser) -> None:
    p = rl.docker("run", "--rm", "-p", "80:80", "busybox", "true", check=False)
    assert p.returncode != 0
    assert b"net.ipv4.ip_unprivileged_port_start" in p.stderr, p.stderr


def test_user_network_names(rl: RootlessUser) -> None:
    rl.docker("network", "create", "rl-net")
    try:
        rl.docker("run", "-d", "--name", "rl-one", "--network", "rl-net", "busybox", "sleep", "300")
        rl.docker("run", "-d", "--name", "rl-two", "--network", "rl-net", "busybox", "sleep", "300")
        p = rl.docker("exec", "rl-two", "ping", "-c", "1", "-W", "5", "rl-one")
        assert b"1 packets received" in p.stdout
        p = rl.docker("exec", "rl-one", "nslookup", "rl-two")
        assert b"Name:" in p.stdout and b"rl-two" in p.stdout, p.stdout
    finally:
        rl.docker("rm", "-f", "rl-one", "rl-two", check=False)
        rl.docker("network", "rm", "rl-net", check=False)


def test_named_volume_files_belong_to_the_user(rl: RootlessUser) -> None:
    rl.docker("volume", "create", "rl-vol")
    try:
        rl.docker("run", "--rm", "-v", "rl-vol:/data", "busybox", "sh", "-c", "echo kept > /data/f")
        f = rl.home / ".local/share/dockyard/volumes/rl-vol/_data/f"
        assert f.read_text() == "kept\n"
        assert os.stat(f).st_uid == rl.uid
        assert rl.docker("run", "--rm", "-v", "rl-vol:/data", "busybox", "cat", "/data/f").stdout == b"kept\n"
    finally:
        rl.docker("volume", "rm", "rl-vol", check=False)


def test_limits_are_refused_at_create_saying_why(rl: RootlessUser) -> None:
    p = rl.docker("run", "--rm", "--memory", "64m", "--pids-limit", "10", "busybox", "true", check=False)
    assert p.returncode != 0
    err = p.stderr.decode()
    assert "--memory" in err and "--pids-limit" in err and "cgroup v1" in err, err
    assert "--memory-swap" not in err  # only what was asked for
    assert rl.docker("ps", "-aq").stdout.strip() == b""  # nothing was created


def test_push_and_pull_through_a_local_registry(rl: RootlessUser) -> None:
    ref = f"{rl.registry}/rootless/busybox:mine"
    rl.docker("tag", "busybox:latest", ref)
    rl.docker("push", ref)
    rl.docker("rmi", ref)
    rl.docker("pull", ref)
    assert rl.docker("run", "--rm", ref, "echo", "pulled").stdout == b"pulled\n"
    rl.docker("rmi", ref)


def test_compose_up_and_down(rl: RootlessUser) -> None:
    proj = rl.base / "proj"
    proj.mkdir()
    (proj / "docker-compose.yml").write_text(
        "version: '3'\nservices:\n  db:\n    image: busybox\n    command: sleep 300\n"
        "  app:\n    image: busybox\n    command: sh -c 'ping -c1 -W5 db && sleep 300'\n    depends_on: [db]\n")
    os.chown(proj, rl.uid, rl.gid)
    compose = shutil.which("docker-compose") or "/usr/bin/docker-compose"
    env = {"DOCKER_HOST": f"unix://{rl.sock}", "DOCKER_CONFIG": str(rl.home / ".docker")}
    try:
        rl.run(compose, "-p", "rlproj", "up", "-d", cwd=proj, **env)
        names = rl.docker("ps", "--format", "{{.Names}}").stdout.decode().split()
        assert sorted(names) == ["rlproj_app_1", "rlproj_db_1"], names
        deadline = time.monotonic() + 10
        while b"1 packets received" not in rl.docker("logs", "rlproj_app_1").stdout and time.monotonic() < deadline:
            time.sleep(0.2)
        assert b"1 packets received" in rl.docker("logs", "rlproj_app_1").stdout
    finally:
        rl.run(compose, "-p", "rlproj", "down", "-t", "1", cwd=proj, check=False, **env)
    assert rl.docker("ps", "-aq").stdout.strip() == b""


def test_the_user_cannot_reach_a_rootful_daemon(rl: RootlessUser, daemon) -> None:  # type: ignore[no-untyped-def]
    p = rl.docker("-H", daemon.host, "version", check=False)
    assert p.returncode != 0 and b"permission denied" in p.stderr, p.stderr
    if os.path.exists("/run/dockyard.sock"):
        p = rl.docker("-H", "unix:///run/dockyard.sock", "version", check=False)
        assert p.returncode != 0 and b"permission denied" in p.stderr, p.stderr


def test_daemon_restart_stops_its_containers_and_serves_again(rl: RootlessUser) -> None:
    # The containers live in the daemon's namespaces, which go with it: stopped, as dockerd without
    # live-restore, and startable again under the next daemon.
    rl.docker("run", "-d", "--name", "rl-keep", "busybox", "sleep", "300")
    try:
        rl.stop()
        rl.start()
        assert rl.docker("inspect", "-f", "{{.State.Status}}", "rl-keep").stdout.strip() == b"exited"
        rl.docker("start", "rl-keep")
        assert rl.docker("exec", "rl-keep", "echo", "back").stdout == b"back\n"
    finally:
        rl.docker("rm", "-f", "rl-keep", check=False)


def test_binds_tmpfs_cp_commit_save_and_load(rl: RootlessUser) -> None:
    bind = rl.base / "bind"
    bind.mkdir()
    os.chown(bind, rl.uid, rl.gid)
    rl.docker("run", "-d", "--name", "rl-files", "-v", f"{bind}:/b", "--tmpfs", "/scratch", "busybox", "sleep", "300")
    try:
        rl.docker("exec", "rl-files", "sh", "-c", "echo bound > /b/f && echo t > /scratch/t && grep -q ' /scratch tmpfs' "
                  "/proc/mounts && echo made > /made")
        assert (bind / "f").read_text() == "bound\n" and os.stat(bind / "f").st_uid == rl.uid
        # cp both ways, through the user's own files
        (bind / "in.txt").write_text("copied in\n")
        os.chown(bind / "in.txt", rl.uid, rl.gid)
        rl.docker("cp", str(bind / "in.txt"), "rl-files:/in.txt")
        assert rl.docker("exec", "rl-files", "cat", "/in.txt").stdout == b"copied in\n"
        rl.docker("cp", "rl-files:/made", str(bind / "out.txt"))
        assert (bind / "out.txt").read_text() == "made\n"
        # commit, save, rmi, load: the image comes back with the container's change
        rl.docker("commit", "rl-files", "rl-committed:1")
        tar = bind / "saved.tar"
        rl.docker("save", "-o", str(tar), "rl-committed:1")
        rl.docker("rmi", "rl-committed:1")
        rl.docker("load", "-i", str(tar))
        assert rl.docker("run", "--rm", "rl-committed:1", "cat", "/made").stdout == b"made\n"
    finally:
        rl.docker("rm", "-f", "rl-files", check=False)
        rl.docker("rmi", "rl-committed:1", check=False)


def test_fuse_overlayfs_fallback(rl: RootlessUser) -> None:
    # The kernels here mount overlayfs in a user namespace; DOCKYARD_ROOTLESS_OVERLAY asks for the
    # fallback older kernels get. fuse-overlayfs needs /dev/fuse (0600 on these machines).
    fuse_mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    rl.stop()
    os.chmod("/dev/fuse", 0o666)
    try:
        rl.start(DOCKYARD_ROOTLESS_OVERLAY="fuse-overlayfs")
        assert "Storage Driver: fuse-overlayfs" in rl.docker("info").stdout.decode()
        out = rl.docker("run", "--name", "rl-fuse", "busybox", "sh", "-c",
                        "grep ' / ' /proc/mounts; echo new > /new; rm /bin/ls").stdout.decode()
        assert "fuse" in out, out
        changes = rl.docker("diff", "rl-fuse").stdout.decode().splitlines()
        assert "A /new" in changes and "D /bin/ls" in changes, changes
        rl.docker("commit", "rl-fuse", "rl-fuse-img")
        out = rl.docker("run", "--rm", "rl-fuse-img", "sh", "-c", "cat /new; ls /bin/ls || echo gone").stdout
        assert out.startswith(b"new\n") and out.endswith(b"gone\n"), out
    finally:
        rl.docker("rm", "-f", "rl-fuse", check=False)
        rl.docker("rmi", "rl-fuse-img", check=False)
        rl.stop()
        os.chmod("/dev/fuse", fuse_mode)
        rl.start()


def test_containers_of_a_killed_daemon_are_reaped_at_the_next_start(rl: RootlessUser) -> None:
    # A daemon killed outright leaves its containers in namespaces that no new daemon can enter: the
    # next start kills them and records them as exited, rather than adopting what it cannot reach.
    rl.docker("run", "-d", "--name", "rl-orphan", "busybox", "sleep", "300")
    try:
        pid = int(rl.docker("inspect", "-f", "{{.State.Pid}}", "rl-orphan").stdout)
        daemon = rl.daemon_pid()
        assert daemon is not None and rl.proc is not None
        os.kill(daemon, signal.SIGKILL)
        rl.proc.wait(30)
        rl.proc = None
        os.kill(pid, 0)  # the container outlived its daemon
        rl.start()
        assert rl.docker("inspect", "-f", "{{.State.Status}}", "rl-orphan").stdout.strip() == b"exited"
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists()
        rl.docker("start", "rl-orphan")  # and it runs again under the new daemon
        assert rl.docker("exec", "rl-orphan", "true").returncode == 0
    finally:
        rl.docker("rm", "-f", "rl-orphan", check=False)


def test_one_uid_fallback_without_subordinate_ids(rl: RootlessUser) -> None:
    # A user with no /etc/subuid lines: the daemon still runs, in a namespace mapping that user alone
    # (no RootlessKit: it refuses without ranges), warning with the fix; ports through slirp4netns's API.
    base = Path(tempfile.mkdtemp(prefix="rootless-one-", dir="/tmp"))
    u = _setup_user(base)
    try:
        assert not any(line.startswith(f"{u.name}:") for line in Path("/etc/subuid").read_text().splitlines())
        u.start()
        log = u.log.read_text()
        assert "running with one uid" in log and "--add-subuids" in log, log[-2000:]
        _load_busybox(u)
        out = u.docker("run", "--rm", "busybox", "sh", "-c", "id -u; cat /proc/self/uid_map").stdout.split()
        assert out == [b"0", b"0", str(u.uid).encode(), b"1"], out
        port = _free_port()
        u.docker("run", "-d", "--name", "one-web", "-p", f"{port}:8080", "busybox", "sh", "-c",
                 "echo one-uid > /i.html; exec httpd -f -p 8080 -h /")
        assert _get(f"http://127.0.0.1:{port}/i.html") == b"one-uid\n"
        u.docker("rm", "-f", "one-web")
    finally:
        _remove_user(u)
        shutil.rmtree(base, ignore_errors=True)


def test_containers_reach_out_through_slirp4netns(rl: RootlessUser) -> None:
    # A container's outbound traffic: masqueraded in the daemon's namespace, then slirp4netns's user-mode
    # stack; the host's loopback registry at 10.0.2.2 (opened by the fixture) stands in for the outside.
    p = rl.docker("run", "--rm", "busybox", "wget", "-q", "-O", "-", f"http://{rl.registry}/v2/")
    assert p.stdout.strip() == b"{}", p.stdout
