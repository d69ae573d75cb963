"""A hardened engine: each test tries an attack through the real docker CLI against our daemon and
sees it fail (or, for the opt-in flags, sees the flag grant exactly what Docker's does).

Busybox has no compiler or ctypes, so raw syscalls go through tests/data/probe.c, built static with
gcc at test time and `docker cp`'d into the container; it prints "OK" or the errno's name.
"""

from __future__ import annotations

import grp
import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, static_binary

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (real containers)")

DOCKER_DEFAULT_CAPEFF = "00000000a80425fb"  # what `docker run busybox grep CapEff /proc/self/status` prints
# What Docker's containers see in /dev (console only with a tty).
DOCKER_DEV = {"console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr",
              "stdin", "stdout", "tty", "urandom", "zero"}


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return static_binary("probe", tmp_path_factory.mktemp("probe"))


def run(d: Daemon, *args: str, check: bool = True) -> str:
    """`docker run --rm [opts] busybox cmd...`: args are options, then "busybox", then the command."""
    return d.docker("run", "--rm", *args, check=check).stdout.decode()


def status_field(d: Daemon, field: str, *opts: str) -> str:
    out = run(d, *opts, "busybox", "grep", f"^{field}:", "/proc/self/status")
    return out.split(":", 1)[1].strip()


class Probe:
    """A running container holding the probe; `.try_(op)` runs it there."""

    def __init__(self, d: Daemon, binary: Path, *opts: str) -> None:
        self.d = d
        self.name = f"probe-{uuid.uuid4().hex[:8]}"
        d.docker("run", "-d", "--name", self.name, *opts, "busybox", "sleep", "300")
        d.docker("cp", str(binary), f"{self.name}:/probe")

    def try_(self, *args: str) -> str:
        return self.d.docker("exec", self.name, "/probe", *args, check=False).stdout.decode().strip()

    def sh(self, script: str) -> subprocess.CompletedProcess[bytes]:
        return self.d.docker("exec", self.name, "sh", "-c", script, check=False)


@pytest.fixture()
def default_probe(clean_daemon: Daemon, probe: Path) -> Iterator[Probe]:
    yield Probe(clean_daemon, probe)


# -- the default seccomp profile ---------------------------------------------------------------

BLOCKED = ["mount", "unshare-user", "unshare-mount", "clone-newuser", "kexec_load", "init_module",
           "finit_module", "keyctl", "add_key", "bpf", "swapon", "settimeofday"]


def test_default_seccomp_blocks(default_probe: Probe) -> None:
    got = {op: default_probe.try_(op) for op in BLOCKED}
    assert got == dict.fromkeys(BLOCKED, "EPERM")


def test_seccomp_is_the_barrier_for_keyctl(clean_daemon: Daemon, probe: Path) -> None:
    # keyctl needs no capability: only the filter stops it, so unconfined lets it through (as Docker).
    assert Probe(clean_daemon, probe, "--security-opt", "seccomp=unconfined").try_("keyctl") == "OK"


def test_busybox_unshare_and_mount_applets_fail(clean_daemon: Daemon) -> None:
    d = clean_daemon
    p = d.docker("run", "--rm", "busybox", "unshare", "-U", "true", check=False)
    assert p.returncode != 0 and b"Operation not permitted" in p.stderr
    p = d.docker("run", "--rm", "busybox", "mount", "-t", "tmpfs", "none", "/tmp", check=False)
    assert p.returncode != 0


def test_ptrace_outside_processes(clean_daemon: Daemon, default_probe: Probe) -> None:
    host_pid = clean_daemon.proc.pid if clean_daemon.proc else os.getpid()
    # the daemon's pid is not even visible: a new pid namespace
    assert default_probe.try_("ptrace", str(host_pid)) == "ESRCH"
    assert default_probe.sh(f"test -e /proc/{host_pid}").returncode != 0
    # Docker's profile allows ptrace of the container's own processes (kernel >= 4.8): no over-blocking
    assert default_probe.sh("sleep 60 & /probe ptrace $!").stdout.strip() == b"OK"


def test_nsenter_host_namespaces_fails(clean_daemon: Daemon) -> None:
    p = clean_daemon.docker("run", "--rm", "busybox", "nsenter", "-t", "1", "-m", "-u", "-n", "-p", "true",
                            check=False)
    assert p.returncode != 0


# -- capabilities --------------------------------------------------------------------------------


def test_default_capabilities_are_dockers(clean_daemon: Daemon) -> None:
    d = clean_daemon
    assert status_field(d, "CapEff") == DOCKER_DEFAULT_CAPEFF
    assert status_field(d, "CapBnd") == DOCKER_DEFAULT_CAPEFF
    assert status_field(d, "CapInh") == "0000000000000000"


def test_cap_drop_chown(clean_daemon: Daemon) -> None:
    d = clean_daemon
    assert d.docker("run", "--rm", "busybox", "chown", "1", "/etc/passwd", check=False).returncode == 0
    p = d.docker("run", "--rm", "--cap-drop", "CHOWN", "busybox", "chown", "1", "/etc/passwd", check=False)
    assert p.returncode != 0 and b"Operation not permitted" in p.stderr
    assert status_field(d, "CapEff", "--cap-drop", "chown") == "00000000a80425fa"
    assert status_field(d, "CapEff", "--cap-drop", "ALL") == "0000000000000000"


def test_cap_add_sys_admin_allows_mount(clean_daemon: Daemon, probe: Path) -> None:
    d = clean_daemon
    assert run(d, "--cap-add", "SYS_ADMIN", "busybox", "sh", "-c",
               "mount -t tmpfs none /tmp && grep -c ' /tmp tmpfs' /proc/mounts").strip() == "1"
    assert run(d, "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "busybox", "sh", "-c",
               "mount -t tmpfs none /tmp && echo mounted").strip() == "mounted"
    # the capability opens the filter's CAP_SYS_ADMIN rules, nothing else
    admin = Probe(d, probe, "--cap-add", "SYS_ADMIN")
    assert admin.try_("unshare-mount") == "OK"
    assert admin.try_("kexec_load") == "EPERM"
    p = d.docker("run", "--rm", "--cap-add", "NOT_A_CAP", "busybox", "true", check=False)
    assert p.returncode != 0 and b"invalid capability" in p.stderr.lower()


def test_privileged(clean_daemon: Daemon) -> None:
    d = clean_daemon
    # every capability the daemon holds itself (all of them, unless it runs in a restricted sandbox)
    own = next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("CapBnd:"))
    assert status_field(d, "CapEff", "--privileged") == own
    assert status_field(d, "Seccomp", "--privileged") == "0"
    host_devs = set(os.listdir("/dev"))
    devs = set(run(d, "--privileged", "busybox", "ls", "/dev").split())
    extra = sorted((host_devs - DOCKER_DEV) & devs)
    assert extra, "a privileged container sees the host's devices"
    assert " rw," in run(d, "--privileged", "busybox", "grep", " /sys ", "/proc/mounts").replace(" rw ", " rw,")


# -- security options ----------------------------------------------------------------------------


def test_no_new_privileges(clean_daemon: Daemon) -> None:
    d = clean_daemon
    assert status_field(d, "NoNewPrivs") == "0"
    assert status_field(d, "NoNewPrivs", "--security-opt", "no-new-privileges") == "1"
    assert status_field(d, "NoNewPrivs", "--security-opt", "no-new-privileges=true") == "1"


def test_seccomp_default_and_unconfined(clean_daemon: Daemon) -> None:
    d = clean_daemon
    assert status_field(d, "Seccomp") == "2"
    assert status_field(d, "Seccomp", "--security-opt", "seccomp=unconfined") == "0"


def test_seccomp_profile_file(clean_daemon: Daemon, tmp_path: Path) -> None:
    # The docker CLI reads the file and sends its content in HostConfig.SecurityOpt.
    d = clean_daemon
    prof = tmp_path / "no-mkdir.json"
    prof.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }))
    assert status_field(d, "Seccomp", "--security-opt", f"seccomp={prof}") == "2"
    p = d.docker("run", "--rm", "--security-opt", f"seccomp={prof}", "busybox", "mkdir", "/newdir", check=False)
    assert p.returncode != 0 and b"Operation not permitted" in p.stderr
    assert run(d, "--security-opt", f"seccomp={prof}", "busybox", "sh", "-c", "touch /f && echo ok") == "ok\n"


def test_seccomp_profile_is_never_read_from_the_daemon_host(clean_daemon: Daemon) -> None:
    # A raw API client may not make the daemon open one of its own files as a profile (Docker: 400).
    with clean_daemon.api() as c:
        r = c.post("/containers/create", json={"Image": "busybox", "Cmd": ["true"],
                                               "HostConfig": {"SecurityOpt": ["seccomp=/etc/passwd"]}})
        if r.status_code == 201:
            r = c.post(f"/containers/{r.json()['Id']}/start")
        assert r.status_code == 400, r.text
        bad = c.post("/containers/create", json={"Image": "busybox", "Cmd": ["true"],
                                                 "HostConfig": {"SecurityOpt": ["seccomp={not json"]}})
        if bad.status_code == 201:
            bad = c.post(f"/containers/{bad.json()['Id']}/start")
        assert bad.status_code == 400, bad.text


def test_read_only_rootfs(clean_daemon: Daemon) -> None:
    d = clean_daemon
    p = d.docker("run", "--rm", "--read-only", "busybox", "touch", "/x", check=False)
    assert p.returncode != 0 and b"Read-only file system" in p.stderr
    vol = f"ro-{uuid.uuid4().hex[:8]}"
    try:
        out = run(d, "--read-only", "--tmpfs", "/scratch", "-v", f"{vol}:/data", "busybox", "sh", "-c",
                  "touch /scratch/a /data/b && echo writable")
        assert out == "writable\n"
    finally:
        d.docker("volume", "rm", "-f", vol, check=False)


def test_user_and_group_add(clean_daemon: Daemon) -> None:
    d = clean_daemon
    assert run(d, "--user", "1000:1000", "busybox", "id").startswith("uid=1000 gid=1000")
    p = d.docker("run", "--rm", "--user", "1000", "busybox", "sh", "-c", "echo x >> /etc/passwd", check=False)
    assert p.returncode != 0 and b"Permission denied" in p.stderr
    assert status_field(d, "CapEff", "--user", "1000") == "0000000000000000"
    groups = run(d, "--user", "1000:1000", "--group-add", "4242", "--group-add", "audio", "busybox", "id", "-G")
    assert set(groups.split()) >= {"1000", "4242", "29"}  # busybox's /etc/group: audio is 29


def test_device_flag(clean_daemon: Daemon) -> None:
    d = clean_daemon
    out = run(d, "--device", "/dev/null:/dev/mynull", "busybox", "sh", "-c",
              "echo hi > /dev/mynull && ls -l /dev/mynull")
    assert out.startswith("crw") and "1,   3" in out
    p = d.docker("run", "--rm", "--device", "/dev/not-a-device-dy", "busybox", "true", check=False)
    assert p.returncode != 0


# -- /proc, /sys and /dev ------------------------------------------------------------------------


def test_masked_proc_paths(clean_daemon: Daemon) -> None:
    # files are bound over by /dev/null, directories by an empty read-only tmpfs (absent ones stay absent)
    out = run(clean_daemon, "busybox", "sh", "-c",
              "for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /proc/latency_stats; do "
              "echo \"$f:$(head -c 64 $f 2>/dev/null | wc -c)\"; done; "
              "for d in /proc/acpi /proc/scsi /sys/firmware; do echo \"$d:$(ls -A $d 2>/dev/null | wc -l)\"; done; "
              "touch /proc/acpi/x 2>/dev/null && echo acpi-writable; true")
    lines = out.split()
    assert len(lines) == 8 and all(line.endswith(":0") for line in lines), out


def test_proc_sys_and_sys_read_only(clean_daemon: Daemon) -> None:
    d = clean_daemon
    for target in ("/proc/sys/kernel/hostname", "/proc/sysrq-trigger", "/sys/kernel/uevent_helper"):
        p = d.docker("run", "--rm", "busybox", "sh", "-c", f"echo x > {target}", check=False)
        assert p.returncode != 0, target
    p = d.docker("run", "--rm", "busybox", "mkdir", "/sys/fs/cgroup/dockyard-escape", check=False)
    assert p.returncode != 0
    mounts = run(d, "busybox", "cat", "/proc/mounts")
    sys_opts = next(line.split()[3] for line in mounts.splitlines() if line.split()[1] == "/sys")
    assert sys_opts.split(",")[0] == "ro"


def test_no_host_devices(clean_daemon: Daemon) -> None:
    d = clean_daemon
    assert set(run(d, "busybox", "ls", "/dev").split()) <= DOCKER_DEV
    # MKNOD is a default capability, but the device cgroup refuses to open what it makes
    for node in ("c 1 1", "b 7 0", "c 10 232"):  # /dev/mem, loop0, kvm
        p = d.docker("run", "--rm", "busybox", "sh", "-c", f"mknod /tmp/n {node} && head -c 1 /tmp/n",
                     check=False)
        assert p.returncode != 0 and b"Operation not permitted" in p.stderr, node


# -- docker cp and image layers ------------------------------------------------------------------


def _tar(entries: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti in entries:
            payload = (data or {}).get(ti.name)
            if payload is not None:
                ti.size = len(payload)
            tf.addfile(ti, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode = kind, link, 0o755 if kind in (tarfile.DIRTYPE, tarfile.SYMTYPE) else 0o644
    return ti


def test_cp_archive_cannot_write_through_its_own_symlink(clean_daemon: Daemon, tmp_path: Path) -> None:
    d = clean_daemon
    target = tmp_path / "host-target"
    target.mkdir()
    d.docker("run", "-d", "--name", "cpevil", "busybox", "sleep", "300")
    evil = _tar([_entry("esc", tarfile.SYMTYPE, str(target)), _entry("esc/pwned")], {"esc/pwned": b"x"})
    d.docker("cp", "-", "cpevil:/tmp", input=evil, check=False)
    assert not (target / "pwned").exists()
    # a symlink the container made, used as the destination directory, resolves inside the container
    d.docker("exec", "cpevil", "ln", "-s", str(target), "/hostlink")
    src = tmp_path / "f.txt"
    src.write_text("data")
    d.docker("cp", str(src), "cpevil:/hostlink/f.txt", check=False)
    assert not (target / "f.txt").exists()


def _evil_image(layer: bytes) -> bytes:
    """A docker-archive (what `docker save` writes) holding one image with the given layer tar."""
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["true"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    cfg_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": ["evil:latest"], "Layers": ["layer.tar"]}]).encode()
    entries = [_entry(cfg_name), _entry("layer.tar"), _entry("manifest.json")]
    return _tar(entries, {cfg_name: config, "layer.tar": layer, "manifest.json": manifest})


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink-then-write", "hardlink-out", "symlink-dir-then-dir"])
def test_evil_layer_cannot_write_outside(clean_daemon: Daemon, tmp_path: Path, case: str) -> None:
    d = clean_daemon
    target = tmp_path / "host-target"
    target.mkdir()
    (target / "secret").write_text("host secret")
    up = "../" * 20 + str(target).lstrip("/")
    layer = {
        "dotdot": lambda: _tar([_entry(f"{up}/pwned")], {f"{up}/pwned": b"x"}),
        "absolute": lambda: _tar([_entry(f"{target}/pwned")], {f"{target}/pwned": b"x"}),
        "symlink-then-write": lambda: _tar([_entry("l", tarfile.SYMTYPE, str(target)), _entry("l/pwned")],
                                           {"l/pwned": b"x"}),
        "hardlink-out": lambda: _tar([_entry("h", tarfile.LNKTYPE, f"{up}/secret")]),
        "symlink-dir-then-dir": lambda: _tar([_entry("l", tarfile.SYMTYPE, str(target)),
                                              _entry("l/sub", tarfile.DIRTYPE)]),
    }[case]()
    p = d.docker("load", input=_evil_image(layer), check=False)
    try:
        assert p.returncode != 0, p.stdout
        assert b"invalid layer" in p.stderr
        assert sorted(os.listdir(target)) == ["secret"]
        assert (target / "secret").read_text() == "host secret"
        assert os.stat(target / "secret").st_nlink == 1
    finally:
        d.docker("rmi", "-f", "evil:latest", check=False)


# -- file descriptors and the API socket ---------------------------------------------------------


def _fds(listing: str) -> dict[str, str]:
    """`ls -l /proc/X/fd` → {fd: target}."""
    out = {}
    for line in listing.splitlines():
        if " -> " in line:
            left, target = line.split(" -> ", 1)
            out[left.split()[-1]] = target
    return out


def test_no_fd_leaks_into_containers(clean_daemon: Daemon) -> None:
    d = clean_daemon
    def only_std(fds: dict[str, str]) -> bool:  # 0-2, and maybe 3: the directory ls is reading
        return set(fds) - {"3"} == {"0", "1", "2"} and fds.get("3", "/proc/").startswith("/proc/")

    fds = _fds(run(d, "busybox", "ls", "-l", "/proc/self/fd"))
    assert only_std(fds), fds
    d.docker("run", "-d", "--name", "fdleak", "busybox", "sleep", "300")
    init_fds = _fds(d.docker("exec", "fdleak", "ls", "-l", "/proc/1/fd").stdout.decode())
    assert sorted(init_fds) == ["0", "1", "2"], init_fds
    exec_fds = _fds(d.docker("exec", "fdleak", "ls", "-l", "/proc/self/fd").stdout.decode())
    assert only_std(exec_fds), exec_fds
    tty_fds = _fds(d.docker("run", "--rm", "-t", "busybox", "ls", "-l", "/proc/self/fd").stdout.decode())
    assert only_std(tty_fds), tty_fds
    for fd_target in [*init_fds.values(), *exec_fds.values()]:
        assert str(d.base) not in fd_target, fd_target


def test_api_socket_mode_and_group(daemon: Daemon) -> None:
    st = os.stat(daemon.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_uid == 0
    try:
        gid = grp.getgrnam("dockyard").gr_gid
    except KeyError:
        pytest.fail("no `dockyard` group: scripts/setup creates it (groupadd -f dockyard)")
    assert st.st_gid == gid  # the daemon's default --group is dockyard
