"""`compose watch`: the services' `develop.watch` rules, driven by inotify.

sync copies the changed files into each running container of the service (one tar through the
archive API) and removes deleted ones (`rm -rf` by exec, as Compose does); sync+restart and sync+exec
then restart the containers or run a command in them; rebuild builds the image and recreates the
service. Changes are batched: a sync goes once the tree has been quiet for SYNC_QUIET, a rebuild
(expensive) once quiet for REBUILD_QUIET, so an editor's save or a `git checkout` is one action.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inotify_simple import INotify
from inotify_simple import flags as F

from dockyard.client import APIClient, APIError
from dockyard.compose import state
from dockyard.compose.convert import image_name
from dockyard.compose.engine import Engine, UpOptions
from dockyard.compose.errors import ComposeError
from dockyard.compose.loader import Project
from dockyard.util.dockerignore import PatternMatcher, read_patterns

SYNC_QUIET = 0.02  # seconds without events before a sync batch goes
REBUILD_QUIET = 0.5
MAX_HOLD = 0.25  # a sync waits at most this long behind a steady stream of events
# Editor droppings and VCS internals Compose never syncs.
DEFAULT_IGNORES = [".git", "**/.git", "**/*.swp", "**/*.swx", "**/*~", "**/.#*", "**/#*#", "**/4913"]
_MASK = (F.MODIFY | F.CLOSE_WRITE | F.CREATE | F.DELETE | F.MOVED_FROM | F.MOVED_TO | F.ATTRIB
         | F.DELETE_SELF | F.MOVE_SELF)


@dataclass
class Rule:
    service: str
    action: str  # sync | rebuild | sync+restart | sync+exec | restart
    path: Path
    target: str
    ignore: PatternMatcher  # patterns relative to `path`
    context_ignore: tuple[Path, PatternMatcher] | None  # the build context's .dockerignore
    include: PatternMatcher | None
    initial_sync: bool
    exec: dict[str, Any] | None = None
    pending: set[Path] = field(default_factory=set)
    first: float = 0.0
    last: float = 0.0

    def wanted(self, p: Path) -> bool:
        try:
            rel = p.relative_to(self.path).as_posix()
        except ValueError:
            return False
        if rel != "." and self.ignore.matches(rel):
            return False
        if self.include is not None and rel != "." and not self.include.matches(rel) and not p.is_dir():
            return False
        if self.context_ignore is not None:
            root, ign = self.context_ignore
            try:
                crel = p.relative_to(root).as_posix()
            except ValueError:
                return True
            if crel != "." and ign.matches(crel):
                return False
        return True

    def container_path(self, p: Path) -> str:
        rel = p.relative_to(self.path).as_posix()
        return self.target if rel == "." else f"{self.target.rstrip('/')}/{rel}"


def rules_of(project: Project, services: list[str]) -> list[Rule]:
    out: list[Rule] = []
    for name in services:
        svc = project.services[name]
        develop = svc.get("develop") or {}
        ctx_ign = None
        if svc.get("build"):
            ctx = Path(svc["build"]["context"])
            f = ctx / ".dockerignore"
            ign = PatternMatcher.of(read_patterns(f.read_text(errors="replace"))) if f.is_file() else None
            ctx_ign = (ctx, ign) if ign is not None and ign.patterns else None
        binds = [Path(v["source"]) for v in svc.get("volumes") or [] if v.get("type") == "bind"]
        for i, w in enumerate(develop.get("watch") or []):
            action = w.get("action")
            if action.startswith("sync") and any(Path(w["path"]).is_relative_to(b) for b in binds):
                print(f"WARN[0000] path '{w['path']}' also declared by a bind mount volume, this path won't be "
                      "monitored!", file=sys.stderr)
                continue
            where = f"services.{name}.develop.watch[{i}]"
            if action in ("sync", "sync+restart", "sync+exec") and not w.get("target"):
                raise ComposeError(f"{where}: target is required for {action}")
            if action == "rebuild" and not svc.get("build"):
                raise ComposeError(f"can't watch service \"{name}\" with action rebuild without a build "
                                   "context")
            if action == "sync+exec" and not (w.get("exec") or {}).get("command"):
                raise ComposeError(f"{where}: exec.command is required for sync+exec")
            out.append(Rule(name, action, Path(w["path"]), str(w.get("target") or ""),
                            PatternMatcher.of([*DEFAULT_IGNORES, *(w.get("ignore") or [])]), ctx_ign,
                            PatternMatcher.of(list(w["include"])) if w.get("include") else None,
                            bool(w.get("initial_sync")), w.get("exec")))
    return out


class Tree:
    """Recursive inotify watches over some roots; changed paths come back as a set."""

    def __init__(self, roots: list[Path]) -> None:
        self.ino = INotify()
        self.dirs: dict[int, Path] = {}
        self.roots = roots
        for r in roots:
            # A file is watched through its directory: editors replace files by rename.
            self._add(r if r.is_dir() else r.parent, recursive=r.is_dir())

    def _add(self, d: Path, recursive: bool = True) -> list[Path]:
        """Watch d (and below); returns the files found, which a new directory brings as changes."""
        found: list[Path] = []
        try:
            wd = self.ino.add_watch(str(d), _MASK)
        except OSError:
            return found
        self.dirs[wd] = d
        if recursive:
            try:
                entries = list(os.scandir(d))
            except OSError:
                return found
            for e in entries:
                p = Path(e.path)
                if e.is_dir(follow_symlinks=False):
                    found += [p, *self._add(p)]
                else:
                    found.append(p)
        return found

    def read(self, timeout: float | None) -> set[Path]:
        changed: set[Path] = set()
        for ev in self.ino.read(timeout=None if timeout is None else max(0, int(timeout * 1000))):
            base = self.dirs.get(ev.wd)
            if base is None:
                continue
            if ev.mask & F.IGNORED:
                self.dirs.pop(ev.wd, None)
                continue
            if not ev.name:
                continue
            p = base / ev.name
            changed.add(p)
            if ev.mask & F.ISDIR and ev.mask & (F.CREATE | F.MOVED_TO):
                changed.update(self._add(p))
        return changed

    def close(self) -> None:
        self.ino.close()


def _tar(rule: Rule, paths: list[Path]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for p in sorted(paths):
            try:
                tf.add(p, arcname=rule.container_path(p).lstrip("/"), recursive=False)
            except OSError:
                continue  # gone again since the event: the next batch deletes it
    return buf.getvalue()


# initial_sync leaves these out too (v2): the Dockerfile and compose files are not the app's.
_NOT_SYNCED_INITIALLY = {"Dockerfile", "compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml",
                         "compose.override.yaml", "compose.override.yml", "docker-compose.override.yml",
                         "docker-compose.override.yaml"}


def _walk(rule: Rule, dockerfile: str | None) -> list[Path]:
    """Everything under the rule's path that it syncs (initial_sync)."""
    skip = _NOT_SYNCED_INITIALLY | ({Path(dockerfile).name} if dockerfile else set())
    if not rule.path.is_dir():
        return [rule.path] if rule.path.exists() else []
    out: list[Path] = []
    for root, dirs, files in os.walk(rule.path):
        r = Path(root)
        dirs[:] = [d for d in dirs if rule.wanted(r / d)]
        out += [r / d for d in dirs] + [r / f for f in files if f not in skip and rule.wanted(r / f)]
    return out


def say(text: str) -> None:
    from dockyard.compose import engine

    sys.stderr.write(engine.PREFIX + text + "\n")
    sys.stderr.flush()


class Watch:
    def __init__(self, client: APIClient, project: Project, services: list[str],
                 on_recreate: Callable[[list[str]], None] | None = None, prune: bool = False) -> None:
        self.client = client
        self.prune = prune
        self.project = project
        chosen = services or list(project.services)
        self.rules = rules_of(project, chosen)
        if not self.rules:
            raise ComposeError("none of the selected services is configured for watch, consider setting a "
                               "'develop' section")
        self.on_recreate = on_recreate
        self.stopped = threading.Event()
        self.syncs = 0  # batches applied (tests and the latency bench read it)

    def containers(self, service: str) -> list[dict[str, Any]]:
        return state.project_containers(self.client, self.project.name, [service], all=False)

    # -- actions -------------------------------------------------------------
    def sync(self, rule: Rule, changed: set[Path]) -> None:
        present: list[Path] = []
        gone: list[str] = []
        for p in changed:
            if p.is_symlink() or p.exists():
                present.append(p)
            else:
                gone.append(rule.container_path(p))
        data = _tar(rule, present) if present else b""
        for c in self.containers(rule.service):
            if gone:
                self._exec(c["Id"], ["rm", "-rf", "--", *sorted(gone)])
            if data:  # owned by the container's user, as v2 copies (copyUIDGID)
                self.client.put_archive(c["Id"], "/", data, copy_uid_gid=True)
        say(f"Syncing service \"{rule.service}\" after {len(changed)} changes were detected")

    def _exec(self, cid: str, cmd: list[str], spec: dict[str, Any] | None = None) -> int:
        spec = spec or {}
        cfg: dict[str, Any] = {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True,
                               "Privileged": bool(spec.get("privileged"))}
        if spec.get("user"):
            cfg["User"] = spec["user"]
        if spec.get("working_dir"):
            cfg["WorkingDir"] = spec["working_dir"]
        env = spec.get("environment") or {}
        if env:
            cfg["Env"] = [f"{k}={v}" for k, v in (env.items() if isinstance(env, dict)
                                                   else (e.split("=", 1) for e in env))]
        ex = self.client.exec_create(cid, cfg)
        h = self.client.exec_start(ex["Id"])
        if h is not None:
            for _, data in h.frames(False):
                sys.stdout.write(data.decode(errors="replace"))
            h.close()
        return int(self.client.exec_inspect(ex["Id"]).get("ExitCode") or 0)

    def rebuild(self, rule: Rule) -> None:
        name = rule.service
        say(f"Rebuilding service \"{name}\" after changes were detected...")
        engine = Engine(self.client, self.project)
        tag = image_name(self.project, name, self.project.services[name])
        old = engine.image_id(tag)
        try:
            engine.build_service(name, self.project.services[name])
            ids = engine.up(UpOptions(services=[name], no_deps=True, force_recreate=True))
        except (ComposeError, APIError) as e:
            say(f"Error: rebuilding service \"{name}\": {e}")
            return
        say(f"service \"{name}\" successfully built")
        if self.prune and old.startswith("sha256:") and engine.image_id(tag) != old:
            try:  # --prune: the image the rebuild replaced, unless something still uses it
                self.client.remove_image(old)
            except APIError:
                pass
        if self.on_recreate:
            self.on_recreate(ids)

    def apply(self, rule: Rule, changed: set[Path]) -> None:
        if rule.action == "rebuild":
            self.rebuild(rule)
        elif rule.action == "restart":
            for c in self.containers(rule.service):
                self.client.restart(c["Id"])
            say(f"service \"{rule.service}\" restarted")
        else:
            self.sync(rule, changed)
            if rule.action == "sync+restart":
                for c in self.containers(rule.service):
                    self.client.restart(c["Id"])
                say(f"service \"{rule.service}\" restarted")
            elif rule.action == "sync+exec" and rule.exec:
                cmd = rule.exec["command"]
                for c in self.containers(rule.service):
                    self._exec(c["Id"], ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd),
                               rule.exec)
        self.syncs += 1

    # -- loop ----------------------------------------------------------------
    def initial(self) -> None:
        for rule in self.rules:
            if rule.initial_sync and rule.action.startswith("sync"):
                build = self.project.services[rule.service].get("build") or {}
                files = _walk(rule, build.get("dockerfile"))
                if files:
                    self.sync(rule, set(files))

    def run(self, ready: Callable[[], None] | None = None) -> None:
        """Watch until stop(); ready() is called once the inotify watches are in place."""
        tree = Tree([r.path for r in self.rules])
        self._tree = tree
        try:
            self.initial()
            say("Watch enabled")
            if ready:
                ready()
            while not self.stopped.is_set():
                now = time.monotonic()
                due = [r.last + (REBUILD_QUIET if r.action == "rebuild" else SYNC_QUIET) for r in self.rules
                       if r.pending]
                due += [r.first + MAX_HOLD for r in self.rules if r.pending and r.action != "rebuild"]
                timeout = max(0.0, min(due) - now) if due else 0.5
                for p in tree.read(timeout):
                    now = time.monotonic()
                    for r in self.rules:
                        if r.wanted(p):
                            if not r.pending:
                                r.first = now
                            r.pending.add(p)
                            r.last = now
                now = time.monotonic()
                for r in self.rules:
                    quiet = REBUILD_QUIET if r.action == "rebuild" else SYNC_QUIET
                    hold = r.action != "rebuild" and now - r.first >= MAX_HOLD
                    if r.pending and (now - r.last >= quiet or hold):
                        changed, r.pending = r.pending, set()
                        try:
                            self.apply(r, changed)
                        except APIError as e:
                            say(f"Error: watch {r.service}: {e.message}")
        finally:
            tree.close()
            say("Watch disabled")

    def stop(self) -> None:
        self.stopped.set()
