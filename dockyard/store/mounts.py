"""Docker's HostConfig storage options → OCI runtime mounts and the inspect `Mounts` list.

Sources, in Docker's order of precedence (moby's registerMountPoints): `--volumes-from` first,
then `Binds` (-v) and `Mounts` (--mount), which override it (a clash between those two is an
error), then `Tmpfs`, and last the image's VOLUMEs, which become anonymous volumes only where
nothing else is mounted. A new, empty volume is filled from the image's content at its
mount point (copy-up) unless `nocopy` was asked for.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dockyard import trace
from dockyard.errors import InvalidParameter
from dockyard.store.archive_path import ContainerFS, clean_abs, get_archive, put_archive
from dockyard.wire.container import Driver, HostConfig, Mount, TmpfsOptions, VolumeOptions


class VolumeBackend(Protocol):
    """What we need of services.volumes.VolumeService (adapters don't import services)."""

    def exists(self, name: str) -> bool: ...
    def create(self, name: str | None = None, driver: str = "local", driver_opts: dict[str, str] | None = None,
               labels: dict[str, str] | None = None, anonymous: bool = False) -> dict[str, Any]: ...
    def acquire(self, name: str, cid: str) -> None: ...
    def mount_path(self, name: str, cid: str = "") -> Path: ...

PROPAGATIONS = {"shared", "rshared", "slave", "rslave", "private", "rprivate"}
LABELS = {"z", "Z"}
CONSISTENCY = {"consistent", "cached", "delegated"}


@dataclass
class _Spec:
    type: str  # volume | bind | tmpfs
    destination: str
    source: str = ""  # volume name ("" = anonymous) or host path
    rw: bool = True
    mode: str = ""
    propagation: str = ""
    nocopy: bool = False
    volume_opts: dict[str, str] = field(default_factory=dict)
    volume_labels: dict[str, str] = field(default_factory=dict)
    driver: str = "local"
    tmpfs_options: list[str] = field(default_factory=list)
    origin: str = "binds"  # binds | mounts | volumes-from | image
    copy: bool = True
    subpath: str = ""  # VolumeOptions.Subpath (API 1.45): mount this directory of the volume only


def _bad_spec(raw: str, why: str = "") -> InvalidParameter:
    return InvalidParameter(f"invalid volume specification: '{raw}'" + (f": {why}" if why else ""))


def _check_target(kind: str, target: str, raw: str | None = None) -> str:
    """Absolute, cleaned, not `/`; errors worded as Docker's."""
    def err(msg: str) -> InvalidParameter:
        inner = f'invalid mount config for type "{kind}": {msg}'
        return _bad_spec(raw, inner) if raw is not None else InvalidParameter(inner)

    if not target:
        raise err("field Target must not be empty")
    if not target.startswith("/"):
        raise err(f"invalid mount path: '{target}' mount path must be absolute")
    clean = clean_abs(target)
    if clean == "/":
        raise err("invalid specification: destination can't be '/'")
    return clean


def _parse_bind(raw: str) -> _Spec:
    """`-v` syntax: /dst | src:/dst | src:/dst:mode (src = volume name or absolute host path)."""
    parts = raw.split(":")
    if not raw or parts[0] == "" or len(parts) > 3:
        raise _bad_spec(raw)
    mode = ""
    if len(parts) == 1:
        src, dst = "", parts[0]
    elif len(parts) == 2:
        if _valid_mode(parts[1]):
            raise _bad_spec(raw)  # "/foo:rw": a volume without a source can't have a mode
        src, dst = parts
    else:
        src, dst, mode = parts
    kind = "bind" if src.startswith("/") else "volume"
    dst = _check_target(kind, dst, raw)
    if mode and not _valid_mode(mode):
        raise _bad_spec(raw, f"invalid mode: {mode}")
    flags = mode.split(",") if mode else []
    spec = _Spec(type=kind, destination=dst, source=clean_abs(src) if kind == "bind" else src)
    spec.rw = "ro" not in flags
    spec.nocopy = "nocopy" in flags
    prop = [f for f in flags if f in PROPAGATIONS]
    if kind == "bind":
        spec.mode = mode
        spec.propagation = prop[-1] if prop else "rprivate"
    else:
        if prop:
            raise _bad_spec(raw, f"invalid mode: {mode}")
        spec.mode = mode if mode else ("z" if src else "")
    return spec


def _valid_mode(mode: str) -> bool:
    seen_rw = seen_prop = seen_label = seen_copy = 0
    for f in mode.split(","):
        if f in ("rw", "ro"):
            seen_rw += 1
        elif f in PROPAGATIONS:
            seen_prop += 1
        elif f in LABELS:
            seen_label += 1
        elif f == "nocopy":
            seen_copy += 1
        elif f in CONSISTENCY:
            continue
        else:
            return False
    return max(seen_rw, seen_prop, seen_label, seen_copy) <= 1


def _parse_mount(m: Mount) -> _Spec:
    kind = m.type
    if kind not in ("bind", "volume", "tmpfs"):
        raise InvalidParameter(f'invalid mount config for type "{kind}": mount type unknown')

    def err(msg: str) -> InvalidParameter:
        return InvalidParameter(f'invalid mount config for type "{kind}": {msg}')

    src = m.source
    dst = _check_target(kind, m.target)
    ro = m.read_only
    bopts, vopts, topts = m.bind_options, m.volume_options, m.tmpfs_options
    for name, val, allowed in (("BindOptions", bopts, "bind"), ("VolumeOptions", vopts, "volume"),
                               ("TmpfsOptions", topts, "tmpfs")):
        if val is not None and val != type(val)() and kind != allowed:  # an empty one passes, as always here
            raise err(f"field {name} must not be specified")
    if kind == "bind":
        if not src:
            raise err("field Source must not be empty")
        if not src.startswith("/"):
            raise err(f"invalid mount path: '{src}' mount path must be absolute")
        src = clean_abs(src)
        if not os.path.exists(src):
            if bopts is not None and bopts.create_mountpoint:
                os.makedirs(src, 0o755, exist_ok=True)
            else:
                raise err(f"bind source path does not exist: {src}")
        prop = (bopts.propagation if bopts is not None else "") or "rprivate"
        if prop not in PROPAGATIONS:
            raise err(f"invalid propagation mode: {prop}")
        return _Spec(type="bind", destination=dst, source=src, rw=not ro, propagation=prop, origin="mounts")
    if kind == "volume":
        vo = vopts or VolumeOptions()
        dc = vo.driver_config or Driver()
        sub = vo.subpath
        if sub:
            clean = posixpath.normpath(sub)
            if sub.startswith("/") or clean == ".." or clean.startswith("../"):
                raise err("subpath must be a relative path within the volume")
            sub = "" if clean == "." else clean
        return _Spec(type="volume", destination=dst, source=src, rw=not ro, mode="z" if src else "",
                     nocopy=vo.no_copy, volume_opts=dict(dc.options or {}),
                     volume_labels=dict(vo.labels or {}), driver=dc.name or "local",
                     origin="mounts", subpath=sub)
    if src:
        raise err("field Source must not be specified")
    to = topts or TmpfsOptions()
    opts: list[str] = []
    if to.size_bytes:
        size = to.size_bytes
        if size < 0:
            raise err("invalid tmpfs size")
        opts.append(f"size={size // 1024}k" if size % 1024 == 0 else f"size={size}")
    if to.mode:
        opts.append(f"mode={to.mode & 0o7777:o}")
    for o in to.options or []:  # API 1.46: [["exec"], ["uid", "1000"]]
        opts.append("=".join(o))
    if ro:
        opts.append("ro")
    return _Spec(type="tmpfs", destination=dst, rw=not ro, tmpfs_options=opts, origin="mounts")


def _tmpfs_options(user: list[str]) -> list[str]:
    """Docker's defaults (noexec,nosuid,nodev) merged with the user's, later flags winning."""
    opposite = {"exec": "noexec", "noexec": "exec", "suid": "nosuid", "nosuid": "suid",
                "dev": "nodev", "nodev": "dev", "ro": "rw", "rw": "ro"}
    out: list[str] = []
    keyed: dict[str, int] = {}
    for o in ["noexec", "nosuid", "nodev", *user]:
        if not o:
            continue
        if o in opposite and opposite[o] in out:
            out.remove(opposite[o])
        key = o.split("=", 1)[0] if "=" in o else None
        if key is not None and key in keyed:
            out[keyed[key]] = o
            continue
        if o in out:
            continue
        if key is not None:
            keyed[key] = len(out)
        out.append(o)
    return out


def anonymous_volume_name(cid: str, destination: str) -> str:
    """Stable per (container, destination): re-resolving at every start reuses the same volume."""
    return hashlib.sha256(f"{cid}\0{destination}".encode()).hexdigest()


def _is_empty_dir(path: Path) -> bool:
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except FileNotFoundError:
        return True


def copy_up(rootfs: Path, cpath: str, volume_dir: Path) -> bool:
    """Docker's copy-up: an empty volume gets the image's files at `cpath`, owners and modes kept.

    The source is resolved inside the container root (a symlink in the image can't point us at
    the host). Returns whether anything was copied.
    """
    if not _is_empty_dir(volume_dir):
        return False
    fs = ContainerFS(Path(rootfs))
    try:
        node = fs.walk(cpath, follow_last=True)
    except OSError:
        return False
    try:
        st = os.fstat(node.fd)
        if not stat.S_ISDIR(st.st_mode):
            return False
        resolved = node.cpath
        dfd = os.open(f"/proc/self/fd/{node.fd}", os.O_RDONLY | os.O_DIRECTORY)
        try:
            has_content = bool(os.listdir(dfd))
        finally:
            os.close(dfd)
    finally:
        os.close(node.fd)
    if has_content:
        with trace.step("volume", f"copy {resolved} of the image into {volume_dir}",
                        "a new, empty volume is filled from what the image has at its mount point "
                        "(Docker's copy-up; -v ...:nocopy skips it)"):
            stream = get_archive(rootfs, resolved.rstrip("/") + "/.")
            put_archive(volume_dir, "/", stream)
    os.chown(volume_dir, st.st_uid, st.st_gid)
    os.chmod(volume_dir, stat.S_IMODE(st.st_mode))
    return has_content


def resolve_mounts(
    volumes: VolumeBackend,
    cid: str,
    hc: HostConfig,
    image_volumes: dict[str, Any] | None,
    rootfs: Path,
    containers_lookup: Callable[[str], list[dict[str, Any]]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(OCI mounts for the runtime spec, inspect `Mounts`). Creates and acquires the volumes used.

    Idempotent: calling it again for the same container (at each start) reuses the same volumes.
    `containers_lookup(ref)` returns another container's inspect `Mounts` (raising NotFound).
    """
    specs: dict[str, _Spec] = {}

    for ref in hc.volumes_from or []:
        name, _, mode = ref.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidParameter(f"invalid mode for volumes-from: {ref}")
        for m in containers_lookup(name):
            if m.get("Type") not in ("volume", "bind"):
                continue
            rw = bool(m.get("RW", True)) if not mode else mode == "rw"
            spec = _Spec(type=m["Type"], destination=m["Destination"],
                         source=m.get("Name", "") if m["Type"] == "volume" else m["Source"],
                         rw=rw, mode=m.get("Mode", "") if not mode else mode,
                         propagation=m.get("Propagation", ""), driver=m.get("Driver", "local"),
                         origin="volumes-from", copy=False)
            specs[spec.destination] = spec

    explicit: set[str] = set()
    for raw in hc.binds or []:
        spec = _parse_bind(raw)
        if spec.type == "volume" and hc.volume_driver:  # --volume-driver: -v's volumes are made by it
            spec.driver = hc.volume_driver
        if spec.destination in explicit:
            raise InvalidParameter(f"Duplicate mount point: {spec.destination}")
        explicit.add(spec.destination)
        specs[spec.destination] = spec
    for mount in hc.mounts or []:
        spec = _parse_mount(mount)
        if spec.destination in explicit:
            raise InvalidParameter(f"Duplicate mount point: {spec.destination}")
        explicit.add(spec.destination)
        specs[spec.destination] = spec

    tmpfs: dict[str, list[str]] = {}
    for dst, data in (hc.tmpfs or {}).items():
        clean = _check_target("tmpfs", dst)
        if clean in explicit:
            raise InvalidParameter(f"Duplicate mount point: {clean}")
        specs.pop(clean, None)  # overrides volumes-from at the same place
        tmpfs[clean] = [o for o in (data or "").split(",") if o]

    for dst in image_volumes or {}:
        clean = clean_abs(dst)
        if clean in specs or clean in tmpfs or clean == "/":
            continue
        specs[clean] = _Spec(type="volume", destination=clean, origin="image")

    oci: list[dict[str, Any]] = []
    docker: list[dict[str, Any]] = []
    for spec in specs.values():
        if spec.type == "tmpfs":
            opts = _tmpfs_options([*spec.tmpfs_options, "rprivate"])
            oci.append({"destination": spec.destination, "type": "tmpfs", "source": "tmpfs", "options": opts})
            docker.append({"Type": "tmpfs", "Source": "", "Destination": spec.destination, "Mode": "",
                           "RW": spec.rw, "Propagation": ""})
            continue
        if spec.type == "bind":
            if not os.path.exists(spec.source):
                os.makedirs(spec.source, 0o755, exist_ok=True)  # -v of a missing host path: Docker creates it
            host = spec.source
            entry = {"Type": "bind", "Source": host, "Destination": spec.destination, "Mode": spec.mode,
                     "RW": spec.rw, "Propagation": spec.propagation or "rprivate"}
        else:
            anonymous = not spec.source
            name = spec.source or anonymous_volume_name(cid, spec.destination)
            vol = volumes.create(name, spec.driver, spec.volume_opts, spec.volume_labels, anonymous=anonymous)
            volumes.acquire(name, cid)
            mountpoint = volumes.mount_path(name, cid)
            host = str(mountpoint)
            if spec.subpath:
                host = _subpath_in(Path(host), spec.subpath)
            elif spec.copy and not spec.nocopy:
                copy_up(rootfs, spec.destination, Path(host))  # only fills an empty volume, as Docker
            entry = {"Type": "volume", "Name": name, "Source": vol["Mountpoint"] or str(mountpoint),
                     "Destination": spec.destination, "Driver": vol["Driver"], "Mode": spec.mode,
                     "RW": spec.rw, "Propagation": ""}
        docker.append(entry)
        oci.append({"destination": spec.destination, "type": "bind", "source": host,
                    "options": ["rbind", spec.propagation or "rprivate", "rw" if spec.rw else "ro"]})
    for dst, user in tmpfs.items():
        oci.append({"destination": dst, "type": "tmpfs", "source": "tmpfs",
                    "options": _tmpfs_options([*user, "rprivate"])})
    # parents before children, whatever order the user gave
    oci.sort(key=lambda m: len([c for c in m["destination"].split("/") if c]))
    return oci, docker


def _subpath_in(volume_dir: Path, subpath: str) -> str:
    """The volume's `subpath`, which must stay inside the volume (no symlink out of it)."""
    full = volume_dir / subpath
    real = os.path.realpath(full)
    root = os.path.realpath(volume_dir)
    if real != root and not real.startswith(root + "/"):
        raise InvalidParameter(f"cannot access path {full}: subpath escapes the volume")
    return real  # a subpath not there (yet: this runs at create too) fails the mount at start, as dockerd


def needs_rootfs_propagation(oci_mounts: list[dict[str, Any]]) -> str:
    """The `linux.rootfsPropagation` the spec needs for shared/slave bind mounts ("" if none)."""
    opts = {o for m in oci_mounts for o in m.get("options", [])}
    if opts & {"shared", "rshared"}:
        return "rshared"
    if opts & {"slave", "rslave"}:
        return "rslave"
    return ""
