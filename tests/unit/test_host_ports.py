"""The rootless launcher's port broker and the C proxy the daemon starts with its sockets
(network/host_ports.py), on loopback in this test's own netns."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path

import pytest

from dockyard.network import host_ports


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fds_of(pid: int, target: str) -> list[int]:
    """The fds of pid that point at target (those closed while listing are skipped)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                out.append(int(fd))
    return sorted(out)


def test_the_broker_hands_over_a_listening_socket_and_says_why_not(tmp_path: Path) -> None:
    srv = host_ports.serve(tmp_path / "ports.sock")
    try:
        assert os.stat(tmp_path / "ports.sock").st_mode & 0o777 == 0o600
        port = _free_port()
        lst = host_ports.request(str(tmp_path / "ports.sock"), "127.0.0.1", port)
        with lst:
            assert lst.getsockname() == ("127.0.0.1", port)
            assert lst.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
            # close-on-exec from its arrival: a runc or conmon the daemon forks meanwhile must not keep the
            # host's port open after the container is gone
            assert not lst.get_inheritable()
            with pytest.raises(OSError, match="Address already in use"):
                host_ports.request(str(tmp_path / "ports.sock"), "127.0.0.1", port)
    finally:
        srv.close()


@pytest.mark.skipif(not host_ports.proxy_available(), reason="systemd-socket-proxyd, nsenter or setpriv missing")
def test_the_proxy_carries_bytes_both_ways_and_goes_when_killed(tmp_path: Path) -> None:
    backend = socket.create_server(("127.0.0.1", 0))
    bport = backend.getsockname()[1]

    def echo() -> None:
        conn, _ = backend.accept()
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data.upper())

    threading.Thread(target=echo, daemon=True).start()
    srv = host_ports.serve(tmp_path / "ports.sock")
    port = _free_port()
    proc = None
    try:
        with host_ports.request(str(tmp_path / "ports.sock"), "127.0.0.1", port) as lst:
            proc = host_ports.forward(lst, f"/proc/{os.getpid()}/ns/net", "127.0.0.1", bport)
            inode = os.fstat(lst.fileno()).st_ino
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"through the proxy")
            assert c.recv(100) == b"THROUGH THE PROXY"
        # the proxy (exec'd in place: sh, setpriv and nsenter keep the pid) holds the socket once, as its fd 3
        assert _fds_of(proc.pid, f"socket:[{inode}]") == [3]
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        srv.close()
        backend.close()
    with socket.socket() as s:  # the proxy held the only copy of the host's side
        assert s.connect_ex(("127.0.0.1", port)) != 0
