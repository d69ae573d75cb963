"""Volumes: Docker's `local` driver. Data lives at `data_root/volumes/<name>/_data`.

A volume with `type`/`device`/`o` options (tmpfs, `o=bind`, ...) is mounted on `_data` at first use
and unmounted when no container references it any more, as Docker's local driver does.

Any other driver is a volume plugin (`VolumeDriver.*` over plugins/): the plugin makes, mounts and
removes the volume; we keep its row (name, driver, labels, options). A container mounts it at start
(`VolumeDriver.Mount` with the container's id as ID) and unmounts it at exit: `volume_mounts` holds
who has it mounted, so each container's Mount is matched by one Unmount, across daemon restarts.
`volume_refs` records which containers use which volume: that is Docker's "in use" (stopped
containers count) and what `dangling` means.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from dockyard import trace
from dockyard.errors import Conflict, DockyardError, InvalidParameter, NotFound, SystemError_
from dockyard.plugins.discovery import PluginStore
from dockyard.services.events import EventBus
from dockyard.store.db import Database
from dockyard.util.filters import normalize_filters
from dockyard.util.mountpoint import is_mountpoint

log = logging.getLogger("dockyard.volumes")
VOLUME_DRIVER = "VolumeDriver"

SCHEMA_V1 = """
CREATE TABLE volumes (
    name TEXT PRIMARY KEY, driver TEXT NOT NULL, mountpoint TEXT NOT NULL, created REAL NOT NULL,
    labels TEXT NOT NULL, options TEXT NOT NULL, anonymous INTEGER NOT NULL DEFAULT 0);
CREATE TABLE volume_refs (
    volume TEXT NOT NULL REFERENCES volumes(name), container_id TEXT NOT NULL,
    PRIMARY KEY (volume, container_id));
CREATE INDEX volume_refs_container ON volume_refs(container_id)
"""
SCHEMA_V2 = """
CREATE TABLE volume_mounts (
    volume TEXT NOT NULL, container_id TEXT NOT NULL, mountpoint TEXT NOT NULL,
    PRIMARY KEY (volume, container_id))
"""

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
NAME_MAX = 255
ANON_LABEL = "com.docker.volume.anonymous"
VALID_OPTS = {"type", "device", "o"}
LIST_FILTERS = {"name", "driver", "label", "dangling"}
PRUNE_FILTERS = {"label", "label!", "all"}


def validate_volume_name(name: str) -> None:
    if len(name) == 1:
        raise InvalidParameter(
            f"create {name}: volume name is too short, names should be at least two alphanumeric characters"
        )
    if len(name) > NAME_MAX:  # the name is a directory's: longer ones failed in mkdir (a 500, in dockerd too)
        raise InvalidParameter(f"create {name[:64]}...: volume name is too long, names may have at most {NAME_MAX} characters")
    if not NAME_RE.match(name):
        raise InvalidParameter(
            f'create {name}: "{name}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path'
        )


def _bool_filter(name: str, vals: list[str]) -> bool:
    v = vals[-1].lower()
    if v in ("1", "true"):
        return True
    if v in ("0", "false"):
        return False
    raise InvalidParameter(f"invalid filter '{name}={vals[-1]}'")


def _labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


def _mounted(path: Path) -> bool:
    return is_mountpoint(path)


def dir_size(path: Path) -> int:
    """Bytes of regular files under path (hard links counted once), like Docker's directory.Size."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


class VolumeService:
    def __init__(self, db: Database, data_root: Path, events: EventBus, plugins: PluginStore | None = None) -> None:
        self.db = db
        self.plugins = plugins
        self._scopes: dict[str, str] = {}  # volume plugin → its Capabilities' Scope
        self.root = Path(data_root) / "volumes"
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o701)
        self.events = events
        db.migrate("volumes", [SCHEMA_V1, SCHEMA_V2])

    # ------------------------------------------------------------ shape

    def _shape(self, row: Any) -> dict[str, Any]:
        labels = json.loads(row["labels"])
        options = json.loads(row["options"])
        return {
            "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["created"])),
            "Driver": row["driver"],
            "Labels": labels or None,
            "Mountpoint": row["mountpoint"],
            "Name": row["name"],
            "Options": options or None,
            "Scope": "local",
        }

    # ------------------------------------------------------------ volume plugins

    def _driver_call(self, driver: str, method: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        """VolumeDriver.<method> of plugin `driver`; errors worded as dockerd's volume store."""
        if self.plugins is None:
            raise NotFound(f'{what}: error looking up volume plugin {driver}: plugin "{driver}" not found')
        try:
            plugin = self.plugins.get(driver, VOLUME_DRIVER)
        except NotFound as e:
            raise NotFound(f"{what}: error looking up volume plugin {driver}: {e.message}") from None
        try:
            return self.plugins.call(plugin.name, VOLUME_DRIVER, f"{VOLUME_DRIVER}.{method}", body)
        except DockyardError as e:
            raise type(e)(f"{what}: {VOLUME_DRIVER}.{method}: {e.message}") from None

    def _scoped(self, driver: str, path: str) -> str:
        """A managed plugin answers with paths inside its rootfs (dockerd's ScopedPath)."""
        if self.plugins is None or not path:
            return path
        return self.plugins.get(driver, VOLUME_DRIVER).scoped(path)

    def _scope(self, driver: str) -> str:
        """VolumeDriver.Capabilities' Scope (local or global), asked once per driver; local if it will not say."""
        if driver not in self._scopes:
            try:
                caps = self._driver_call(driver, "Capabilities", {}, "capabilities").get("Capabilities") or {}
                self._scopes[driver] = "global" if caps.get("Scope") == "global" else "local"
            except DockyardError:
                return "local"
        return self._scopes[driver]

    def _plugin_shape(self, row: Any) -> dict[str, Any]:
        """inspect of a plugin volume: its Mountpoint and Status from VolumeDriver.Get (the Mountpoint
        from VolumeDriver.Path when Get gives none), its Scope from the driver's Capabilities."""
        v = self._shape(row)
        got = self._driver_call(row["driver"], "Get", {"Name": row["name"]}, f"get {row['name']}")
        vol = got.get("Volume") or {}
        mp = str(vol.get("Mountpoint") or "")
        if not mp:
            path = self._driver_call(row["driver"], "Path", {"Name": row["name"]}, f"get {row['name']}")
            mp = str(path.get("Mountpoint") or "")
        v["Mountpoint"] = self._scoped(row["driver"], mp) or v["Mountpoint"]
        v["Scope"] = self._scope(row["driver"])
        if vol.get("Status"):
            v["Status"] = vol["Status"]
        return v

    def _row(self, name: str) -> Any:
        row = self.db.query_one("SELECT * FROM volumes WHERE name=?", (name,))
        if row is None:
            raise NotFound(f"get {name}: no such volume")
        return row

    # ------------------------------------------------------------ API operations

    def create(
        self,
        name: str | None = None,
        driver: str = "local",
        driver_opts: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        anonymous: bool = False,
    ) -> dict[str, Any]:
        driver = driver or "local"
        opts = dict(driver_opts or {})
        labels = dict(labels or {})
        if not name:
            name = secrets.token_hex(32)
            anonymous = True
        if driver == "local":  # dockerd's rules for a name are the local driver's; a plugin judges its own
            validate_volume_name(name)
        elif "/" in name or name in (".", ".."):
            raise InvalidParameter(f"create {name}: invalid volume name")
        existing = self.db.query_one("SELECT * FROM volumes WHERE name=?", (name,))
        if existing is not None:
            return self._shape(existing)
        if driver != "local":
            return self._create_by_plugin(name, driver, opts, labels, anonymous)
        for k in opts:
            if k not in VALID_OPTS:
                raise InvalidParameter(f'create {name}: invalid option: "{k}"')
        if opts.get("type") and not opts.get("device"):
            raise InvalidParameter(f"create {name}: missing required option: \"device\"")
        if "bind" in opts.get("o", "").split(",") and not Path(opts.get("device", "")).is_dir():
            raise InvalidParameter(
                f"create {name}: failed to mount local volume: mount {opts.get('device')}: no such file or directory"
            )
        if anonymous:
            labels.setdefault(ANON_LABEL, "")
        data = self.root / name / "_data"
        # bytes first, metadata second: the directory exists before the row that points at it
        with trace.about(f"volume:{name}"), trace.step(
                "volume", f"mkdir {data}", "a volume is a directory the daemon keeps; containers get it bind-mounted"
                + (f" (mounted with {opts} at first use)" if opts else "")):
            data.mkdir(parents=True, exist_ok=True)
        try:
            self.db.execute(
                "INSERT INTO volumes(name, driver, mountpoint, created, labels, options, anonymous) "
                "VALUES(?,?,?,?,?,?,?)",
                (name, driver, str(data), time.time(), json.dumps(labels), json.dumps(opts), int(anonymous)),
            )
        except Exception:
            existing = self.db.query_one("SELECT * FROM volumes WHERE name=?", (name,))
            if existing is not None:  # lost a race with a concurrent create: Docker returns it
                return self._shape(existing)
            raise
        self.events.emit("volume", "create", name, {"driver": driver})
        return self._shape(self._row(name))

    def _create_by_plugin(self, name: str, driver: str, opts: dict[str, str], labels: dict[str, str],
                          anonymous: bool) -> dict[str, Any]:
        if anonymous:
            labels.setdefault(ANON_LABEL, "")
        if self.plugins is not None:
            with contextlib.suppress(DockyardError):  # a managed plugin's full name (vieux/sshfs:latest)
                driver = self.plugins.get(driver, VOLUME_DRIVER).name
        with trace.about(f"volume:{name}"), trace.step(
                "volume", f"POST /VolumeDriver.Create {{Name: {name}, Opts: {opts}}} to plugin {driver}",
                f"volume driver {driver} is a plugin: it makes the volume") as s:
            self._driver_call(driver, "Create", {"Name": name, "Opts": opts}, f"create {name}")
            s.result = "created"
        try:
            self.db.execute(
                "INSERT INTO volumes(name, driver, mountpoint, created, labels, options, anonymous) "
                "VALUES(?,?,?,?,?,?,?)",
                (name, driver, "", time.time(), json.dumps(labels), json.dumps(opts), int(anonymous)),
            )
        except Exception:
            existing = self.db.query_one("SELECT * FROM volumes WHERE name=?", (name,))
            if existing is not None:
                return self._shape(existing)
            raise
        self.events.emit("volume", "create", name, {"driver": driver})
        return self._shape(self._row(name))

    def inspect(self, name: str) -> dict[str, Any]:
        row = self._row(name)
        return self._plugin_shape(row) if row["driver"] != "local" else self._shape(row)

    def exists(self, name: str) -> bool:
        return self.db.query_one("SELECT 1 FROM volumes WHERE name=?", (name,)) is not None

    def users(self, name: str) -> builtins.list[str]:
        rows = self.db.query("SELECT container_id FROM volume_refs WHERE volume=? ORDER BY container_id", (name,))
        return [r[0] for r in rows]

    def list(self, filters: Any = None) -> dict[str, Any]:
        f = normalize_filters(filters)
        for k in f:
            if k not in LIST_FILTERS:
                raise InvalidParameter(f"invalid filter '{k}'")
        used = {r[0] for r in self.db.query("SELECT DISTINCT volume FROM volume_refs")}
        out = []
        for row in self.db.query("SELECT * FROM volumes ORDER BY created, name"):
            v = self._shape(row)
            if "name" in f and not any(n in row["name"] for n in f["name"]):
                continue
            if "driver" in f and row["driver"] not in f["driver"]:
                continue
            if "label" in f and not _labels_match(v["Labels"] or {}, f["label"]):
                continue
            if "dangling" in f and _bool_filter("dangling", f["dangling"]) == (row["name"] in used):
                continue
            out.append(v)
        warnings: builtins.list[str] = []
        known = {v["Name"] for v in out}
        for driver, vols in self._plugin_lists(warnings):
            for pv in vols:
                vname = str(pv.get("Name") or "")
                if not vname or vname in known or ("driver" in f and driver not in f["driver"]):
                    continue
                if ("name" in f and not any(n in vname for n in f["name"])) or "label" in f:
                    continue
                if "dangling" in f and not _bool_filter("dangling", f["dangling"]):
                    continue
                known.add(vname)
                out.append({"CreatedAt": "", "Driver": driver, "Labels": None, "Mountpoint": pv.get("Mountpoint", ""),
                            "Name": vname, "Options": None, "Scope": "local"})
        return {"Volumes": out, "Warnings": warnings}

    def _plugin_lists(self, warnings: builtins.list[str]) -> builtins.list[tuple[str, builtins.list[Any]]]:
        """VolumeDriver.List of each plugin volume driver in use (by a volume of ours, or active)."""
        if self.plugins is None:
            return []
        drivers = {r[0] for r in self.db.query("SELECT DISTINCT driver FROM volumes WHERE driver != 'local'")}
        out = []
        for driver in sorted(drivers):
            try:
                vols = self._driver_call(driver, "List", {}, "list").get("Volumes") or []
            except DockyardError as e:
                warnings.append(e.message)
                continue
            out.append((driver, vols if isinstance(vols, builtins.list) else []))
        return out

    def remove(self, name: str, force: bool = False) -> None:
        try:
            self._row(name)
        except NotFound:
            if force:
                return
            raise
        users = self.users(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        self._destroy(name)

    def prune(self, filters: Any = None) -> dict[str, Any]:
        f = normalize_filters(filters)
        for k in f:
            if k not in PRUNE_FILTERS:
                raise InvalidParameter(f"invalid filter '{k}'")
        include_named = _bool_filter("all", f["all"]) if "all" in f else False
        deleted: list[str] = []
        reclaimed = 0
        rows = self.db.query(
            "SELECT * FROM volumes WHERE name NOT IN (SELECT volume FROM volume_refs) ORDER BY name"
        )
        for row in rows:
            labels = json.loads(row["labels"])
            if not include_named and not row["anonymous"]:
                continue
            if "label" in f and not _labels_match(labels, f["label"]):
                continue
            if "label!" in f and any(_labels_match(labels, [w]) for w in f["label!"]):
                continue
            local = row["driver"] == "local"
            size = dir_size(Path(row["mountpoint"])) if local and not json.loads(row["options"]).get("type") else 0
            try:
                self._destroy(row["name"])
            except DockyardError:
                continue
            deleted.append(row["name"])
            reclaimed += size
        self.events.emit("volume", "prune", "", {"reclaimed": str(reclaimed)})
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}

    def usage(self) -> builtins.list[dict[str, Any]]:
        """Volumes with UsageData {Size, RefCount} for `system df`."""
        out = []
        for row in self.db.query("SELECT * FROM volumes ORDER BY name"):
            v = self._shape(row)
            size = dir_size(Path(row["mountpoint"])) if row["driver"] == "local" else -1  # dockerd: -1, not local
            v["UsageData"] = {"Size": size, "RefCount": len(self.users(row["name"]))}
            out.append(v)
        return out

    # ------------------------------------------------------------ used by containers

    def mount_path(self, name: str, cid: str = "") -> Path:
        """The host path to bind into container `cid`; mounts tmpfs/bind-option volumes on first use,
        and a plugin's volume once per container (VolumeDriver.Mount, ID = the container's id)."""
        row = self._row(name)
        if row["driver"] != "local":
            return self._plugin_mount(row, cid)
        data = Path(row["mountpoint"])
        opts = json.loads(row["options"])
        if opts.get("type") or opts.get("o"):
            data.mkdir(parents=True, exist_ok=True)
            if not _mounted(data):
                cmd = ["mount", "-t", opts.get("type") or "none"]
                if opts.get("o"):
                    cmd += ["-o", opts["o"]]
                cmd += [opts.get("device") or "none", str(data)]
                with trace.step("volume", " ".join(cmd), f"volume {name}'s options (type/o/device) ask for a mount, "
                                "made at first use as Docker's local driver does") as s:
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    s.result = f"exit {proc.returncode}" + (f": {proc.stderr.strip()}" if proc.returncode else "")
                    s.ok = proc.returncode == 0
                if proc.returncode != 0:
                    raise SystemError_(f"error while mounting volume '{data}': {proc.stderr.strip()}")
        return data

    def _plugin_mount(self, row: Any, cid: str) -> Path:
        name, driver = row["name"], row["driver"]
        held = self.db.query_one("SELECT mountpoint FROM volume_mounts WHERE volume=? AND container_id=?",
                                 (name, cid))
        if held is not None:
            return Path(held[0])
        with trace.step("volume", f"POST /VolumeDriver.Mount {{Name: {name}, ID: {cid[:12]}}} to plugin {driver}",
                        "a plugin's volume is mounted by the plugin, once for each container using it") as s:
            got = self._driver_call(driver, "Mount", {"Name": name, "ID": cid}, f"error while mounting volume '{name}'")
            mp = self._scoped(driver, str(got.get("Mountpoint") or ""))
            s.result = mp
        if not mp or not os.path.isdir(mp):
            raise SystemError_(f"error while mounting volume '{name}': plugin {driver} gave mountpoint {mp!r}, "
                               "not a directory on this host")
        self.db.execute("INSERT OR REPLACE INTO volume_mounts(volume, container_id, mountpoint) VALUES(?,?,?)",
                        (name, cid, mp))
        self.db.execute("UPDATE volumes SET mountpoint=? WHERE name=?", (mp, name))
        return Path(mp)

    def mounted_for(self, cid: str) -> bool:
        """Whether the container has plugin volumes mounted (unmount_container has work to do)."""
        return self.db.query_one("SELECT 1 FROM volume_mounts WHERE container_id=? LIMIT 1", (cid,)) is not None

    def unmount_container(self, cid: str) -> None:
        """The container stopped (or was only being created): each plugin volume it mounted is unmounted."""
        for name, _mp in self.db.query("SELECT volume, mountpoint FROM volume_mounts WHERE container_id=?", (cid,)):
            row = self.db.query_one("SELECT * FROM volumes WHERE name=?", (name,))
            if row is not None:
                try:
                    with trace.step("volume", f"POST /VolumeDriver.Unmount {{Name: {name}, ID: {cid[:12]}}} "
                                    f"to plugin {row['driver']}", "the container no longer uses the volume"):
                        self._driver_call(row["driver"], "Unmount", {"Name": name, "ID": cid},
                                          f"error while unmounting volume '{name}'")
                except DockyardError as e:
                    log.warning("%s", e.message)
            self.db.execute("DELETE FROM volume_mounts WHERE volume=? AND container_id=?", (name, cid))

    def acquire(self, name: str, cid: str) -> None:
        self._row(name)
        self.db.execute("INSERT OR IGNORE INTO volume_refs(volume, container_id) VALUES(?, ?)", (name, cid))

    def release_container(self, cid: str, remove_anonymous: bool = False) -> None:
        """The container is gone: drop its references, unmount unused mounts, maybe remove anonymous."""
        self.unmount_container(cid)
        names = [r[0] for r in self.db.query("SELECT volume FROM volume_refs WHERE container_id=?", (cid,))]
        # Without the fsync, as the container's row after it (ContainerService._remove_files): a power loss
        # keeps a prefix of the commits, so refs gone means the row says `removing` or is gone too.
        self.db.execute("DELETE FROM volume_refs WHERE container_id=?", (cid,), durable=False)
        for name in names:
            if self.users(name):
                continue
            row = self.db.query_one("SELECT * FROM volumes WHERE name=?", (name,))
            if row is None:
                continue
            if remove_anonymous and row["anonymous"]:
                self._destroy(name)
            elif row["driver"] == "local":
                self._unmount(Path(row["mountpoint"]))

    def unmount_all(self) -> None:
        """At daemon shutdown: unmount option volumes (their contents are per-boot anyway for tmpfs)."""
        for row in self.db.query("SELECT mountpoint FROM volumes WHERE driver='local'"):
            self._unmount(Path(row[0]))

    # ------------------------------------------------------------ internals

    def _unmount(self, data: Path) -> None:
        if data.exists() and _mounted(data):
            with trace.step("volume", f"umount {data}", "no container uses the volume any more: its mount goes") as s:
                proc = subprocess.run(["umount", str(data)], capture_output=True, text=True)
                s.result = f"exit {proc.returncode}"
            if proc.returncode != 0 and _mounted(data):
                raise SystemError_(f"error while unmounting volume '{data}': {proc.stderr.strip()}")

    def _destroy(self, name: str) -> None:
        row = self._row(name)
        if row["driver"] != "local":
            with trace.about(f"volume:{name}"), trace.step(
                    "volume", f"POST /VolumeDriver.Remove {{Name: {name}}} to plugin {row['driver']}",
                    "the plugin removes its volume"):
                self._driver_call(row["driver"], "Remove", {"Name": name}, f"remove {name}")
            with self.db.tx() as c:
                c.execute("DELETE FROM volume_refs WHERE volume=?", (name,))
                c.execute("DELETE FROM volumes WHERE name=?", (name,))
            trace.drop(f"volume:{name}")
            self.events.emit("volume", "destroy", name, {"driver": row["driver"]})
            return
        data = Path(row["mountpoint"])
        self._unmount(data)  # never rm -rf through a bind mount into the host's files
        if data.exists() and _mounted(data):
            raise SystemError_(f"remove {name}: volume is still mounted")
        with self.db.tx() as c:
            c.execute("DELETE FROM volume_refs WHERE volume=?", (name,))
            c.execute("DELETE FROM volumes WHERE name=?", (name,))
        with trace.about(f"volume:{name}"), trace.step("volume", f"rm -rf {self.root / name}",
                                                        "the volume and its data are removed"):
            shutil.rmtree(self.root / name, ignore_errors=True)
        trace.drop(f"volume:{name}")
        self.events.emit("volume", "destroy", name, {"driver": row["driver"]})
