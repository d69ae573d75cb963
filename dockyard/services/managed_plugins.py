"""Managed plugins (`docker plugin create|ls|inspect|enable|disable|set|rm`): a plugin shipped as a
rootfs and a config (`application/vnd.docker.plugin.v1+json`), run by the daemon under runc.

A plugin lives in `<data-root>/plugins/<id>/` (`config.json`, `rootfs/`); enabled, it runs as runc
container `<id>` (state in `<exec-root>/plugin-runc`) with `<exec-root>/plugins/<id>` bind-mounted at
its `/run/docker/plugins`, where it makes the socket its config names; then it is activated and
known to plugins/discovery by its name (`vieux/sshfs:latest`, or without `:latest`), like any
other plugin. Paths it answers with (a volume's Mountpoint) are inside its rootfs, as dockerd scopes
them. Settings (`set`): Env, Args, Mounts' sources, Devices' paths, where the config allows them.
Disabled at daemon shutdown and enabled again at the next start, as it was.
"""

from __future__ import annotations

import builtins
import json
import logging
import re
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from dockyard import trace
from dockyard.errors import Conflict, DockyardError, InvalidParameter, NotFound, SystemError_
from dockyard.plugins.discovery import PluginStore
from dockyard.services.events import EventBus
from dockyard.store.content import ContentStore
from dockyard.store.db import Database
from dockyard.util.mountpoint import is_mountpoint

log = logging.getLogger("dockyard.managed_plugins")

SCHEMA_V1 = """
CREATE TABLE plugins (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, enabled INTEGER NOT NULL DEFAULT 0,
    config TEXT NOT NULL, settings TEXT NOT NULL, reference TEXT NOT NULL DEFAULT '', created REAL NOT NULL)
"""
CONFIG_MEDIA_TYPE = "application/vnd.docker.plugin.v1+json"
_INTERFACE = {"docker.volumedriver/1.0": "VolumeDriver", "docker.networkdriver/1.0": "NetworkDriver",
              "docker.ipamdriver/1.0": "IpamDriver", "docker.authz/1.0": "authz", "docker.logdriver/1.0": "LogDriver",
              "docker.metricscollector/1.0": "MetricsCollector"}
_NAME_RE = re.compile(r"^(?:[a-zA-Z0-9.-]+(?::\d+)?/)?"  # a registry host, as in 127.0.0.1:5000/x/y
                      r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?$")


def normalize_name(name: str) -> str:
    """`vieux/sshfs` → `vieux/sshfs:latest`; docker.io/ (and library/) left out, as dockerd shows names."""
    n = name.strip()
    for prefix in ("docker.io/", "index.docker.io/"):
        if n.startswith(prefix):
            n = n[len(prefix):]
    if n.startswith("library/"):
        n = n[len("library/"):]
    if not _NAME_RE.match(n):
        raise InvalidParameter(f"invalid reference format: repository name ({name}) must be lowercase")
    last = n.rsplit("/", 1)[-1]
    return n if ":" in last else n + ":latest"


# Go decodes the plugin config case-insensitively: the file says "entrypoint", the API shows "Entrypoint".
_KEYS = {k.lower(): k for k in (
    "DockerVersion", "Description", "Documentation", "Interface", "Types", "Socket", "ProtocolScheme", "Entrypoint",
    "WorkDir", "User", "UID", "GID", "Network", "Type", "Linux", "Capabilities", "AllowAllDevices", "Devices",
    "PropagatedMount", "IpcHost", "PidHost", "Mounts", "Env", "Args", "rootfs", "diff_ids", "Name", "Description",
    "Settable", "Value", "Source", "Destination", "Options", "Path")}


def _go_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {_KEYS.get(k.lower(), k): _go_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_go_keys(v) for v in obj]
    return obj


def plugin_config(raw: Any) -> dict[str, Any]:
    """The config with dockerd's field names and its defaults, checked as dockerd does at create."""
    if not isinstance(raw, dict):
        raise InvalidParameter("plugin config is not a JSON object")
    c = _go_keys(raw)
    iface = c.get("Interface") or {}
    if not iface.get("Types"):
        raise InvalidParameter("plugin config: interface.types is empty")
    if not c.get("Entrypoint"):
        raise InvalidParameter("plugin config: entrypoint is empty")
    out = {
        "Args": {"Description": "", "Name": "", "Settable": None, "Value": None, **(c.get("Args") or {})},
        "Description": c.get("Description", ""), "DockerVersion": c.get("DockerVersion", ""),
        "Documentation": c.get("Documentation", ""),
        "Entrypoint": list(c["Entrypoint"]),
        "Env": [{"Description": "", "Settable": None, **e} for e in c.get("Env") or []],
        "Interface": {"Socket": iface.get("Socket", ""), "Types": list(iface["Types"]),
                      "ProtocolScheme": iface.get("ProtocolScheme", "")},
        "IpcHost": bool(c.get("IpcHost")),
        "Linux": {"AllowAllDevices": bool((c.get("Linux") or {}).get("AllowAllDevices")),
                  "Capabilities": (c.get("Linux") or {}).get("Capabilities"),
                  "Devices": (c.get("Linux") or {}).get("Devices")},
        "Mounts": c.get("Mounts"), "Network": {"Type": (c.get("Network") or {}).get("Type", "")},
        "PidHost": bool(c.get("PidHost")), "PropagatedMount": c.get("PropagatedMount", ""),
        "User": c.get("User") or {}, "WorkDir": c.get("WorkDir", ""),
        "rootfs": c.get("rootfs") or {"type": "layers", "diff_ids": []},
    }
    if not iface.get("Socket"):
        raise InvalidParameter("plugin config: interface.socket is empty")
    return out


def privileges(config: dict[str, Any]) -> list[dict[str, Any]]:
    """What the plugin asks of the host (moby's computePrivileges), for the user to grant."""
    out: list[dict[str, Any]] = []
    net = config["Network"]["Type"]
    if net not in ("", "null", "bridge"):
        out.append({"Name": "network", "Description": "permissions to access a network", "Value": [net]})
    if config.get("IpcHost"):
        out.append({"Name": "host ipc namespace", "Description": "allow access to host ipc namespace", "Value": ["true"]})
    if config.get("PidHost"):
        out.append({"Name": "host pid namespace", "Description": "allow access to host pid namespace", "Value": ["true"]})
    for m in config.get("Mounts") or []:
        if m.get("Source"):
            out.append({"Name": "mount", "Description": "host path to mount", "Value": [m["Source"]]})
    for d in config["Linux"].get("Devices") or []:
        if d.get("Path"):
            out.append({"Name": "device", "Description": "host device to access", "Value": [d["Path"]]})
    if config["Linux"].get("AllowAllDevices"):
        out.append({"Name": "allow-all-devices", "Description": "allow 'rwm' access to all devices", "Value": ["true"]})
    if config["Linux"].get("Capabilities"):
        out.append({"Name": "capabilities", "Description": "list of additional capabilities required",
                    "Value": list(config["Linux"]["Capabilities"])})
    return out


def _default_settings(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "Mounts": [dict(m) for m in config.get("Mounts") or []],
        "Env": [f"{e['Name']}={e.get('Value') or ''}" for e in config["Env"] if e.get("Value") is not None],
        "Args": list(config["Args"].get("Value") or []),
        "Devices": [dict(d) for d in config["Linux"].get("Devices") or []],
    }


class _WriterFile:
    """A content-store Writer as the file gzip writes to."""

    def __init__(self, w: Any) -> None:
        self.w = w

    def write(self, data: bytes) -> int:
        self.w.write(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


class ManagedPlugins:
    def __init__(self, db: Database, data_root: Path, exec_root: Path, store: PluginStore, events: EventBus,
                 runc: str = "runc", content: ContentStore | None = None) -> None:
        self.db = db
        self.content = content
        self.root = Path(data_root) / "plugins"
        self.sockets = Path(exec_root) / "plugins"
        self.bundles = Path(exec_root) / "plugin-bundles"
        self.runc_root = Path(exec_root) / "plugin-runc"
        self.store = store
        self.events = events
        self.runc = runc
        db.migrate("plugins", [SCHEMA_V1])

    # ------------------------------------------------------------ lookups

    def _row(self, ref: str) -> Any:
        row = None
        try:
            row = self.db.query_one("SELECT * FROM plugins WHERE name=?", (normalize_name(ref),))
        except InvalidParameter:
            pass
        if row is None and re.fullmatch(r"[0-9a-f]{1,64}", ref):
            rows = self.db.query("SELECT * FROM plugins WHERE id LIKE ?", (ref + "%",))
            if len(rows) == 1:
                row = rows[0]
        if row is None:
            raise NotFound(f'plugin "{ref}" not found')
        return row

    def _shape(self, row: Any) -> dict[str, Any]:
        return {"Id": row["id"], "Name": row["name"], "Enabled": bool(row["enabled"]),
                "Settings": json.loads(row["settings"]), "PluginReference": row["reference"],
                "Config": json.loads(row["config"])}

    def inspect(self, ref: str) -> dict[str, Any]:
        return self._shape(self._row(ref))

    def list(self, filters: dict[str, builtins.list[str]] | None = None) -> builtins.list[dict[str, Any]]:
        f = filters or {}
        for k in f:
            if k not in ("capability", "enabled"):
                raise InvalidParameter(f"invalid filter '{k}'")
        out = []
        for row in self.db.query("SELECT * FROM plugins ORDER BY created"):
            p = self._shape(row)
            if "enabled" in f and str(p["Enabled"]).lower() not in [v.lower() for v in f["enabled"]]:
                continue
            if "capability" in f:
                caps = {t.split("/")[0].removeprefix("docker.").removesuffix("driver") for t in p["Config"]["Interface"]["Types"]}
                if not caps & {v.lower().removesuffix("driver") for v in f["capability"]}:
                    continue
            out.append(p)
        return out

    def privileges_of(self, ref: str) -> builtins.list[dict[str, Any]]:
        return privileges(json.loads(self._row(ref)["config"]))

    @staticmethod
    def full_name(name: str) -> str:
        return normalize_name(name)

    def privileges_for(self, config: bytes) -> builtins.list[dict[str, Any]]:
        """What a plugin's config (as a registry serves it) asks of the host."""
        try:
            return privileges(plugin_config(json.loads(config)))
        except ValueError as e:
            raise InvalidParameter(f"invalid plugin config: {e}") from None

    # ------------------------------------------------------------ registry: install and push

    def _extract(self, remote: str, cfg: dict[str, Any], layers: builtins.list[str], rootfs: Path) -> None:
        from dockyard.store.layers import apply_layer

        assert self.content is not None
        rootfs.mkdir(parents=True, mode=0o755)
        diff_ids = []
        for digest in layers:
            with self.content.open(digest) as f:
                diff_ids.append(apply_layer(f, rootfs).diff_id)
        want = cfg["rootfs"].get("diff_ids") or []
        if want and want != diff_ids:
            raise InvalidParameter(f"plugin {remote}: its layers' diff_ids {diff_ids} are not its config's {want}")

    def upgrade(self, ref: str, remote: str, config: bytes, layers: builtins.list[str]) -> None:
        """`plugin upgrade`: a disabled plugin gets the pulled rootfs and config; its settings stay where
        the new config still has them."""
        row = self._row(ref)
        if row["enabled"]:
            raise Conflict(f"plugin must be disabled before upgrading: plugin {row['name']} is enabled")
        cfg = plugin_config(json.loads(config))
        new = self.root / row["id"] / f"rootfs.new-{secrets.token_hex(4)}"
        try:
            self._extract(remote, cfg, layers, new)
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            raise
        old = self.root / row["id"] / "rootfs"
        gone = old.with_name(f"rootfs.old-{secrets.token_hex(4)}")
        old.rename(gone)
        new.rename(old)
        shutil.rmtree(gone, ignore_errors=True)
        settings, fresh = json.loads(row["settings"]), _default_settings(cfg)
        names = {e["Name"] for e in cfg["Env"]}
        kept = {e.partition("=")[0]: e for e in settings["Env"] if e.partition("=")[0] in names}
        fresh["Env"] = [kept.get(e.partition("=")[0], e) for e in fresh["Env"]]
        (self.root / row["id"] / "config.json").write_text(json.dumps(cfg))
        self.db.execute("UPDATE plugins SET config=?, settings=?, reference=? WHERE id=?",
                        (json.dumps(cfg), json.dumps(fresh), remote, row["id"]))
        self.events.emit("plugin", "pull", row["id"], {"name": row["name"]})

    def install(self, name: str, remote: str, config: bytes, layers: builtins.list[str]) -> str:
        """`plugin install`: the pulled layers (in the content store) extracted into a new plugin's rootfs."""
        full = normalize_name(name)
        if self.db.query_one("SELECT 1 FROM plugins WHERE name=?", (full,)):
            raise Conflict(f"plugin {full!r} already exists")
        cfg = plugin_config(json.loads(config))
        pid = secrets.token_hex(32)
        try:
            self._extract(remote, cfg, layers, self.root / pid / "rootfs")
            (self.root / pid / "config.json").write_text(json.dumps(cfg))
            self.db.execute("INSERT INTO plugins(id, name, enabled, config, settings, reference, created) "
                            "VALUES(?,?,0,?,?,?,?)",
                            (pid, full, json.dumps(cfg), json.dumps(_default_settings(cfg)), remote, time.time()))
        except BaseException:
            shutil.rmtree(self.root / pid, ignore_errors=True)
            raise
        self.events.emit("plugin", "pull", pid, {"name": full})
        return pid

    def for_push(self, ref: str) -> tuple[str, bytes, builtins.list[tuple[str, int]]]:
        """(name, config bytes, [(layer digest, size)]): the rootfs as one gzip layer in the content store."""
        import gzip

        from dockyard.store.layers import write_tree

        assert self.content is not None
        row = self._row(ref)
        cfg = json.loads(row["config"])
        with tempfile.TemporaryFile() as raw:
            diff_id = write_tree(self.root / row["id"] / "rootfs", raw, layer=False)
            raw.seek(0)
            w = self.content.ingest()
            try:
                with gzip.GzipFile(fileobj=_WriterFile(w), mode="wb", mtime=0) as z:
                    shutil.copyfileobj(raw, z, 1 << 20)
                size = w.size
                digest = w.commit()
            except BaseException:
                w.abort()
                raise
        cfg["rootfs"] = {"type": "layers", "diff_ids": [diff_id]}
        return row["name"], json.dumps(cfg, separators=(",", ":")).encode(), [(digest, size)]

    # ------------------------------------------------------------ create / remove / set

    def create(self, name: str, context: IO[bytes]) -> str:
        """`docker plugin create`: a tar of config.json and rootfs/ (the CLI's archive of the dir)."""
        full = normalize_name(name)
        if self.db.query_one("SELECT 1 FROM plugins WHERE name=?", (full,)):
            raise Conflict(f"plugin {full!r} already exists")
        pid = secrets.token_hex(32)
        dest = self.root / pid
        dest.mkdir(parents=True, mode=0o700)
        try:
            with tarfile.open(fileobj=context, mode="r|*") as tar:
                tar.extractall(dest, filter="tar")
            cfg_file = dest / "config.json"
            if not cfg_file.is_file():
                raise InvalidParameter("plugin create: the context has no config.json")
            if not (dest / "rootfs").is_dir():
                raise InvalidParameter("plugin create: the context has no rootfs directory")
            try:
                config = plugin_config(json.loads(cfg_file.read_text()))
            except ValueError as e:
                raise InvalidParameter(f"plugin create: config.json: {e}") from None
            cfg_file.write_text(json.dumps(config))
            self.db.execute("INSERT INTO plugins(id, name, enabled, config, settings, created) VALUES(?,?,0,?,?,?)",
                            (pid, full, json.dumps(config), json.dumps(_default_settings(config)), time.time()))
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        self.events.emit("plugin", "create", pid, {"name": full})
        return pid

    def remove(self, ref: str, force: bool = False) -> None:
        row = self._row(ref)
        if row["enabled"]:
            if not force:
                raise Conflict(f"plugin must be disabled before removing: plugin {row['name']} is enabled")
            self._stop(row)
        self._unshare_propagated(row["id"])
        self.db.execute("DELETE FROM plugins WHERE id=?", (row["id"],))
        shutil.rmtree(self.root / row["id"], ignore_errors=True)
        self.events.emit("plugin", "remove", row["id"], {"name": row["name"]})

    def set(self, ref: str, args: builtins.list[str]) -> None:
        """`docker plugin set NAME KEY=VALUE | mount.source=... | args=...`, where the config allows it."""
        row = self._row(ref)
        if row["enabled"]:
            raise Conflict(f"cannot set on an active plugin, disable plugin before setting: plugin {row['name']} is enabled")
        config, settings = json.loads(row["config"]), json.loads(row["settings"])
        for arg in args:
            key, eq, value = str(arg).partition("=")
            if not eq:
                raise InvalidParameter(f"invalid argument {arg!r}: expected KEY=VALUE")
            k, _, field = key.partition(".")
            env = next((e for e in config["Env"] if e["Name"] == k), None)
            mount = next((m for m in config.get("Mounts") or [] if m.get("Name") == k), None)
            if env is not None and not field:
                if "value" not in (env.get("Settable") or []):
                    raise InvalidParameter(f"setting {k!r} is not settable")
                settings["Env"] = [e for e in settings["Env"] if e.partition("=")[0] != k] + [f"{k}={value}"]
            elif mount is not None and field in ("", "source"):
                if "source" not in (mount.get("Settable") or []):
                    raise InvalidParameter(f"{k!r} is not settable")
                for m in settings["Mounts"]:
                    if m.get("Name") == k:
                        m["Source"] = value
            elif k == config["Args"].get("Name") and k and not field:
                if "value" not in (config["Args"].get("Settable") or []):
                    raise InvalidParameter(f"{k!r} is not settable")
                settings["Args"] = value.split()
            else:
                raise InvalidParameter(f"setting {k!r} not found in the plugin configuration")
        self.db.execute("UPDATE plugins SET settings=? WHERE id=?", (json.dumps(settings), row["id"]))

    # ------------------------------------------------------------ enable / disable

    def enable(self, ref: str, timeout: int = 30) -> None:
        row = self._row(ref)
        if row["enabled"]:
            raise Conflict(f"plugin already enabled: plugin {row['name']} is enabled")
        self._start(row, timeout)
        self.db.execute("UPDATE plugins SET enabled=1 WHERE id=?", (row["id"],))
        self.events.emit("plugin", "enable", row["id"], {"name": row["name"]})

    def disable(self, ref: str, force: bool = False) -> None:
        row = self._row(ref)
        if not row["enabled"]:
            raise Conflict(f"plugin is already disabled: plugin {row['name']} is disabled")
        self._stop(row)
        self.db.execute("UPDATE plugins SET enabled=0 WHERE id=?", (row["id"],))
        self.events.emit("plugin", "disable", row["id"], {"name": row["name"]})

    def _spec(self, row: Any) -> dict[str, Any]:
        from dockyard.runtime.spec import SpecInput, build_spec
        from dockyard.wire.container import DeviceMapping

        config, settings = json.loads(row["config"]), json.loads(row["settings"])
        rootfs = self.root / row["id"] / "rootfs"
        sockdir = self.sockets / row["id"]
        mounts: builtins.list[dict[str, Any]] = [{"destination": "/run/docker/plugins", "type": "bind",
                                          "source": str(sockdir), "options": ["rbind", "rprivate", "rw"]}]
        for m in settings["Mounts"]:
            if not m.get("Source") and m.get("Type", "bind") == "bind":
                continue
            opts = list(m.get("Options") or ["rbind", "rprivate"])
            mounts.append({"destination": m["Destination"], "type": m.get("Type") or "bind",
                           "source": m.get("Source") or "none", "options": opts})
        net = config["Network"]["Type"]
        env = [*settings["Env"]]
        inp = SpecInput(
            rootfs=str(rootfs), args=[*config["Entrypoint"], *settings["Args"]], env=env,
            cwd=config.get("WorkDir") or "/", cap_add=list(config["Linux"].get("Capabilities") or []),
            mounts=mounts, netns="host" if net == "host" else None, ipc_host=bool(config.get("IpcHost")),
            pid_host=bool(config.get("PidHost")), hostname="",
            devices=[DeviceMapping(path_on_host=d["Path"], path_in_container=d["Path"], cgroup_permissions="rwm")
                     for d in settings["Devices"] if d.get("Path")],
        )
        spec = build_spec(inp)
        prop = config.get("PropagatedMount") or ""
        if prop:  # a dir shared with the host: mounts the plugin makes under it are seen outside
            spec["mounts"].append({"destination": prop, "type": "bind", "source": str(self._propagated(row["id"])),
                                   "options": ["rbind", "rw", "rshared"]})
            spec["linux"]["rootfsPropagation"] = "rshared"
        return spec

    def _propagated(self, pid: str) -> Path:
        return self.root / pid / "propagated-mount"

    def _share_propagated(self, pid: str) -> None:
        """moby's propagated-mount: the dir bind-mounted on itself and made rshared, once."""
        d = self._propagated(pid)
        d.mkdir(exist_ok=True, mode=0o755)
        if not is_mountpoint(d):
            with trace.step("mount", f"mount --bind {d} {d}; mount --make-rshared {d}",
                            "the plugin's PropagatedMount: what it mounts there is seen by the host and containers"):
                for args in (["--bind", str(d), str(d)], ["--make-rshared", str(d)]):
                    p = subprocess.run(["mount", *args], capture_output=True, text=True)
                    if p.returncode != 0:
                        raise SystemError_(f"propagated mount of plugin {pid[:12]}: {p.stderr.strip()}")

    def _unshare_propagated(self, pid: str) -> None:
        d = self._propagated(pid)
        if d.exists():
            subprocess.run(["umount", "--recursive", "--lazy", str(d)], capture_output=True)

    def _runc(self, *args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([self.runc, "--root", str(self.runc_root), *args], capture_output=True, text=True, **kw)
        if check and p.returncode != 0:
            raise SystemError_(f"runc {args[0]}: {p.stderr.strip()}")
        return p

    def _start(self, row: Any, timeout: int) -> None:
        config = json.loads(row["config"])
        pid, name = row["id"], row["name"]
        sockdir = self.sockets / pid
        shutil.rmtree(sockdir, ignore_errors=True)
        sockdir.mkdir(parents=True, mode=0o700)
        bundle = self.bundles / pid
        bundle.mkdir(parents=True, exist_ok=True, mode=0o700)
        if config.get("PropagatedMount"):
            self._share_propagated(pid)
        (bundle / "config.json").write_text(json.dumps(self._spec(row)))
        self._runc("delete", "--force", pid, check=False)  # a leftover of a daemon that died
        with trace.about(f"plugin:{name}"), trace.step("runtime", f"runc run --detach --bundle {bundle} {pid}",
                                                        f"plugin {name} is enabled: its entrypoint runs under runc"):
            with open(bundle / "plugin.log", "ab") as out:  # the plugin's stdout and stderr, runc's errors too
                p = subprocess.run([self.runc, "--root", str(self.runc_root), "run", "--detach", "--bundle",
                                    str(bundle), "--pid-file", str(bundle / "pid"), pid],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            if p.returncode != 0:
                tail = (bundle / "plugin.log").read_bytes()[-500:].decode(errors="replace").strip()
                self._stop(row)
                raise SystemError_(f"plugin {name}: runc run: {tail}")
        sock = sockdir / config["Interface"]["Socket"]
        deadline = time.monotonic() + max(timeout, 1)
        while not sock.exists():
            if time.monotonic() > deadline or not self._running(pid):
                tail = (bundle / "plugin.log").read_bytes()[-500:].decode(errors="replace").strip()
                self._stop(row)
                raise SystemError_(f"plugin {name} did not make its socket {config['Interface']['Socket']} "
                                   f"within {timeout}s" + (f": {tail}" if tail else ""))
            time.sleep(0.05)
        types = [_INTERFACE.get(t, t) for t in config["Interface"]["Types"]]
        prop = config.get("PropagatedMount") or ""
        self.store.register_managed(name, f"unix://{sock}", str(self.root / pid / "rootfs"), types,
                                    (prop, str(self._propagated(pid))) if prop else None)
        try:
            self.store.get(name)
        except DockyardError:
            self._stop(row)
            raise

    def _running(self, pid: str) -> bool:
        p = self._runc("state", pid, check=False)
        return p.returncode == 0 and json.loads(p.stdout or "{}").get("status") in ("running", "created")

    def _stop(self, row: Any) -> None:
        pid = row["id"]
        self.store.unregister_managed(row["name"])
        with trace.about(f"plugin:{row['name']}"), trace.step("runtime", f"runc kill {pid} TERM; runc delete {pid}",
                                                               f"plugin {row['name']} is disabled"):
            if self._running(pid):
                self._runc("kill", pid, "TERM", check=False)
                deadline = time.monotonic() + 10
                while self._running(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
            self._runc("delete", "--force", pid, check=False)
        self._unshare_propagated(pid)
        shutil.rmtree(self.sockets / pid, ignore_errors=True)
        shutil.rmtree(self.bundles / pid, ignore_errors=True)

    # ------------------------------------------------------------ daemon start and stop

    def restore(self) -> None:
        """At daemon start: the plugins that were enabled run again."""
        for row in self.db.query("SELECT * FROM plugins WHERE enabled=1"):
            try:
                self._start(row, 30)
            except DockyardError as e:
                log.warning("plugin %s: %s", row["name"], e.message)

    def shutdown(self) -> None:
        for row in self.db.query("SELECT * FROM plugins WHERE enabled=1"):
            self._stop(row)

