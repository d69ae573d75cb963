"""A test volume driver (VolumeDriver.*): each volume is a directory under --root.

Mounts are counted per caller ID, as a real driver must: the directory is "mounted" (listed in
the volume's Status) while any ID holds it; with `--tmpfs` it really is: a tmpfs is mounted on it at
the first Mount and unmounted at the last Unmount (what a managed plugin's PropagatedMount must let
the host see). Create with `-o fail=MESSAGE` fails with MESSAGE.
State is kept in --root/state.json, so a restarted plugin knows its volumes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pluginhttp


def main() -> None:
    a = pluginhttp.args("test local-directory volume driver")
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    state_file = root / "state.json"
    tmpfs = "--tmpfs" in sys.argv

    def run(*args: str) -> None:
        p = subprocess.run(args, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {p.stderr.strip()}")
    lock = threading.Lock()
    state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {}

    def save() -> None:
        state_file.write_text(json.dumps(state))

    def path(name: str) -> str:
        return str(root / "volumes" / name)

    def vol(name: str) -> dict[str, Any]:
        if name not in state:
            raise KeyError(f"no such volume {name}")
        return state[name]

    def create(b: Any) -> dict[str, Any]:
        opts = b.get("Opts") or {}
        if "fail" in opts:
            raise ValueError(opts["fail"])
        with lock:
            os.makedirs(path(b["Name"]), exist_ok=True)
            state.setdefault(b["Name"], {"opts": opts, "mounts": []})
            save()
        return {"Err": ""}

    def remove(b: Any) -> dict[str, Any]:
        with lock:
            v = vol(b["Name"])
            if v["mounts"]:
                raise ValueError(f"volume {b['Name']} is mounted by {v['mounts']}")
            shutil.rmtree(path(b["Name"]), ignore_errors=True)
            del state[b["Name"]]
            save()
        return {"Err": ""}

    def mount(b: Any) -> dict[str, Any]:
        with lock:
            v = vol(b["Name"])
            if b["ID"] in v["mounts"]:
                raise ValueError(f"volume {b['Name']} already mounted for {b['ID']}")
            if tmpfs and not v["mounts"]:
                run("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", path(b["Name"]))
            v["mounts"].append(b["ID"])
            save()
        return {"Mountpoint": path(b["Name"]), "Err": ""}

    def unmount(b: Any) -> dict[str, Any]:
        with lock:
            v = vol(b["Name"])
            if b["ID"] not in v["mounts"]:
                raise ValueError(f"volume {b['Name']} is not mounted for {b['ID']}")
            v["mounts"].remove(b["ID"])
            if tmpfs and not v["mounts"]:
                run("umount", path(b["Name"]))
            save()
        return {"Err": ""}

    def get(b: Any) -> dict[str, Any]:
        v = vol(b["Name"])
        # with --path-only, Get names no Mountpoint: the daemon must ask VolumeDriver.Path
        mp = "" if "--path-only" in sys.argv else path(b["Name"])
        return {"Volume": {"Name": b["Name"], "Mountpoint": mp,
                           "Status": {"mounts": len(v["mounts"]), "opts": v["opts"]}}, "Err": ""}

    handlers = {
        "/VolumeDriver.Create": create,
        "/VolumeDriver.Remove": remove,
        "/VolumeDriver.Mount": mount,
        "/VolumeDriver.Unmount": unmount,
        "/VolumeDriver.Path": lambda b: {"Mountpoint": path(vol(b["Name"]) and b["Name"]), "Err": ""},
        "/VolumeDriver.Get": get,
        "/VolumeDriver.List": lambda _b: {"Volumes": [{"Name": n, "Mountpoint": path(n)} for n in sorted(state)],
                                          "Err": ""},
        "/VolumeDriver.Capabilities": lambda _b: {"Capabilities": {"Scope": "global" if "--global" in sys.argv
                                                                   else "local"}},
    }
    pluginhttp.serve(a, ["VolumeDriver"], handlers)


if __name__ == "__main__":
    main()
