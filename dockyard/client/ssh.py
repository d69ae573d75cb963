"""ssh:// hosts: like docker, run `ssh ... dockyard system dial-stdio` and talk HTTP over its stdio.

ssh's stdin and stdout are one end of a socketpair, so the client holds a real socket: http.client,
hijacked streams and half-close (shutdown(SHUT_WR) -> ssh forwards EOF to the remote) work unchanged.
One ssh process per connection, as docker does; each is reaped when done.
"""

from __future__ import annotations

import atexit
import socket
import subprocess
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

REMOTE_COMMAND = ["dockyard", "system", "dial-stdio"]
_procs: list[subprocess.Popen[bytes]] = []


@dataclass(frozen=True)
class SSHTarget:
    user: str | None
    host: str
    port: int | None
    path: str = ""  # a remote socket path (ssh://host/run/x.sock), passed as --host to dial-stdio

    @classmethod
    def parse(cls, url: str) -> SSHTarget:
        u = urlsplit(url)
        if u.scheme != "ssh" or not u.hostname:
            raise ValueError(f"invalid ssh URL {url!r}: want ssh://[user@]host[:port]")
        if u.password is not None:
            raise ValueError("plain-text password is not supported")
        if u.query or u.fragment:
            raise ValueError(f"extra part in ssh URL {url!r}")
        return cls(unquote(u.username) if u.username else None, u.hostname, u.port, u.path if u.path != "/" else "")

    def command(self) -> list[str]:
        # BatchMode: never prompt on a terminal the API client does not own; -T: no remote tty.
        args = ["ssh", "-o", "ConnectTimeout=30", "-o", "BatchMode=yes", "-T"]
        if self.user:
            args += ["-l", self.user]
        if self.port:
            args += ["-p", str(self.port)]
        remote = list(REMOTE_COMMAND)
        if self.path:
            remote[1:1] = ["--host", f"unix://{self.path}"]
        return [*args, "--", self.host, *remote]


def _reap() -> None:
    _procs[:] = [p for p in _procs if p.poll() is None]


def dial(target: SSHTarget) -> socket.socket:
    """A connected socket whose far end is the remote daemon, through ssh."""
    _reap()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen(target.command(), stdin=theirs.fileno(), stdout=theirs.fileno(),
                                start_new_session=True)
    except FileNotFoundError:
        ours.close()
        raise OSError("ssh: command not found (install an ssh client)") from None
    finally:
        theirs.close()
    _procs.append(proc)
    return ours


@atexit.register
def _wait_all() -> None:
    # Our sockets are closed by now, so each ssh sees EOF and exits; do not leave zombies or orphans.
    for p in _procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    _procs.clear()

