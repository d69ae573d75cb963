"""Daemon configuration: dockerd-style flags merged over a daemon.json (Docker's keys where they apply)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.api.listen import DEFAULT_UNIX_SOCKET, parse_listen_address
from dockyard.errors import InvalidParameter
from dockyard.util import rootless

DEFAULT_SOCKET = f"unix://{DEFAULT_UNIX_SOCKET}"


@dataclass
class DaemonConfig:
    hosts: list[str] = field(default_factory=lambda: [DEFAULT_SOCKET])
    data_root: Path = Path("/var/lib/dockyard")
    exec_root: Path = Path("/run/dockyard")
    pidfile: Path | None = None
    log_level: str = "info"
    default_runtime: str = "runc"
    runtimes: dict[str, str] = field(default_factory=dict)
    registry_mirrors: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    bridge: str = ""
    bip: str = ""
    group: str = "dockyard"
    tls: bool = False
    tlsverify: bool = False
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None
    insecure_tcp: bool = False
    iptables: bool = True
    cgroup_favordynmods: bool = True  # see runtime/cgroup_tuning.py
    authorization_plugins: list[str] = field(default_factory=list)
    plugin_discovery_dirs: list[str] = field(default_factory=list)  # [] = dockerd's dirs and <exec-root>/plugins
    plugin_retry_seconds: float = 30.0  # how long a call waits for an unreachable plugin (dockerd: 30 s)
    verify_signatures: str = ""  # a public key (PEM): create/run only images signed by it (cosign's format)
    rootless: bool = False  # run by an ordinary user (issue 17): XDG defaults, user namespace (daemon/rootless.py)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockyard daemon", description="The Dockyard engine daemon (dockerd's flags).")
    p.add_argument("-H", "--host", action="append", dest="hosts", help="daemon socket(s) to listen on")
    p.add_argument("--data-root", help="root of persistent state (default /var/lib/dockyard; rootless: "
                   "~/.local/share/dockyard)")
    p.add_argument("--exec-root", help="root of runtime state (default /run/dockyard; rootless: "
                   "$XDG_RUNTIME_DIR/dockyard)")
    p.add_argument("-p", "--pidfile", help="path of the pid file")
    p.add_argument("-l", "--log-level", choices=["debug", "info", "warn", "error", "fatal"])
    p.add_argument("--config-file", default=None, help="daemon.json (default /etc/dockyard/daemon.json; rootless: "
                   "~/.config/dockyard/daemon.json)")
    p.add_argument("--default-runtime")
    p.add_argument("--add-runtime", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--registry-mirror", action="append", default=[])
    p.add_argument("--insecure-registry", action="append", default=[])
    p.add_argument("-b", "--bridge", help="attach containers to this bridge")
    p.add_argument("--bip", help="bridge IP, CIDR")
    p.add_argument("-G", "--group", help="group owning the unix socket")
    p.add_argument("--tls", action="store_true", default=None)
    p.add_argument("--tlsverify", action="store_true", default=None)
    p.add_argument("--tlscacert")
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    p.add_argument("--insecure-tcp", action="store_true", default=None,
                   help="allow plain TCP on a non-loopback address (dangerous: root over the network)")
    p.add_argument("--iptables", default=None, choices=["true", "false"])
    p.add_argument("--cgroup-favordynmods", default=None, choices=["true", "false"],
                   help="remount cgroup2 with favordynmods: fast cgroup moves for start and exec (default true)")
    p.add_argument("--authorization-plugin", action="append", default=[], metavar="NAME",
                   help="authorization plugins to load, in order")
    p.add_argument("--plugin-discovery-dir", action="append", default=[], metavar="DIR",
                   help="look for plugin sockets and spec files here instead of /run/docker/plugins, "
                        "<exec-root>/plugins, /etc/docker/plugins and /usr/lib/docker/plugins (Dockyard's own)")
    p.add_argument("--plugin-retry-seconds", type=float, default=None,
                   help="how long a call retries a plugin that cannot be reached (default 30, as dockerd)")
    p.add_argument("--verify-signatures", metavar="KEY", default=None,
                   help="refuse to create or run an image without a signature by this public key (PEM, cosign's "
                   "format) in its registry (Dockyard's)")
    p.add_argument("-D", "--debug", action="store_true")
    return p


_JSON_KEYS = {
    "hosts": "hosts", "data-root": "data_root", "exec-root": "exec_root", "pidfile": "pidfile",
    "log-level": "log_level", "default-runtime": "default_runtime", "registry-mirrors": "registry_mirrors",
    "insecure-registries": "insecure_registries", "bridge": "bridge", "bip": "bip", "group": "group",
    "tls": "tls", "tlsverify": "tlsverify", "tlscacert": "tlscacert", "tlscert": "tlscert", "tlskey": "tlskey",
    "iptables": "iptables", "cgroup-favordynmods": "cgroup_favordynmods",
    "authorization-plugins": "authorization_plugins", "plugin-discovery-dirs": "plugin_discovery_dirs",
    "plugin-retry-seconds": "plugin_retry_seconds", "verify-signatures": "verify_signatures",
}


def load(argv: list[str] | None) -> DaemonConfig:
    args = build_parser().parse_args(argv)
    cfg = DaemonConfig()
    default_config = Path("/etc/dockyard/daemon.json")
    if rootless.is_rootless():
        # Docker's rootless defaults: everything under the user's XDG directories, a socket only they reach.
        try:
            rp = rootless.paths()
        except ValueError as e:
            raise InvalidParameter(str(e)) from None
        cfg.rootless = True
        cfg.hosts = [f"unix://{rp.socket}"]
        cfg.data_root, cfg.exec_root, default_config = rp.data_root, rp.exec_root, rp.config_file
        cfg.group = ""  # the socket stays the user's own (0600)
    path = Path(args.config_file) if args.config_file else default_config
    if path.exists():
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise InvalidParameter(f"unable to configure the Dockyard daemon with file {path}: {e}") from e
        for key, value in data.items():
            if key == "runtimes":
                cfg.runtimes.update({n: r["path"] for n, r in value.items()})
            elif key in _JSON_KEYS:
                attr = _JSON_KEYS[key]
                setattr(cfg, attr, Path(value) if attr in ("data_root", "exec_root", "pidfile") else value)
    elif args.config_file:
        raise InvalidParameter(f"config file {path} does not exist")
    if args.hosts:
        cfg.hosts = args.hosts
    for h in cfg.hosts:  # refused at start, as dockerd's flag validation does, before any lock or mount
        parse_listen_address(h)
    for attr in ("data_root", "exec_root", "pidfile"):
        v = getattr(args, attr)
        if v:
            setattr(cfg, attr, Path(v))
    for attr in ("log_level", "default_runtime", "bridge", "bip", "group", "tlscacert", "tlscert", "tlskey"):
        v = getattr(args, attr)
        if v:
            setattr(cfg, attr, v)
    for attr in ("tls", "tlsverify", "insecure_tcp"):
        v = getattr(args, attr)
        if v is not None:
            setattr(cfg, attr, v)
    if args.cgroup_favordynmods is not None:
        cfg.cgroup_favordynmods = args.cgroup_favordynmods == "true"
    if args.iptables is not None:
        cfg.iptables = args.iptables == "true"
    if not cfg.iptables:
        # Published ports and NAT are nft rules; running without them is not built yet: say so.
        raise InvalidParameter("--iptables=false is not supported yet: port publishing needs our nft table")
    if args.debug:
        cfg.log_level = "debug"
    for spec in args.add_runtime:
        name, eq, rpath = spec.partition("=")
        if not eq:
            raise InvalidParameter(f"invalid runtime {spec!r}: expected NAME=PATH")
        cfg.runtimes[name] = rpath
    cfg.registry_mirrors += args.registry_mirror
    if args.authorization_plugin:  # dockerd: the flag and daemon.json may not both set it; the flag wins here
        cfg.authorization_plugins = args.authorization_plugin
    if args.plugin_discovery_dir:
        cfg.plugin_discovery_dirs = args.plugin_discovery_dir
    if args.plugin_retry_seconds is not None:
        cfg.plugin_retry_seconds = args.plugin_retry_seconds
    cfg.insecure_registries += args.insecure_registry
    if args.verify_signatures:
        cfg.verify_signatures = args.verify_signatures
    if cfg.verify_signatures and not Path(cfg.verify_signatures).is_file():  # refused at start, not at each run
        raise InvalidParameter(f"--verify-signatures: no public key file {cfg.verify_signatures}")
    return cfg
