"""`dockyard daemon` run by an ordinary user (issue 17): re-executed under RootlessKit.

RootlessKit (Debian's rootlesskit 1.1) makes a user namespace mapped with newuidmap/newgidmap from the
user's /etc/subuid and /etc/subgid ranges (the user is root inside, the subordinate ids are 1..N), a mount
namespace and a network namespace, and runs the daemon there as uid 0. Inside, the daemon is the rootful
one: it mounts overlayfs (user namespaces may since Linux 5.11; `userxattr`), makes bridges, veths, netns
and its nft table in a network namespace of its own. The way out is slirp4netns (user-mode TCP/IP, the
host's loopback hidden from containers by default); published ports go through RootlessKit's builtin port
driver: the daemon asks its API (`network/rootlesskit.py`) to listen on the host's address and port and
forward to the same port inside, where our DNAT takes it to the container.

Why RootlessKit's port driver and slirp4netns rather than pasta: ports come and go with containers, and
RootlessKit's API adds and removes one at a time while the daemon runs (pasta 2023-03 forwards the ports
named when it starts, or polls for listeners), and its builtin driver forwards in one process without a
user-mode TCP/IP stack on the path (slirp4netns's own port forwarding goes through one). slirp4netns
only carries the namespace's outbound traffic then (none in the tests: there is no network here)."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from typing import NoReturn

from dockyard.errors import DockyardError
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
    if not rootless.subid_ranges("uid") or not rootless.subid_ranges("gid"):
        # RootlessKit 1.1 will not start without them (it has no one-uid mode): say what to run.
        start, end = rootless.free_subid_start(), rootless.free_subid_start() + rootless.SUBID_COUNT - 1
        raise DockyardError(f"rootless mode needs subordinate ids: there are none for this user in /etc/subuid or "
                            f"/etc/subgid. Fix: sudo usermod --add-subuids {start}-{end} --add-subgids {start}-{end} "
                            f"{os.environ.get('USER') or os.getuid()} (or `dockyard rootless setup --apply`)")
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


def exec_in_user_namespace(argv: list[str]) -> NoReturn:
    """Replace this process with RootlessKit running the daemon inside; it comes back as uid 0 there."""
    rp = rootless.paths()
    cmd = command(argv)
    rp.runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.rmtree(rp.state_dir, ignore_errors=True)  # RootlessKit's own from a daemon that was killed
    env = dict(os.environ)
    env[rootless.ROOTLESS_ENV] = "1"
    env[rootless.HOST_UID_ENV] = str(os.getuid())
    env[rootless.PORT_START_ENV] = str(rootless.unprivileged_port_start())
    env["XDG_RUNTIME_DIR"] = str(rp.runtime)  # the child is uid 0: it must not fall back to /run/user/0
    env.setdefault("HOME", os.path.expanduser("~"))
    log.info("rootless: %s", " ".join(cmd))
    os.execvpe(cmd[0], cmd, env)
