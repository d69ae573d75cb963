"""Starting and stopping the test plugins (each a real process on a real socket)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class PluginProc:
    def __init__(self, script: str, name: str, *, socket: Path | None = None, tcp: bool = False,
                 log: Path | None = None, extra: tuple[str, ...] = ()) -> None:
        self.script, self.name, self.socket, self.tcp, self.log, self.extra = script, name, socket, tcp, log, extra
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> PluginProc:
        args = [sys.executable, str(HERE / self.script), "--name", self.name, *self.extra]
        if self.socket is not None:
            args += ["--socket", str(self.socket)]
        if self.tcp:
            args += ["--tcp", "0"]
        if self.log is not None:
            args += ["--log", str(self.log)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=HERE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if self.tcp:
            self.port = int(line)
            line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.stop()
            raise RuntimeError(f"plugin {self.name} did not start ({line!r})")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash: the socket file stays behind, nobody listens on it."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@contextlib.contextmanager
def running(*plugins: PluginProc) -> Iterator[tuple[PluginProc, ...]]:
    started: list[PluginProc] = []
    try:
        for p in plugins:
            started.append(p.start())
        yield plugins
    finally:
        for p in plugins:
            p.stop()
            if p.socket is not None and p.socket.exists():
                os.unlink(p.socket)


def calls(log: Path, plugin: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
    """The calls a plugin log recorded, in order (optionally one plugin's, one method's)."""
    if not log.exists():
        return []
    out = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [c for c in out if (plugin is None or c["plugin"] == plugin) and (path is None or c["path"] == path)]


def make_plugin_dir(dest: Path, name: str = "dirvol", description: str = "a local-directory volume driver "
                    "(Dockyard's tests)", network: str = "none", tmpfs: bool = False) -> Path:
    """The test volume driver as a managed plugin's dir (`docker plugin create NAME DIR`): its scripts in
    rootfs/plugin, the host's /usr (its python) mounted read-only, DEBUG settable, socket NAME.sock.
    `tmpfs`: each volume is a tmpfs it mounts under its PropagatedMount /data (CAP_SYS_ADMIN)."""
    rootfs = dest / "rootfs"
    for d in ("plugin", "usr", "data", "run/docker/plugins", "tmp", "proc", "dev", "sys", "etc"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")):
        if not (rootfs / link).is_symlink():
            (rootfs / link).symlink_to(target)
    for script in ("volume_plugin.py", "pluginhttp.py"):
        shutil.copy(HERE / script, rootfs / "plugin" / script)
    (dest / "config.json").write_text(json.dumps({
        "description": description,
        "documentation": "tests/plugins/volume_plugin.py",
        "entrypoint": ["/usr/bin/python3", "/plugin/volume_plugin.py", "--name", name,
                       "--socket", f"/run/docker/plugins/{name}.sock", "--root", "/data",
                       *(["--tmpfs"] if tmpfs else [])],
        **({"propagatedmount": "/data", "linux": {"capabilities": ["CAP_SYS_ADMIN"]}} if tmpfs else {}),
        "network": {"type": network},
        "interface": {"types": ["docker.volumedriver/1.0"], "socket": f"{name}.sock"},
        "mounts": [{"name": "usr", "source": "/usr", "destination": "/usr", "type": "bind",
                    "options": ["rbind", "ro"], "settable": ["source"]}],
        "env": [{"name": "DEBUG", "settable": ["value"], "value": "0"}],
    }))
    return dest
