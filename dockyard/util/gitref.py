"""Git URLs as Docker and BuildKit take them: build contexts (`dockyard build URL`, the API's
`remote`) and `ADD URL DEST`, with the `#ref:subdir` fragment.

A URL is a git URL as moby's urlutil.IsGitURL says: `git://`, `git@`, `github.com/`, `ssh://`, or an
http(s) URL whose path ends in `.git` (before the fragment). Clones are shallow (`git fetch --depth 1`
of the ref, as moby's gitutil), with no prompt, no user or system git config, and only the git, http,
https and ssh transports (a submodule cannot reach `file://` or `ext::`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_HTTP_GIT = re.compile(r"^https?://\S+?\.git(?:#.*)?$")
_SHA = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
TIMEOUT = 600


class GitError(Exception):
    pass


def is_git_url(s: str) -> bool:
    return s.startswith(("git://", "git@", "github.com/", "ssh://")) or bool(_HTTP_GIT.match(s))


@dataclass
class GitRef:
    remote: str  # what git fetches from
    ref: str  # branch, tag or commit ("" = the remote's HEAD)
    subdir: str  # the context or source below the checkout's root ("" = all of it)


def parse(url: str) -> GitRef:
    """`URL#ref:subdir` (both parts optional); `github.com/x/y` becomes https://github.com/x/y."""
    remote, _, frag = url.partition("#")
    ref, _, subdir = frag.partition(":")
    if remote.startswith("github.com/"):
        remote = "https://" + remote
    subdir = subdir.strip("/")
    if subdir and any(p == ".." for p in subdir.split("/")):
        raise GitError(f"invalid subdirectory {subdir!r} in {url}")
    if ref.startswith("-") or remote.startswith("-"):
        raise GitError(f"invalid git reference {url}")
    return GitRef(remote, ref, subdir)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "SSH_AUTH_SOCK", "LANG")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null",
               GIT_ALLOW_PROTOCOL="git:http:https:ssh")
    return env


def _git(*args: str, cwd: Path | None = None) -> str:
    try:
        r = subprocess.run(["git", *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT,
                           stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise GitError("git is not installed (it is needed for git URLs)") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} timed out after {TIMEOUT} s") from None
    if r.returncode != 0:
        raise GitError(f"git {' '.join(a for a in args if not a.startswith('-c'))} failed: "
                       f"{(r.stderr or r.stdout).strip()[-500:]}")
    return r.stdout


def resolve(ref: GitRef) -> str:
    """The commit the ref names on the remote (`git ls-remote`); a full sha is taken as it is."""
    if _SHA.match(ref.ref):
        return ref.ref
    want = ref.ref or "HEAD"
    out = _git("ls-remote", "--", ref.remote, want)
    lines = [ln.split("\t") for ln in out.splitlines() if "\t" in ln]
    for wanted in (want, f"refs/heads/{want}", f"refs/tags/{want}^{{}}", f"refs/tags/{want}"):
        for sha, name in lines:
            if name == wanted:
                return sha
    if lines:
        return lines[0][0]
    raise GitError(f"failed to resolve {want} in {ref.remote}: no such ref")


def checkout(ref: GitRef, dest: Path, keep_git_dir: bool = False) -> tuple[Path, str]:
    """Clone `ref` shallowly into `dest` (made); returns (the subdir's path, the commit). Without
    `keep_git_dir` the .git directory goes, as BuildKit's."""
    dest.mkdir(parents=True, exist_ok=True)
    _git("init", "-q", str(dest))
    _git("remote", "add", "origin", ref.remote, cwd=dest)
    want = ref.ref or "HEAD"
    try:
        _git("fetch", "-q", "--depth", "1", "origin", "--", want, cwd=dest)
    except GitError:
        if not _SHA.match(want):
            raise
        _git("fetch", "-q", "origin", cwd=dest)  # a commit the server does not let us fetch by name
    _git("-c", "advice.detachedHead=false", "checkout", "-q", want if _SHA.match(want) else "FETCH_HEAD", cwd=dest)
    if (dest / ".gitmodules").exists():
        _git("submodule", "update", "--init", "--recursive", "--depth", "1", cwd=dest)
    commit = _git("rev-parse", "HEAD", cwd=dest).strip()
    if not keep_git_dir:
        shutil.rmtree(dest / ".git", ignore_errors=True)
    root = dest.joinpath(*ref.subdir.split("/")) if ref.subdir else dest
    real = os.path.realpath(root)
    if real != os.path.realpath(dest) and not real.startswith(os.path.realpath(dest) + os.sep):
        raise GitError(f"subdirectory {ref.subdir} leaves the repository")
    if not root.is_dir():
        raise GitError(f"subdirectory {ref.subdir} not found in {ref.remote}")
    return root, commit
