"""The host's side of a rootless daemon's published TCP ports (issue 17): a broker and a C forwarder.

The daemon lives in RootlessKit's network namespace and cannot open a socket in the host's. RootlessKit's
builtin port driver carries a port there (Go, dialing 127.0.0.1:PORT in the daemon's netns, then our DNAT,
bridge, veth, conntrack). Podman's rootlessport dials from inside the container's own netns instead, which
costs a third less CPU per request (docs/STATUS.md, issue 17). To do the same:
  - the `dockyard daemon` launcher stays outside as the user, in the host's netns, and serves a unix socket
    (`serve`): asked for proto/address/port, it binds and listens there and hands the listening socket
    over (SCM_RIGHTS); ports below the host's unprivileged start fail there as they would for the user;
  - the daemon (`forward`) gives that socket to systemd-socket-proxyd (Debian's systemd package: C, splice
    between the two sockets, socket activation's LISTEN_FDS) started in the container's netns, dialing the
    container's address there: no bridge, veth or NAT on the way. It dies with the daemon (pdeathsig).
UDP stays with RootlessKit (the proxy is TCP only)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

PROXY = "/lib/systemd/systemd-socket-proxyd"


def proxy_available() -> bool:
    return os.access(PROXY, os.X_OK) and shutil.which("nsenter") is not None and shutil.which("setpriv") is not None


def serve(path: Path) -> socket.socket:
    """Listen on `path` (0600) and answer each request in a thread; close the returned socket to stop."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        srv.bind(str(path))
    finally:
        os.umask(old)
    srv.listen(16)

    def loop() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return  # closed: the daemon is gone
            with conn:
                _answer(conn)

    threading.Thread(target=loop, name="port-broker", daemon=True).start()
    return srv


def _answer(conn: socket.socket) -> None:
    try:
        req = json.loads(conn.recv(4096))
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lst.bind((str(req["ip"]), int(req["port"])))
            lst.listen(socket.SOMAXCONN)
            socket.send_fds(conn, [b"ok"], [lst.fileno()])
        finally:
            lst.close()  # the daemon's copy, then the proxy's, is the one left
    except (OSError, ValueError, KeyError) as e:
        with contextlib.suppress(OSError):
            conn.sendall(f"error: {getattr(e, 'strerror', None) or e}".encode())


def request(path: str, ip: str, port: int) -> socket.socket:
    """A socket listening on the host's ip:port, from the launcher's broker; OSError with its reason."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(10)
        c.connect(path)
        c.sendall(json.dumps({"ip": ip, "port": port}).encode())
        # Close-on-exec as it arrives: a runc or conmon the daemon forks meanwhile would otherwise inherit the
        # host's listening socket and keep the port open after rm. (socket.recv_fds drops its flags argument
        # before Python 3.12, hence recvmsg.)
        msg, anc, _flags, _addr = c.recvmsg(4096, socket.CMSG_LEN(4), socket.MSG_CMSG_CLOEXEC)
    fds = [int.from_bytes(data[:4], sys.byteorder, signed=True)
           for level, kind, data in anc if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS]
    if not fds:
        raise OSError(msg.decode(errors="replace").removeprefix("error: ") or "the port broker did not answer")
    return socket.socket(fileno=fds[0])


def forward(listener: socket.socket, netns: str, ip: str, port: int) -> subprocess.Popen[bytes]:
    """systemd-socket-proxyd in the netns at `netns`, accepting on `listener` (as its fd 3) and dialing
    ip:port there. Our copy of the listener can be closed after."""
    lfd = listener.fileno()

    def fd3() -> None:  # after fork, before exec: socket activation wants the socket as fd 3
        os.dup2(lfd, 3)
        os.set_inheritable(3, True)

    # $$ is the pid that nsenter and the proxy keep through exec: LISTEN_PID must be the proxy's.
    script = 'LISTEN_PID=$$ LISTEN_FDS=1 exec setpriv --pdeathsig KILL nsenter --net="$0" "$1" "$2"'
    return subprocess.Popen(["sh", "-c", script, netns, PROXY, f"{ip}:{port}"], preexec_fn=fd3, close_fds=False,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
