"""`dockyard daemon` run by an ordinary user (issue 17): run under RootlessKit.

RootlessKit (Debian's rootlesskit 1.1) makes a user namespace mapped with newuidmap/newgidmap from the
user's /etc/subuid and /etc/subgid ranges (the user is root inside, the subordinate ids are 1..N), a mount
namespace and a network namespace, and runs the daemon there as uid 0. Inside, the daemon is the rootful
one: it mounts overlayfs (user namespaces may since Linux 5.11; `userxattr`), makes bridges, veths, netns
and its nft table in a network namespace of its own. The way out is slirp4netns (user-mode TCP/IP, the
host's loopback hidden from containers by default). Published TCP ports: this launcher does not exec into
RootlessKit but stays outside, in the host's netns, as a broker that binds host ports for the daemon, which
hands each listening socket to systemd-socket-proxyd in the container's netns (`network/host_ports.py`:
a C proxy dialing inside the container, as podman's rootlessport does; a third less CPU per request than
RootlessKit's). UDP ports (and TCP where that proxy is missing) go through RootlessKit's builtin port
driver: the daemon asks its API (`network/rootlesskit.py`) to listen on the host's address and port and
forward to the same port inside, where our DNAT takes it to the container.

Why RootlessKit's port driver and slirp4netns rather than pasta: ports come and go with containers, and
RootlessKit's API adds and removes one at a time while the daemon runs (pasta 2023-03 forwards the ports
named when it starts, or polls for listeners), and its builtin driver forwards in one process without a
user-mode TCP/IP stack on the path (slirp4netns's own port forwarding goes through one). slirp4netns
only carries the namespace's outbound traffic then (none in the tests: there is no network here)."""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import NoReturn

from dockyard.errors import DockyardError
from dockyard.network import host_ports
from dockyard.util import rootless

log = logging.getLogger("dockyard.daemon")

# Docker's name for the same switch (dockerd-rootless.sh): false lets the namespace reach the host's
# 127.0.0.1 as 10.0.2.2 (a registry on the host's loopback); true (the default) hides it.
DISABLE_HOST_LOOPBACK_ENV = "DOCKYARD_ROOTLESS_DISABLE_HOST_LOOPBACK"


def command(argv: list[str]) -> list[str]:
    """The RootlessKit command line that runs this daemon, with `argv`, in a user namespace."""
    rk = shutil.which("rootlesskit")
    if rk is None:
        raise DockyardError("rootless mode needs RootlessKit: sudo apt-get install -y rootlesskit slirp4netns uidmap "
                            "(`dockyard rootless setup` checks everything it needs)")
    rp = rootless.paths()
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        raise DockyardError("rootless mode's network (slirp4netns) needs /dev/net/tun, which this user cannot open: "
                            "sudo chmod 0666 /dev/net/tun (Debian's udev default)")
    if shutil.which("slirp4netns") is None:
        raise DockyardError("rootless mode needs slirp4netns: sudo apt-get install -y slirp4netns")
    args = [rk, "--net=slirp4netns", "--mtu=65520", "--slirp4netns-sandbox=auto", "--slirp4netns-seccomp=auto",
            "--port-driver=builtin", "--copy-up=/etc", f"--state-dir={rp.state_dir}"]
    if os.environ.get(DISABLE_HOST_LOOPBACK_ENV, "true").lower() not in ("false", "0"):
        args.append("--disable-host-loopback")
    return [*args, sys.executable, "-m", "dockyard.daemon.main", *argv]


def has_subids() -> bool:
    return bool(rootless.subid_ranges("uid") and rootless.subid_ranges("gid"))


def exec_in_user_namespace(argv: list[str]) -> NoReturn:
    """Replace this process with RootlessKit running the daemon inside; it comes back as uid 0 there.
    Without subordinate ids (RootlessKit 1.1 refuses to start then), a namespace of our own that maps
    the user alone, with a warning naming the fix."""
    rp = rootless.paths()
    if not has_subids():
        start = rootless.free_subid_start()
        end = start + rootless.SUBID_COUNT - 1
        log.warning("no subordinate ids for this user in /etc/subuid and /etc/subgid: running with one uid and gid "
                    "(root in containers; images' other owners become root, and a container that switches to "
                    "another user fails). Fix: sudo usermod --add-subuids %d-%d --add-subgids %d-%d %s "
                    "(or `dockyard rootless setup --apply`)", start, end, start, end,
                    os.environ.get("USER") or os.getuid())
        raise SystemExit(_run_single_uid(argv, rp))
    cmd = command(argv)
    rp.runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.rmtree(rp.state_dir, ignore_errors=True)  # RootlessKit's own from a daemon that was killed
    env = _env(rp)  # XDG_RUNTIME_DIR included: the child is uid 0 and must not fall back to /run/user/0
    log.info("rootless: %s", " ".join(cmd))
    if not host_ports.proxy_available():
        os.execvpe(cmd[0], cmd, env)
    # This process stays outside, in the host's netns, as the broker of published TCP ports
    # (network/host_ports.py): the daemon inside cannot bind there.
    broker = rp.runtime / "dockyard-ports.sock"
    srv = host_ports.serve(broker)
    env[rootless.PORT_BROKER_ENV] = str(broker)
    child = subprocess.Popen(cmd, env=env)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: child.send_signal(s))
    try:
        rc = child.wait()
    finally:
        srv.close()
        broker.unlink(missing_ok=True)
    raise SystemExit(rc if rc >= 0 else 128 - rc)


_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000


def _env(rp: rootless.RootlessPaths) -> dict[str, str]:
    env = dict(os.environ)
    env[rootless.ROOTLESS_ENV] = "1"
    env[rootless.HOST_UID_ENV] = str(os.getuid())
    env[rootless.PORT_START_ENV] = str(rootless.unprivileged_port_start())
    env["XDG_RUNTIME_DIR"] = str(rp.runtime)
    env.setdefault("HOME", os.path.expanduser("~"))
    return env


def _run_single_uid(argv: list[str], rp: rootless.RootlessPaths) -> int:
    """The one-uid fallback: a user + mount + network namespace mapping only the user (which needs no
    newuidmap), slirp4netns for the way out and, through its API, published ports. This process stays
    outside as the parent: it writes the maps, runs slirp4netns, passes SIGTERM/SIGINT on, and exits
    with the daemon's status."""
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        raise DockyardError("rootless mode's network (slirp4netns) needs /dev/net/tun, which this user cannot open: "
                            "sudo chmod 0666 /dev/net/tun (Debian's udev default)")
    slirp_bin = shutil.which("slirp4netns")
    if slirp_bin is None:
        raise DockyardError("rootless mode needs slirp4netns: sudo apt-get install -y slirp4netns")
    rp.runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.rmtree(rp.state_dir, ignore_errors=True)
    rp.state_dir.mkdir(mode=0o700)
    api = rp.state_dir / "slirp4netns.sock"
    env = _env(rp)
    env["DOCKYARD_ROOTLESS_SLIRP_API"] = str(api)
    env.pop("ROOTLESSKIT_STATE_DIR", None)
    libc = ctypes.CDLL(None, use_errno=True)
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    uid, gid = os.getuid(), os.getgid()
    pid = os.fork()
    if pid == 0:  # the daemon-to-be
        try:
            os.close(go_w)
            os.close(ready_r)
            if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWNET) != 0:
                os.write(2, f"dockyard daemon: unshare: {os.strerror(ctypes.get_errno())}\n".encode())
                os._exit(125)
            os.write(ready_w, b"1")
            os.close(ready_w)
            if os.read(go_r, 1) != b"1":
                os._exit(125)
            subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
            os.execve(sys.executable, [sys.executable, "-m", "dockyard.daemon.main", *argv], env)
        finally:
            os._exit(125)
    os.close(go_r)
    os.close(ready_w)
    slirp: subprocess.Popen[bytes] | None = None
    try:
        if os.read(ready_r, 1) != b"1":
            return 1
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write(f"0 {uid} 1\n")
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write(f"0 {gid} 1\n")
        args = [slirp_bin, "--configure", "--mtu=65520", "--api-socket", str(api)]
        if os.environ.get(DISABLE_HOST_LOOPBACK_ENV, "true").lower() not in ("false", "0"):
            args.append("--disable-host-loopback")
        slirp = subprocess.Popen([*args, str(pid), "tap0"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not api.exists():
            if slirp.poll() is not None or time.monotonic() > deadline:
                raise DockyardError("slirp4netns did not start (see its messages above)")
            time.sleep(0.02)
        os.write(go_w, b"1")
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda s, _f: os.kill(pid, s))
        while True:
            try:
                _pid, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        return os.waitstatus_to_exitcode(status)
    except BaseException:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
        raise
    finally:
        os.close(go_w)
        os.close(ready_r)
        if slirp is not None:
            slirp.terminate()
            slirp.wait(10)
        shutil.rmtree(rp.state_dir, ignore_errors=True)
