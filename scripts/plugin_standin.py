"""Push a stand-in for docker-py's plugin image (`vieux/sshfs:latest`) to a registry that a daemon
uses as its Docker Hub mirror, so that docker-py's `api_plugin_test.py` can run offline.

The stand-in is Dockyard's test volume driver (tests/plugins/volume_plugin.py) packaged as a managed
plugin: VolumeDriver on `sshfs.sock`, `DEBUG` settable, network host (as the real one), the host's /usr
mounted for its python. It is made and pushed through the daemon at DOCKER_HOST (`docker plugin
create` + `push`), then removed there.

    DOCKER_HOST=unix:///tmp/dpy/d.sock python scripts/plugin_standin.py 127.0.0.1:5060
    ONLY=api_plugin_test.py ../shared/conformance/docker-py/run
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.plugins.procs import make_plugin_dir  # noqa: E402 - the test plugin's packaging


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    remote = f"{sys.argv[1]}/vieux/sshfs:latest"
    with tempfile.TemporaryDirectory(prefix="plugin-standin-") as tmp:
        make_plugin_dir(Path(tmp) / "sshfs", "sshfs", "sshfs stand-in: a local-directory volume driver "
                        "(Dockyard's tests/plugins/volume_plugin.py)", network="host")
        for args in (["plugin", "create", remote, str(Path(tmp) / "sshfs")], ["plugin", "push", remote],
                     ["plugin", "rm", remote]):
            p = subprocess.run(["docker", *args], capture_output=True, text=True)
            if p.returncode != 0:
                print(f"docker {' '.join(args)}: {p.stderr.strip()}", file=sys.stderr)
                return 1
    print(f"pushed {remote}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
