"""What the host's apt knows: which Debian mirror and proxy to use, and installing missing tools.

No host name is hardcoded: the mirror comes from apt's own configuration (`apt-get indextargets`
covers both sources.list and deb822 .sources files), overridable with DEBIAN_MIRROR.
"""

from __future__ import annotations

import os
import shutil
import subprocess

SUITE = "bookworm"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class BootstrapError(RuntimeError):
    pass


def _targets() -> list[tuple[str, str, str]]:
    try:
        out = subprocess.run(
            ["apt-get", "indextargets", "--format", "$(REPO_URI)\t$(RELEASE)\t$(COMPONENT)"],
            check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    rows = [tuple(line.split("\t")) for line in out.splitlines()]
    return [(r[0], r[1], r[2]) for r in rows if len(r) == 3 and r[0].startswith(("http://", "https://"))]


def mirrors() -> tuple[str, str | None]:
    """(debian mirror, security mirror or None)."""
    rows = _targets()
    mirror = os.environ.get("DEBIAN_MIRROR")
    security = os.environ.get("DEBIAN_SECURITY_MIRROR")
    if not mirror:
        cands = [r for r in rows if r[1] == SUITE and r[2] == "main"]
        cands += [r for r in rows if r[2] == "main" and "security" not in r[0] + r[1]]
        if cands:
            mirror = cands[0][0]
    if not mirror:
        raise BootstrapError("no Debian mirror in apt's configuration; set DEBIAN_MIRROR=http://.../debian")
    if security is None:
        sec = [r for r in rows if r[1] == f"{SUITE}-security"]
        security = sec[0][0] if sec else ""
    return mirror.rstrip("/"), (security.rstrip("/") or None)


def proxy() -> str | None:
    """The HTTP proxy apt uses on this host, if any (debootstrap and the chroot's apt need it too)."""
    if os.environ.get("http_proxy"):
        return os.environ["http_proxy"]
    try:
        out = subprocess.run(["apt-config", "shell", "P", "Acquire::http::Proxy"],
                             check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return out[2:].strip("'\"") or None if out.startswith("P=") else None


def ensure_tools(tools: dict[str, str]) -> None:
    """tools maps a command (or absolute path) to the Debian package providing it."""
    missing = sorted({pkg for cmd, pkg in tools.items() if shutil.which(cmd) is None and not os.path.exists(cmd)})
    if not missing:
        return
    if os.geteuid() != 0:
        raise BootstrapError(f"missing host packages: apt-get install {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env, check=True)
