"""Published ports of a rootless daemon (issue 17): RootlessKit's port API.

The daemon runs in a network namespace of its own; a `-p 8080:80` there is our usual DNAT rule (and the
held socket of network/ports.py) inside it. To reach it from the host, RootlessKit's builtin port driver
listens on the host's address and port and connects to the same port on 127.0.0.1 inside, which the
DNAT takes on to the container. The API is HTTP on `$ROOTLESSKIT_STATE_DIR/api.sock`:
`POST /v1/ports` {"proto", "parentIP", "parentPort", "childPort"} -> {"id", ...}; `DELETE /v1/ports/{id}`.
TCP ports with a broker (the launcher outside) go instead through systemd-socket-proxyd in the container's
netns (network/host_ports.py); UDP always through RootlessKit.

Without subordinate ids there is no RootlessKit (daemon/rootless.py runs its own one-uid namespace):
then slirp4netns's own API forwards the port (`add_hostfwd` to the namespace's 10.0.2.100, where
the same DNAT takes it)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
from typing import Any

from dockyard import trace
from dockyard.errors import InvalidParameter, SystemError_
from dockyard.network import host_ports
from dockyard.util import rootless


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("rootlesskit", timeout=10)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.path)
        self.sock = s


class PortDriver:
    """Adds and removes host-side listeners through RootlessKit's API."""

    def __init__(self, api_sock: str, unprivileged_port_start: int = 1024, broker: str | None = None) -> None:
        self.api_sock = api_sock
        self.port_start = unprivileged_port_start
        # TCP through the launcher's broker and systemd-socket-proxyd in the container's netns
        # (network/host_ports.py); None: everything through RootlessKit.
        self.broker = broker if broker and host_ports.proxy_available() else None
        self._proxies: dict[int, list[subprocess.Popen[bytes]]] = {}
        self._next_proxy = 1 << 30  # ids apart from RootlessKit's

    @classmethod
    def from_env(cls) -> PortDriver | None:
        try:
            start = int(os.environ.get("DOCKYARD_ROOTLESS_PORT_START", "1024"))
        except ValueError:
            start = 1024
        slirp = os.environ.get("DOCKYARD_ROOTLESS_SLIRP_API")
        if slirp:
            return SlirpPortDriver(slirp, start)
        state = os.environ.get("ROOTLESSKIT_STATE_DIR")
        if not state:
            return None
        return cls(os.path.join(state, "api.sock"), start, os.environ.get(rootless.PORT_BROKER_ENV))

    def _publish(self, spec: dict[str, Any]) -> int:
        status, out = self._call("POST", "/v1/ports", spec)
        if status // 100 != 2:
            try:
                msg = json.loads(out).get("message") or out.decode()
            except ValueError:
                msg = out.decode(errors="replace")
            raise SystemError_(f"rootlesskit could not publish {spec['parentIP']}:{spec['parentPort']}/"
                               f"{spec['proto']} on the host: {msg.strip()}")
        return int(json.loads(out)["id"])

    def _unpublish(self, port_id: int) -> str:
        status, _out = self._call("DELETE", f"/v1/ports/{port_id}")
        return f"HTTP {status}"

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        conn = _UnixHTTP(self.api_sock)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def add(self, proto: str, host_ip: str, port: int, target: tuple[str, str, int] | None = None) -> int:
        """Listen on the host's host_ip:port, forwarding to port inside (through our DNAT) or, for TCP with a
        target (the container's netns path, address and port) and a broker, straight into the container.
        The port's id, for remove."""
        if 0 < port < self.port_start:
            # dockerd-rootless's words (rootlesskit-docker-proxy), with the sysctl to change
            raise InvalidParameter(
                f"cannot expose privileged port {port}, you can add 'net.ipv4.ip_unprivileged_port_start={port}' "
                f"to /etc/sysctl.conf (currently {self.port_start}), or choose a larger port number "
                f"(>= {self.port_start})")
        if proto == "tcp" and target is not None and self.broker is not None:
            return self._add_proxy(host_ip or "0.0.0.0", port, *target)
        spec = {"proto": proto, "parentIP": host_ip or "0.0.0.0", "parentPort": port, "childPort": port}
        with trace.step("socket", f"rootlesskit: listen {proto} {spec['parentIP']}:{port} on the host -> :{port} inside",
                        "-p in rootless mode: the host side of the port is RootlessKit's, in the host's network "
                        "namespace; it connects to the daemon's namespace, where the DNAT rule goes on") as st:
            pid = self._publish(spec)
            st.result = f"port id {pid}"
        return pid

    def _add_proxy(self, host_ip: str, port: int, netns: str, ip: str, cport: int) -> int:
        assert self.broker is not None
        with trace.step("socket", f"listen tcp {host_ip}:{port} on the host (the launcher's) -> "
                        f"systemd-socket-proxyd in the container's netns -> {ip}:{cport}",
                        "-p in rootless mode: the launcher outside holds the host's side; a C proxy dialing inside "
                        "the container carries it, with no bridge, veth or NAT on the way") as st:
            try:
                listener = host_ports.request(self.broker, host_ip, port)
            except OSError as e:
                raise SystemError_(f"could not publish {host_ip}:{port}/tcp on the host: "
                                   f"{e.strerror or e}") from None
            # One proxy per CPU (up to 4) accepting on the same socket: each is one thread (RootlessKit's
            # and rootlessport's Go runtimes use several), so connections spread over the CPUs.
            with listener:
                procs = [host_ports.forward(listener, netns, ip, cport) for _ in range(min(os.cpu_count() or 1, 4))]
            pid = self._next_proxy
            self._next_proxy += 1
            self._proxies[pid] = procs
            st.result = "proxy pids " + " ".join(str(p.pid) for p in procs)
        return pid

    def remove(self, port_id: int) -> None:
        procs = self._proxies.pop(port_id, None)
        if procs is not None:
            with trace.step("socket", "stop systemd-socket-proxyd " + " ".join(str(p.pid) for p in procs),
                            "the container's published port goes (its host socket with it)") as st:
                for p in procs:
                    p.kill()
                for p in procs:
                    p.wait()
                st.result = "stopped"
            return
        with trace.step("socket", f"rootlesskit: stop listening (port id {port_id})",
                        "the container's published port goes") as st:
            st.result = self._unpublish(port_id)


class SlirpPortDriver(PortDriver):
    """slirp4netns's API (`--api-socket`): one JSON request per connection."""

    def _slirp(self, request: dict[str, Any]) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.api_sock)
            s.sendall(json.dumps(request).encode())
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        answer: dict[str, Any] = json.loads(data or b"{}")
        return answer

    def _publish(self, spec: dict[str, Any]) -> int:
        out = self._slirp({"execute": "add_hostfwd", "arguments": {
            "proto": spec["proto"], "host_addr": spec["parentIP"], "host_port": spec["parentPort"],
            "guest_port": spec["childPort"]}})
        if "error" in out:
            raise SystemError_(f"slirp4netns could not publish {spec['parentIP']}:{spec['parentPort']}/"
                               f"{spec['proto']} on the host: {out['error'].get('desc', out['error'])}")
        return int(out["return"]["id"])

    def _unpublish(self, port_id: int) -> str:
        out = self._slirp({"execute": "remove_hostfwd", "arguments": {"id": port_id}})
        return "removed" if "return" in out else str(out.get("error"))
