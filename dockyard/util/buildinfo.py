"""What this copy of Dockyard is: its commit and when it was put here (`version`'s Git commit and Built,
for the daemon and the CLI alike)."""

from __future__ import annotations

import functools
import os


@functools.cache
def git_commit() -> str:
    """The commit this code comes from (a checkout), read from .git without running git (the CLI's
    start-up); "unknown" elsewhere (never blank: docker shows the field)."""
    d = os.path.dirname(os.path.abspath(__file__))
    while d != os.path.dirname(d):
        dot = os.path.join(d, ".git")
        if os.path.exists(dot):
            return _head_of(dot) or "unknown"
        d = os.path.dirname(d)
    return "unknown"


def _head_of(dot: str) -> str:
    try:
        gitdir = dot
        if os.path.isfile(dot):  # a worktree: "gitdir: /repo/.git/worktrees/x"
            with open(dot) as f:
                gitdir = f.read().split("gitdir:", 1)[1].strip()
        common = gitdir
        if os.path.isfile(os.path.join(gitdir, "commondir")):
            with open(os.path.join(gitdir, "commondir")) as f:
                common = os.path.normpath(os.path.join(gitdir, f.read().strip()))
        with open(os.path.join(gitdir, "HEAD")) as f:
            head = f.read().strip()
        if not head.startswith("ref:"):
            return head[:7]
        ref = head[4:].strip()
        for base in (gitdir, common):
            try:
                with open(os.path.join(base, ref)) as f:
                    return f.read().strip()[:7]
            except OSError:
                pass
        with open(os.path.join(common, "packed-refs")) as f:
            for line in f:
                if line.rstrip().endswith(" " + ref):
                    return line[:7]
    except (OSError, IndexError):
        pass
    return ""


@functools.cache
def build_time() -> str:
    """When this code was installed: the package's newest file (what `Built` means for a checkout)."""
    import time

    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    newest = max((os.path.getmtime(os.path.join(d, f)) for d, _, fs in os.walk(pkg) for f in fs if f.endswith(".py")),
                 default=0.0)
    return time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(newest))
