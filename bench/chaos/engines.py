"""Several engines on one host (issue 25, item 3): the chaos daemon, a second Dockyard daemon and a
real dockerd, the last two started and stopped in turn by the chaos thread, each with a container
publishing a port. Around every start and stop (and every restart of the chaos daemon) the engines
not involved are checked: their firewall rules unchanged, their published ports answering; the
started engine's subnets must not overlap a route of another interface; no two engines open the same
file under /run, /var/run or /tmp (nor one under another's directories).

The dockerd runs with `--iptables=false`: dockerd 20.10 flushes and re-creates the host-wide DOCKER
chains at start, which would hit the other helpers' dockerds on this shared host; its containers sit
on a user network it picks the subnet of, their port published by docker-proxy.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import DOCKER_CLI, SHARED, Daemon

PORT_CHECK_TIMEOUT = 10.0  # a published port's answer; a miss is a violation, not a retry
WATCHED = ("/run/", "/var/run/", "/tmp/")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_answers(port: int) -> str | None:
    """None when http://127.0.0.1:PORT/ says ok, else what went wrong."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=PORT_CHECK_TIMEOUT) as r:
            body = r.read().decode(errors="replace")
    except Exception as e:  # noqa: BLE001 - any failure is the finding
        return f"{type(e).__name__}: {e}"
    return None if body.strip() == "ok" else f"answered {body[:60]!r}"


SENTINEL_CMD = ["sh", "-c", "mkdir -p /w && echo ok > /w/index.html && exec httpd -f -p 80 -h /w"]


def dockyard_rules(d: Daemon) -> set[str]:
    """The daemon's own firewall state: its nft tables and the iptables lines naming its table."""
    from dockyard.daemon.config import DaemonConfig
    from dockyard.daemon.wiring import instance_id

    iid = instance_id(DaemonConfig(data_root=d.data_root))
    out: set[str] = set()
    for family in ("ip", "inet"):
        text = subprocess.run(["nft", "list", "table", family, f"dockyard_{iid}"], capture_output=True,
                              text=True).stdout
        for line in text.splitlines():
            # counters and timeouts move with traffic; the rules themselves must not
            line = re.sub(r"counter packets \d+ bytes \d+", "counter", line)
            line = re.sub(r" expires \S+", "", line).strip()
            if line:
                out.add(f"{family}: {line}")
    save = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    out |= {f"iptables: {x}" for x in save.splitlines() if f"dockyard_{iid}" in x}
    return out


def open_paths(pids: list[int]) -> set[str]:
    """Files under /run, /var/run, /tmp the processes hold open."""
    out: set[str] = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(WATCHED):
                out.add(target.removesuffix(" (deleted)"))
    return out


def children(pid: int) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(p))
    return out


def routes() -> list[tuple[ipaddress.IPv4Network, str]]:
    p = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True, text=True)
    out = []
    for r in json.loads(p.stdout or "[]"):
        dst, dev = r.get("dst", ""), r.get("dev", "")
        if dst in ("default", "") or r.get("type") in ("local", "broadcast") or not dev:
            continue
        try:
            out.append((ipaddress.ip_network(dst, strict=False), dev))
        except ValueError:
            continue
    return out


def ifindex(link: str) -> int | None:
    try:
        return int(Path(f"/sys/class/net/{link}/ifindex").read_text())
    except (OSError, ValueError):
        return None


def subnets_of(host: str) -> list[tuple[ipaddress.IPv4Network, str, str]]:
    """(subnet, bridge, network name) of an engine's bridge networks, asked through its API."""
    import docker

    c = docker.DockerClient(base_url=host, version="1.41", timeout=30)
    try:
        out = []
        for net in c.api.networks():
            if net.get("Driver") != "bridge":
                continue
            full = c.api.inspect_network(net["Id"])
            bridge = (full.get("Options") or {}).get("com.docker.network.bridge.name") or f"br-{net['Id'][:12]}"
            for cfg in (full.get("IPAM") or {}).get("Config") or []:
                if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
                    out.append((ipaddress.ip_network(cfg["Subnet"]), bridge, net["Name"]))
        return out
    finally:
        c.close()


@dataclass
class Engine:
    name: str
    host: str
    dirs: list[Path]
    pids: Callable[[], list[int]]
    rules: Callable[[], set[str]]
    port: int
    ours: bool  # a Dockyard daemon (its overlaps are violations; dockerd's are noted)
    up: bool = False


@dataclass
class Engines:
    """The peers and the checks across engines."""

    main: Daemon
    main_port: int
    seed: int
    violation: Callable[[str], None]
    peer: Daemon = field(init=False)
    dockerd_state: Path = field(init=False)
    dockerd_exec: Path = field(init=False)
    dockerd_host: str = field(init=False)
    phase: int = 0
    transitions: int = 0
    notes: list[str] = field(default_factory=list)
    files_seen: dict[str, set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.peer = Daemon(Path(tempfile.mkdtemp(prefix="chaos-peer-", dir="/tmp")))
        self.dockerd_state = Path(f"/tmp/peer/chaos-{self.seed}")
        self.dockerd_exec = Path(tempfile.mkdtemp(prefix="chaos-dexec-", dir="/tmp"))
        self.dockerd_host = f"unix://{self.dockerd_state}.sock"
        self.peer_port, self.dockerd_port = free_port(), free_port()

    # -- the engines ------------------------------------------------------------------------------
    def engines(self) -> list[Engine]:
        main_pid = self.main.proc.pid if self.main.proc is not None else None
        peer_pid = self.peer.proc.pid if self.peer.proc is not None else None
        return [
            Engine("chaos daemon", self.main.host, [self.main.base], lambda: [main_pid] if main_pid else [],
                   lambda: dockyard_rules(self.main), self.main_port, True, main_pid is not None),
            Engine("peer dockyard", self.peer.host, [self.peer.base], lambda: [peer_pid] if peer_pid else [],
                   lambda: dockyard_rules(self.peer), self.peer_port, True, peer_pid is not None),
            Engine("dockerd", self.dockerd_host, [self.dockerd_state, self.dockerd_exec], self.dockerd_pids,
                   lambda: set(), self.dockerd_port, False, bool(self.dockerd_pids())),
        ]

    def dockerd_pids(self) -> list[int]:
        pidf = Path(f"{self.dockerd_state}.pid")
        try:
            pid = int(pidf.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return []
        return [pid, *children(pid)]  # dockerd and its containerd

    def docker(self, host: str, *argv: str) -> str:
        env = dict(os.environ, DOCKER_HOST=host, DOCKER_CONFIG=str(self.peer.base / "docker-config"))
        env.pop("DOCKER_CONTEXT", None)
        p = subprocess.run([DOCKER_CLI, *argv], env=env, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"docker {' '.join(argv)}: {p.stderr.strip()[-300:]}")
        return p.stdout

    def start_peer(self) -> None:
        self.peer.start()
        if not self.peer.docker("image", "inspect", "busybox", check=False).returncode == 0:
            self.peer.load_busybox()
        if self.peer.docker("start", "sentinel", check=False).returncode != 0:
            self.peer.docker("run", "-d", "--name", "sentinel", "-p", f"{self.peer_port}:80", "busybox", *SENTINEL_CMD)

    def start_dockerd(self) -> None:
        env = dict(os.environ, DOCKERD_EXTRA_ARGS=f"--exec-root {self.dockerd_exec} --iptables=false --bridge=none")
        p = subprocess.run([str(SHARED / "peers" / "start-dockerd"), str(self.dockerd_state)], env=env,
                           capture_output=True, text=True, timeout=180)
        if p.returncode != 0:
            raise RuntimeError(f"start-dockerd: {p.stderr.strip()[-300:]}")
        if not self.docker(self.dockerd_host, "network", "ls", "-q", "-f", "name=^chaosnet$").strip():
            self.docker(self.dockerd_host, "network", "create", "--subnet", "10.179.0.0/24", "chaosnet")
        if subprocess.run([DOCKER_CLI, "-H", self.dockerd_host, "start", "sentinel"],
                          capture_output=True).returncode != 0:
            self.docker(self.dockerd_host, "run", "-d", "--name", "sentinel", "--network", "chaosnet", "-p",
                        f"127.0.0.1:{self.dockerd_port}:80", "busybox", *SENTINEL_CMD)

    def stop_dockerd(self) -> None:
        subprocess.run([str(SHARED / "peers" / "stop-dockerd"), str(self.dockerd_state)], capture_output=True,
                       timeout=120)

    # -- the side loop: one step per call ------------------------------------------------------------
    STEPS = ("start peer dockyard", "start dockerd", "stop peer dockyard", "stop dockerd")

    def step(self) -> str:
        what = self.STEPS[self.phase % len(self.STEPS)]
        self.phase += 1
        involved = "peer dockyard" if "peer" in what else "dockerd"
        before = self.snapshot()
        try:
            {"start peer dockyard": self.start_peer, "start dockerd": self.start_dockerd,
             "stop peer dockyard": self.peer.stop, "stop dockerd": self.stop_dockerd}[what]()
        except Exception as e:  # noqa: BLE001 - an engine that does not start is the finding
            self.violation(f"{what} failed: {e}")
        self.transitions += 1
        self.check(what, before, involved)
        return what

    def snapshot(self) -> dict[str, set[str]]:
        return {e.name: e.rules() for e in self.engines() if e.up}

    def check(self, what: str, before: dict[str, set[str]], involved: str) -> None:
        """After `what` (done by `involved`): the others' rules unchanged and ports answering; the
        started engine's subnets clear of other interfaces' routes; no file shared between engines."""
        engines = self.engines()
        after = {e.name: e.rules() for e in engines if e.up}
        for e in engines:
            if e.name == involved or not e.up or e.name not in before:
                continue
            if before[e.name] != after.get(e.name):
                gone, added = before[e.name] - after[e.name], after[e.name] - before[e.name]
                self.violation(f"{what}: {e.name}'s firewall rules changed: gone {sorted(gone)[:3]}, "
                               f"added {sorted(added)[:3]}")
        for e in engines:
            if e.up:
                bad = port_answers(e.port)
                if bad is not None:
                    self.violation(f"after {what}: {e.name}'s published port {e.port} does not answer: {bad}")
        self.check_subnets(what, engines)
        self.check_files(what, engines)

    def check_subnets(self, what: str, engines: list[Engine]) -> None:
        rts = routes()
        for e in engines:
            if not e.up:
                continue
            try:
                nets = subnets_of(e.host)
            except Exception as ex:  # noqa: BLE001
                self.violation(f"after {what}: {e.name}'s networks not listed: {ex}")
                continue
            for subnet, bridge, name in nets:
                for dst, dev in rts:
                    if dev != bridge and dst.overlaps(subnet):
                        # ifindexes grow: the lower one was there first, the other picked a routed subnet
                        msg = (f"after {what}: {e.name}'s network {name} ({subnet} on {bridge}, ifindex "
                               f"{ifindex(bridge)}) overlaps {dst} dev {dev} (ifindex {ifindex(dev)})")
                        if e.ours:
                            self.violation(msg)
                        elif msg not in self.notes:
                            self.notes.append(msg)

    def check_files(self, what: str, engines: list[Engine]) -> None:
        held = {e.name: open_paths(e.pids()) for e in engines if e.up}
        for name, paths in held.items():
            self.files_seen.setdefault(name, set()).update(paths)
        names = sorted(held)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                shared = held[a] & held[b]
                if shared:
                    self.violation(f"after {what}: {a} and {b} both hold {sorted(shared)[:3]}")
        for e in engines:
            for other in engines:
                if other is e or e.name not in held:
                    continue
                inside = [p for p in held[e.name] if any(p.startswith(f"{d}/") for d in other.dirs)]
                if inside:
                    self.violation(f"after {what}: {e.name} holds files of {other.name}'s: {inside[:3]}")

    def teardown(self) -> None:
        if self.dockerd_pids():
            for argv in (("rm", "-f", "sentinel"), ("network", "rm", "chaosnet")):
                try:
                    self.docker(self.dockerd_host, *argv)
                except Exception:  # noqa: BLE001 - teardown goes on regardless
                    pass
        else:
            # its network's bridge stays on the host after a stop: start it once more to remove it
            try:
                self.start_dockerd()
                self.docker(self.dockerd_host, "rm", "-f", "sentinel")
                self.docker(self.dockerd_host, "network", "rm", "chaosnet")
            except Exception as e:  # noqa: BLE001
                print(f"dockerd cleanup: {e}")
        self.stop_dockerd()
        for root in (self.dockerd_state, self.dockerd_exec):
            with open("/proc/self/mountinfo") as f:
                mounts = [line.split()[4] for line in f]
            for m in sorted((m for m in mounts if m.startswith(f"{root}/")), key=len, reverse=True):
                subprocess.run(["umount", "-l", m], capture_output=True)
            shutil.rmtree(root, ignore_errors=True)
        for suffix in (".sock", ".pid"):
            Path(f"{self.dockerd_state}{suffix}").unlink(missing_ok=True)
        if self.peer.proc is None:
            try:
                self.peer.start()
            except RuntimeError as e:
                print(f"peer restart for cleanup: {e}")
        self.peer.teardown()

    def summary(self) -> dict[str, Any]:
        return {"transitions": self.transitions, "files": {k: sorted(v) for k, v in self.files_seen.items()},
                "dockerd notes": self.notes}
