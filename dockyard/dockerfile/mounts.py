"""`RUN --mount=...` options, parsed and checked as BuildKit's frontend does (its
instructions/commands_runmount.go): the same keys, defaults and error words. Values get ARG/ENV
expansion first, as BuildKit expands them."""

from __future__ import annotations

import csv
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from dockyard.dockerfile.parser import Instruction, ParseError

TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_KEYS = ("type", "from", "source", "target", "readonly", "readwrite", "id", "sharing", "required", "mode",
         "uid", "gid", "size", "env")
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30,
          "t": 1 << 40, "tb": 1 << 40}


@dataclass
class Mount:
    type: str = "bind"
    target: str = ""
    source: str = ""
    from_: str = ""
    readonly: bool = True
    id: str = ""
    sharing: str = "shared"
    required: bool = False
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int = 0  # tmpfs bytes; 0: the kernel's default
    env: str | None = None  # secret: also (or only) exported as this variable


def _bool(key: str, value: str, line: int) -> bool:
    v = value.lower()
    if v in ("1", "t", "true"):
        return True
    if v in ("0", "f", "false"):
        return False
    raise ParseError(line, f"invalid value for {key}: {value}")


def _size(value: str, line: int) -> int:
    v = value.strip().lower()
    num = v.rstrip("bkmgt")
    unit = v[len(num):]
    try:
        n = float(num)
    except ValueError:
        n = -1
    if n < 0 or unit not in _UNITS:
        raise ParseError(line, f"invalid size: '{value}'")
    return int(n * _UNITS[unit])


def _number(key: str, value: str, base: int, line: int) -> int:
    try:
        n = int(value, base)
    except ValueError:
        n = -1
    if n < 0 or n >= 1 << 32:
        raise ParseError(line, f"invalid value {value} for {key}")
    return n


def parse_mount(spec: str, line: int, expand: Callable[[str], str] | None = None) -> Mount:
    try:
        fields = next(csv.reader([spec]))
    except (csv.Error, StopIteration):
        raise ParseError(line, f"invalid mount spec: {spec}") from None
    m = Mount()
    ro_auto = True
    for fld in fields:
        key, eq, value = fld.partition("=")
        key = key.strip().lower()
        if not eq:
            if key in ("readonly", "ro"):
                m.readonly, ro_auto = True, False
                continue
            if key in ("readwrite", "rw"):
                m.readonly, ro_auto = False, False
                continue
            if key == "required":
                if m.type not in ("secret", "ssh"):
                    raise ParseError(line, f"unexpected key '{key}' for mount type '{m.type}'")
                m.required = True
                continue
            raise ParseError(line, f"invalid field '{fld}' must be a key=value pair")
        if expand is not None:
            value = expand(value)
        if key == "type":
            if value.lower() not in TYPES:
                raise ParseError(line, f'unsupported mount type "{value}"')
            m.type = value.lower()
        elif key == "from":
            m.from_ = value
        elif key in ("source", "src"):
            m.source = value
        elif key in ("target", "dst", "destination"):
            m.target = value
        elif key in ("readonly", "ro"):
            m.readonly, ro_auto = _bool(key, value, line), False
        elif key in ("readwrite", "rw"):
            m.readonly, ro_auto = not _bool(key, value, line), False
        elif key == "required":
            if m.type not in ("secret", "ssh"):
                raise ParseError(line, f"unexpected key '{key}' for mount type '{m.type}'")
            m.required = _bool(key, value, line)
        elif key == "size":
            if m.type != "tmpfs":
                raise ParseError(line, f"unexpected key '{key}' for mount type '{m.type}'")
            m.size = _size(value, line)
        elif key == "id":
            m.id = value
        elif key == "sharing":
            if m.type != "cache":
                raise ParseError(line, f"invalid cache sharing set for {m.type} mount")
            if value.lower() not in ("shared", "private", "locked"):
                raise ParseError(line, f'unsupported sharing value "{value}"')
            m.sharing = value.lower()
        elif key == "mode":
            m.mode = _number("mode", value, 8, line)
        elif key == "uid":
            m.uid = _number("uid", value, 10, line)
        elif key == "gid":
            m.gid = _number("gid", value, 10, line)
        elif key == "env":
            if m.type != "secret":
                raise ParseError(line, f"unexpected key '{key}' for mount type '{m.type}'")
            m.env = value
        else:
            raise ParseError(line, f"unexpected key '{key}' in '{fld}'")
    if m.type not in ("secret", "ssh", "cache"):
        for name, v in (("mode", m.mode), ("uid", m.uid), ("gid", m.gid)):
            if v is not None:
                raise ParseError(line, f'{name} not allowed for "{m.type}" type mounts')
    if ro_auto:
        m.readonly = m.type not in ("cache", "tmpfs")
    if m.type == "secret":
        if m.from_:
            raise ParseError(line, "secret mount should not have a from")
        if not m.source and not m.target and not m.id and m.env is None:
            raise ParseError(line, "one of source, target required")
        if m.source and m.id:
            raise ParseError(line, "both source and id can't be set")
        m.id = m.id or m.source or posixpath.basename(m.target)
        if not m.target and m.env is None:
            m.target = "/run/secrets/" + m.id
        if m.mode is None:
            m.mode = 0o400
    elif m.type == "ssh":
        m.id = m.id or "default"
        m.target = m.target or "/run/buildkit/ssh_agent.0"
        if m.mode is None:
            m.mode = 0o600
    elif not m.target:
        raise ParseError(line, f"mount type {m.type} requires a target")
    if m.type == "cache":
        m.id = m.id or posixpath.normpath(m.target)
        if m.mode is None:
            m.mode = 0o755
    return m


def run_mounts(inst: Instruction, expand: Callable[[str], str] | None = None) -> list[Mount]:
    """Every `--mount` of a RUN line, in order."""
    return [parse_mount(spec, inst.line, expand) for spec in inst.multi.get("mount", [])]


def check_run_flags(inst: Instruction) -> None:
    """RUN's `--network` and `--security` values, as BuildKit accepts them."""
    net = inst.flags.get("network")
    if net is not None and net not in ("default", "none", "host"):
        raise ParseError(inst.line, f"unsupported network mode {net!r}")
    sec = inst.flags.get("security")
    if sec is not None and sec not in ("sandbox", "insecure"):
        raise ParseError(inst.line, f"unsupported security mode {sec!r}")
