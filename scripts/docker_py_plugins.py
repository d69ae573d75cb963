"""docker-py's plugin tests (`api_plugin_test.py`, 11 tests; not in the conformance runner's modules nor
in dockerd's baseline, since they pull `vieux/sshfs` from Docker Hub) against a throw-away Dockyard
daemon, offline.

Starts our registry server (`dockyard registry serve`) as the daemon's Docker Hub mirror, imports the
suite's stand-in images (`mkimages`), pushes a stand-in for `vieux/sshfs:latest` (scripts/plugin_standin.py:
the test volume driver as a managed plugin), runs the module, removes everything it made.

    sudo CONFORMANCE_CACHE=/tmp/dpy-cache-NAME DOCKYARD_SHARED=/work/shared .venv/bin/python scripts/docker_py_plugins.py
Exit status: the suite's (0 when every test passed).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import SHARED, Daemon  # noqa: E402 - the tests' daemon helper, cleanup included


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="dpy-plugins-", dir="/tmp"))
    port = free_port()
    reg = subprocess.Popen([sys.executable, "-m", "dockyard.registry.server", "serve", "--addr", f"127.0.0.1:{port}",
                            "--root", str(base / "registry")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           cwd=ROOT)
    (base / "daemon").mkdir()
    daemon = Daemon(base / "daemon")
    try:
        assert reg.stdout is not None
        if b"listening" not in reg.stdout.readline():
            print("docker-py plugins: the registry did not start")
            return 2
        # the conformance stage's bridge subnet (that daemon is gone by now): never one a pytest daemon may pick
        daemon.start("--registry-mirror", f"http://127.0.0.1:{port}", "--insecure-registry", f"127.0.0.1:{port}",
                     "--bip", "172.30.0.1/16", "--cgroup-favordynmods", "false")
        env = {**daemon.env, "CONFORMANCE_CACHE": os.environ.get("CONFORMANCE_CACHE", str(base / "cache"))}
        suite = SHARED / "conformance" / "docker-py"
        for step in ([str(suite / "mkimages"), f"127.0.0.1:{port}"],
                     [sys.executable, str(ROOT / "scripts" / "plugin_standin.py"), f"127.0.0.1:{port}"]):
            r = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
            if r.returncode != 0:
                print(f"docker-py plugins: {Path(step[-2]).name} failed: {(r.stdout + r.stderr).strip()[-1200:]}")
                return 2
        r = subprocess.run([str(suite / "run"), "-v"], env={**env, "ONLY": "api_plugin_test.py"}, timeout=1800)
        return r.returncode
    finally:
        daemon.teardown()
        reg.terminate()
        reg.wait(10)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
