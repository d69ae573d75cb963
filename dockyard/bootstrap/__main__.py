"""python -m dockyard.bootstrap nginx|debian|busybox [--out FILE.tar] [--tag nginx:latest]"""

from __future__ import annotations

import argparse
import sys

from dockyard.bootstrap.hostapt import BootstrapError
from dockyard.bootstrap.mkimage import IMAGES, build


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dockyard.bootstrap",
                                 description="Build a base image from Debian packages as a docker-archive tarball.")
    ap.add_argument("image", choices=IMAGES)
    ap.add_argument("--out", help="output tarball (default: <cache>/<image>.tar)")
    ap.add_argument("--tag", action="append", help="repo:tag to record (repeatable; default e.g. nginx:latest)")
    ap.add_argument("--cache", help="cache dir (default /var/cache/dockyard/bootstrap or $DOCKYARD_BOOTSTRAP_CACHE)")
    ap.add_argument("--force", action="store_true", help="rebuild even when cached")
    a = ap.parse_args(argv)
    try:
        path = build(a.image, a.out, a.tag, a.cache, force=a.force)
    except BootstrapError as e:
        print(f"bootstrap: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
