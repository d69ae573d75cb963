"""Load a project: find files, read .env, interpolate, validate, normalise, merge, extends, profiles."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dockyard.compose import schema
from dockyard.compose.errors import ComposeError
from dockyard.compose.graph import check_dependencies
from dockyard.compose.interpolate import Interpolator, parse_dotenv
from dockyard.compose.normalize import Service, normalize_service, resolve_path

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = ("compose.override.yaml", "compose.override.yml",
                  "docker-compose.override.yml", "docker-compose.override.yaml")
# Lists that a later file replaces rather than extends.
_REPLACED = {"command", "entrypoint", "test", "dns", "dns_search", "extra_hosts", "profiles"}


@dataclass
class Options:
    files: list[str] = field(default_factory=list)
    project_name: str | None = None
    project_directory: str | None = None
    env_files: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)


@dataclass
class Project:
    name: str
    working_dir: Path
    config_files: list[Path]
    services: dict[str, Service]
    networks: dict[str, dict[str, Any]]
    volumes: dict[str, dict[str, Any]]
    secrets: dict[str, dict[str, Any]]
    configs: dict[str, dict[str, Any]]
    environment: dict[str, str]
    disabled: dict[str, Service] = field(default_factory=dict)  # services of inactive profiles
    env_files: list[Path] = field(default_factory=list)  # --env-file, for v2's environment_file label

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "services": self.services}
        for key in ("networks", "volumes", "secrets", "configs"):
            if getattr(self, key):
                doc[key] = getattr(self, key)
        return doc


def normalize_project_name(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")


def _find_files(opts: Options, cwd: Path) -> list[Path]:
    names = opts.files or [f for f in os.environ.get("COMPOSE_FILE", "").split(
        os.environ.get("COMPOSE_PATH_SEPARATOR", os.pathsep)) if f]
    if names:
        return [Path(n) if os.path.isabs(n) else (cwd / n) for n in names]
    d = cwd
    while True:
        for n in DEFAULT_FILES:
            if (d / n).exists():
                found = [d / n]
                for o in OVERRIDE_FILES:
                    if (d / o).exists():
                        found.append(d / o)
                        break
                return found
        if d.parent == d:
            raise ComposeError("no configuration file provided: not found")
        d = d.parent


class _Reset:
    """`!reset`: the key goes, whatever earlier files (or the extended service) set."""


class _Override:
    """`!override`: the value replaces the earlier one instead of merging with it."""

    def __init__(self, value: Any) -> None:
        self.value = value


class _TagLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (libyaml's when there: ~10x faster) plus Compose's two tags."""


def _construct_tagged(cls: type) -> Any:
    def build(loader: Any, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            value: Any = loader.construct_mapping(node, deep=True)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_scalar(node)
        return _Reset() if cls is _Reset else _Override(value)
    return build


_TagLoader.add_constructor("!reset", _construct_tagged(_Reset))
_TagLoader.add_constructor("!override", _construct_tagged(_Override))


@dataclass
class Tags:
    """Where a file put !reset / !override (key paths), taken out of its document before validation."""

    reset: set[tuple[str, ...]] = field(default_factory=set)
    override: set[tuple[str, ...]] = field(default_factory=set)

    def strip(self, obj: Any, path: tuple[str, ...] = ()) -> Any:
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                p = (*path, str(k))
                if isinstance(v, _Reset):
                    self.reset.add(p)
                    continue
                if isinstance(v, _Override):
                    self.override.add(p)
                    v = v.value
                out[k] = self.strip(v, p)
            return out
        if isinstance(obj, list):
            return [self.strip(v, path) for v in obj if not isinstance(v, _Reset)]
        return obj.value if isinstance(obj, _Override) else obj

    def under(self, prefix: tuple[str, ...]) -> Tags:
        n = len(prefix)
        return Tags({p[n:] for p in self.reset if p[:n] == prefix},
                    {p[n:] for p in self.override if p[:n] == prefix})


def merge(base: Any, over: Any, key: str = "", tags: Tags | None = None, path: tuple[str, ...] = ()) -> Any:
    """Compose's override rules: mappings merge, most lists append (unique), some replace;
    `tags` (the later file's !reset and !override) remove or replace outright."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            p = (*path, str(k))
            if tags is not None and p in tags.override:
                out[k] = v
            else:
                out[k] = merge(out[k], v, str(k), tags, p) if k in out else v
        if tags is not None:
            for p in tags.reset:
                if p[:-1] == path:
                    out.pop(p[-1], None)
        return out
    if isinstance(base, list) and isinstance(over, list) and key not in _REPLACED:
        if key == "volumes":
            by_target = {v.get("target"): v for v in base if isinstance(v, dict)}
            for v in over:
                by_target[v.get("target") if isinstance(v, dict) else v] = v
            return list(by_target.values())
        out_l = list(base)
        out_l.extend(v for v in over if v not in out_l)
        return out_l
    return over


class _Loader:
    def __init__(self, env: dict[str, str], working_dir: Path) -> None:
        self.env = env
        self.working_dir = working_dir
        self.interp = Interpolator(env)

    def read(self, path: Path, tags: Tags | None = None) -> dict[str, Any]:
        try:
            text = path.read_text()
        except OSError as e:
            raise ComposeError(f"open {path}: {e.strerror.lower() if e.strerror else e}") from e
        try:
            doc = yaml.load(text, Loader=_TagLoader)  # noqa: S506 - SafeLoader plus the two compose tags
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e)
            raise ComposeError(f"yaml: {path}:{at}: {problem}") from e
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise ComposeError(f"{path}: top-level object must be a mapping")
        doc = (tags if tags is not None else Tags()).strip(doc)
        try:
            doc = self.interp.value(doc, "")
        except ComposeError as e:
            raise ComposeError(f"{path}: {e}") from e
        schema.validate(doc, str(path))
        services = doc.get("services") or {}
        doc["services"] = {n: normalize_service(n, s or {}, self.working_dir, self.env, str(path))
                           for n, s in services.items()}
        if doc.get("include"):
            self.include(doc, path)
        loaded: dict[str, Any] = doc
        return loaded

    def resolve_extends(self, doc: dict[str, Any], path: Path, tags: Tags | None = None,
                        seen: tuple[str, ...] = ()) -> None:
        services = doc["services"]
        for name in list(services):
            services[name] = self._extend(name, services, path, seen,
                                          tags.under(("services", name)) if tags else None)

    def _extend(self, name: str, services: dict[str, Service], path: Path, seen: tuple[str, ...],
                tags: Tags | None = None) -> Service:
        svc = services[name]
        ext = svc.get("extends")
        if not ext:
            return svc
        ext = {"service": ext} if isinstance(ext, str) else ext
        key = f"{path}:{name}"
        if key in seen:
            raise ComposeError(f"{path}: services.{name}.extends: circular reference")
        if ext.get("file"):
            other = (path.parent / ext["file"]).resolve()
            # The other file's relative paths are its own directory's (compose-go resolves them there).
            odoc = _Loader(self.env, other.parent).read(other)
            pool, ppath = odoc["services"], other
        else:
            pool, ppath = services, path
        base_name = ext["service"]
        if base_name not in pool:
            raise ComposeError(f"{path}: services.{name}.extends: cannot extend service {base_name!r}: "
                               f"no such service in {ppath}")
        base = self._extend(base_name, pool, ppath, (*seen, key))
        base = {k: v for k, v in base.items() if k not in ("depends_on", "extends")}
        child = {k: v for k, v in svc.items() if k != "extends"}
        return dict(merge(base, child, tags=tags))

    def include(self, doc: dict[str, Any], path: Path) -> None:
        """`include:` each entry is loaded as a project of its own (its directory, its .env) and its
        resources join this file's; a name both define is an error, as in Compose."""
        for i, item in enumerate(doc.pop("include")):
            entry = {"path": item} if isinstance(item, str) else dict(item)
            paths = entry["path"] if isinstance(entry["path"], list) else [entry["path"]]
            files = [Path(resolve_path(str(p), path.parent)) for p in paths]
            workdir = Path(resolve_path(str(entry["project_directory"]), path.parent)) \
                if entry.get("project_directory") else files[0].parent
            env_files = entry.get("env_file")
            env_files = [env_files] if isinstance(env_files, str) else env_files
            try:
                env = project_env([Path(resolve_path(str(e), path.parent)) for e in env_files or []],
                                  workdir / ".env")
            except ComposeError as e:
                raise ComposeError(f"{path}: include[{i}]: {e}") from None
            sub = _Loader(env, workdir)
            merged: dict[str, Any] = {}
            for f in files:
                if not f.exists():
                    raise ComposeError(f"{path}: include[{i}]: open {f}: no such file or directory")
                tags = Tags()
                one = sub.read(f, tags)
                sub.resolve_extends(one, f, tags)
                merged = merge(merged, one, tags=tags)
            for key in ("services", "networks", "volumes", "secrets", "configs"):
                for name, value in (merged.get(key) or {}).items():
                    if doc.get(key) is None:
                        doc[key] = {}
                    mine = doc[key]
                    if name in mine and mine[name] != value:
                        raise ComposeError(f"{path}: imported compose file {files[0]} defines conflicting "
                                           f"{key[:-1]} {name}")
                    mine[name] = value


def project_env(env_files: list[Path], default: Path) -> dict[str, str]:
    """The variables for interpolation: the env files in order (a later one wins; each may use the
    ones before it), then the process environment over all of them, as Compose does."""
    files: dict[str, str] = {}
    for ef in env_files or [default]:
        if ef.exists():
            files.update(parse_dotenv(ef, {**files, **os.environ}))
        elif env_files:
            raise ComposeError(f"couldn't find env file: {ef}")
    return {**files, **os.environ}


def load(opts: Options, cwd: Path | None = None) -> Project:
    cwd = cwd or Path.cwd()
    files = [p.resolve() for p in _find_files(opts, cwd)]
    working_dir = Path(opts.project_directory).resolve() if opts.project_directory else files[0].parent
    env = project_env([Path(e) for e in opts.env_files], working_dir / ".env")
    loader = _Loader(env, working_dir)
    merged: dict[str, Any] = {}
    for f in files:
        tags = Tags()
        doc = loader.read(f, tags)
        loader.resolve_extends(doc, f, tags)
        merged = merge(merged, doc, tags=tags)
    name = opts.project_name or env.get("COMPOSE_PROJECT_NAME") or merged.get("name") or working_dir.name
    pname = normalize_project_name(str(name))
    if not pname:
        raise ComposeError(f"invalid project name {name!r}: must contain only lowercase letters, "
                           "digits, dashes and underscores, and start with a letter or digit")
    services: dict[str, Service] = merged.get("services") or {}
    profiles = set(opts.profiles or [p for p in env.get("COMPOSE_PROFILES", "").split(",") if p])
    active = {n: s for n, s in services.items()
              if not s.get("profiles") or "*" in profiles or profiles & set(s["profiles"])}
    disabled = {n: s for n, s in services.items() if n not in active}
    networks = {k: dict(v or {}) for k, v in (merged.get("networks") or {}).items()}
    volumes = {k: dict(v or {}) for k, v in (merged.get("volumes") or {}).items()}
    for n, s in active.items():
        _finish_service(n, s, networks, volumes)
    if any(not s.get("network_mode") for s in active.values()) or "default" in networks:
        networks.setdefault("default", {})
    for key, net in networks.items():
        net.setdefault("name", _resource_name(net, key, pname))
    for key, vol in volumes.items():
        vol.setdefault("name", _resource_name(vol, key, pname))
    check_dependencies(active, disabled)
    return Project(pname, working_dir, files, active, networks, volumes,
                   dict(merged.get("secrets") or {}), dict(merged.get("configs") or {}), env, disabled,
                   [Path(e).resolve() for e in opts.env_files])


def _resource_name(obj: dict[str, Any], key: str, project: str) -> str:
    ext = obj.get("external")
    if ext:
        return str(ext["name"]) if isinstance(ext, dict) and ext.get("name") else key
    return f"{project}_{key}"


def _finish_service(name: str, s: Service, networks: dict[str, Any], volumes: dict[str, Any]) -> None:
    if "image" not in s and "build" not in s:
        raise ComposeError(f"service {name!r} has neither an image nor a build context specified: "
                           "invalid compose project")
    if not s.get("network_mode") and not s.get("networks"):
        s["networks"] = {"default": None}
    for net in s.get("networks") or {}:
        if net not in networks and net != "default":
            raise ComposeError(f"service {name!r} refers to undefined network {net}: invalid compose project")
    for i, v in enumerate(s.get("volumes") or []):
        if v.get("type") == "volume" and v.get("source") and v["source"] not in volumes:
            raise ComposeError(f"services.{name}.volumes[{i}]: service {name!r} refers to undefined volume "
                               f"{v['source']}: invalid compose project")
    deploy = s.get("deploy") or {}
    if "scale" not in s:
        s["scale"] = deploy.get("replicas", 1) if isinstance(deploy, dict) else 1
    if "healthcheck" in s and s["healthcheck"].get("disable"):
        s["healthcheck"] = {"test": ["NONE"]}
