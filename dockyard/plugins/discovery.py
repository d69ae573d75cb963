"""Finding and activating plugins, as moby's pkg/plugins (discovery.go, plugins.go).

A plugin NAME is found, in order, at:
- a unix socket `NAME.sock` or `NAME/NAME.sock` in a socket dir (dockerd's `/run/docker/plugins`,
  and Dockyard's own `<exec-root>/plugins`);
- a spec file in a spec dir (`/etc/docker/plugins`, `/usr/lib/docker/plugins`): `NAME.spec` (one
  line: the plugin's URL, `unix:///path` or `tcp://host:port`) or `NAME.json` (`{"Name", "Addr"}`),
  either also as `NAME/NAME.spec|json`.
The first use activates it (`POST /Plugin.Activate` → `{"Implements": ["VolumeDriver", ...]}`); the
answer is kept until a call finds the plugin gone, then the next use finds and activates it again.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.errors import InvalidParameter, NotFound
from dockyard.plugins.client import PluginClient, PluginGone

log = logging.getLogger("dockyard.plugins")

SOCKET_DIRS = [Path("/run/docker/plugins")]
SPEC_DIRS = [Path("/etc/docker/plugins"), Path("/usr/lib/docker/plugins")]
KINDS = ("VolumeDriver", "NetworkDriver", "IpamDriver", "LogDriver", "authz", "MetricsCollector")


@dataclass
class Plugin:
    name: str
    addr: str
    implements: list[str] = field(default_factory=list)
    client: PluginClient = field(repr=False, default=None)  # type: ignore[assignment]
    scope: str = ""  # a managed plugin's rootfs: the paths it answers with are inside it
    propagated: tuple[str, str] | None = None  # (its PropagatedMount, the host dir shared with it)

    def scoped(self, path: str) -> str:
        """A path the plugin gave, as the host sees it (moby's ScopedPath): under its PropagatedMount,
        the shared host dir (where mounts the plugin makes show up); else inside its rootfs."""
        if not self.scope or not path:
            return path
        if self.propagated:
            inside, host = self.propagated
            if path == inside or path.startswith(inside.rstrip("/") + "/"):
                return str(Path(host) / path[len(inside):].lstrip("/"))
        return str(Path(self.scope) / path.lstrip("/"))

    def call(self, method: str, body: object = None) -> dict[str, object]:
        return self.client.call(method, body)


def _is_socket(p: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(p).st_mode)
    except OSError:
        return False


class PluginStore:
    def __init__(self, socket_dirs: list[Path], spec_dirs: list[Path], retry_seconds: float = 30.0) -> None:
        self.socket_dirs = [Path(d) for d in socket_dirs]
        self.spec_dirs = [Path(d) for d in spec_dirs]
        self.retry_seconds = retry_seconds
        self._active: dict[str, Plugin] = {}
        # name → (addr, rootfs, interface types, (PropagatedMount, host dir) | None)
        self._managed: dict[str, tuple[str, str, list[str], tuple[str, str] | None]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ managed plugins (services/managed_plugins.py)

    def register_managed(self, name: str, addr: str, scope: str, types: list[str],
                         propagated: tuple[str, str] | None = None) -> None:
        with self._lock:
            self._managed[name] = (addr, scope, types, propagated)
            self._active.pop(name, None)

    def unregister_managed(self, name: str) -> None:
        with self._lock:
            self._managed.pop(name, None)
            self._active.pop(name, None)
            if name.endswith(":latest"):
                self._active.pop(name[:-len(":latest")], None)

    def _managed_entry(self, name: str) -> tuple[str, str, list[str], tuple[str, str] | None] | None:
        with self._lock:
            return self._managed.get(name) or (self._managed.get(name + ":latest") if ":" not in name else None)

    # ------------------------------------------------------------ discovery

    def locate(self, name: str) -> str | None:
        """The address of plugin `name` from the discovery dirs, None when none names it."""
        managed = self._managed_entry(name)
        if managed:
            return managed[0]
        if not name or "/" in name or name.startswith("."):
            return None
        for d in self.socket_dirs:
            for p in (d / f"{name}.sock", d / name / f"{name}.sock"):
                if _is_socket(p):
                    return f"unix://{p}"
        for d in self.spec_dirs:
            for base in (d, d / name):
                spec, js = base / f"{name}.spec", base / f"{name}.json"
                if spec.is_file():
                    url = spec.read_text().strip()
                    if not url:
                        raise InvalidParameter(f"plugin {name}: {spec} is empty")
                    return url
                if js.is_file():
                    try:
                        addr = json.loads(js.read_text()).get("Addr") or ""
                    except (ValueError, AttributeError):
                        raise InvalidParameter(f"plugin {name}: {js} is not a plugin spec (JSON with Addr)") from None
                    if not addr:
                        raise InvalidParameter(f"plugin {name}: {js} has no Addr")
                    return str(addr)
        return None

    def scan(self) -> list[str]:
        """Every plugin name the discovery dirs hold (sockets first, then spec files)."""
        with self._lock:
            names: list[str] = list(self._managed)
        for d in self.socket_dirs:
            for p in sorted(d.glob("*.sock")) + sorted(d.glob("*/*.sock")):
                n = p.stem
                if _is_socket(p) and (p.parent == d or p.parent.name == n) and n not in names:
                    names.append(n)
        for d in self.spec_dirs:
            for ext in ("spec", "json"):
                for p in sorted(d.glob(f"*.{ext}")) + sorted(d.glob(f"*/*.{ext}")):
                    n = p.stem
                    if (p.parent == d or p.parent.name == n) and n not in names:
                        names.append(n)
        return names

    # ------------------------------------------------------------ activation

    def get(self, name: str, kind: str | None = None) -> Plugin:
        """The activated plugin `name` (implementing `kind`); NotFound as moby words it."""
        with self._lock:
            if ":" not in name and name + ":latest" in self._managed:
                name += ":latest"  # a managed plugin's full name, as dockerd records it
            plugin = self._active.get(name)
        if plugin is None:
            plugin = self._activate(name)
        if kind is not None and kind not in plugin.implements:
            raise NotFound(f'plugin "{name}" found, but it does not implement {kind} '
                           f"(it implements {', '.join(plugin.implements) or 'nothing'})")
        return plugin

    def _activate(self, name: str) -> Plugin:
        managed = self._managed_entry(name)
        addr = managed[0] if managed else self.locate(name)
        if addr is None:
            raise NotFound(f'plugin "{name}" not found')
        client = PluginClient(name, addr, self.retry_seconds)
        answer = client.call("Plugin.Activate", None)
        implements = answer.get("Implements")
        if not isinstance(implements, list):
            raise InvalidParameter(f'plugin "{name}": Plugin.Activate answered no Implements list')
        if managed:  # its config's interface types say what it is (dockerd does not ask it)
            implements = managed[2]
        plugin = Plugin(name, addr, [str(k) for k in implements], client, managed[1] if managed else "",
                        managed[3] if managed else None)
        log.info("plugin %s activated at %s: implements %s", name, addr, ", ".join(plugin.implements))
        with self._lock:
            self._active[name] = plugin
        return plugin

    def all(self, kind: str) -> list[Plugin]:
        """Every discoverable plugin implementing `kind` (ones that fail to activate are skipped)."""
        out = []
        for name in self.scan():
            try:
                plugin = self.get(name)
            except Exception as e:  # noqa: BLE001 - one broken plugin must not hide the others
                log.warning("plugin %s: %s", name, e)
                continue
            if kind in plugin.implements:
                out.append(plugin)
        return out

    def active(self, kind: str) -> list[str]:
        """Names of the plugins implementing `kind` that are activated now (no discovery, no call)."""
        with self._lock:
            return sorted(n for n, p in self._active.items() if kind in p.implements)

    def forget(self, name: str) -> None:
        """A call found the plugin gone: the next use finds and activates it again."""
        with self._lock:
            self._active.pop(name, None)

    def call(self, name: str, kind: str, method: str, body: object = None) -> dict[str, object]:
        """`get(name, kind)` then call; a gone plugin is forgotten (and the error raised)."""
        plugin = self.get(name, kind)
        try:
            return plugin.call(method, body)
        except PluginGone:
            self.forget(name)
            raise
