"""Variable interpolation (`${VAR:-default}` and friends) and `.env` files, as compose-go does them."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dockyard.compose.errors import ComposeError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InterpolationError(ComposeError):
    pass


class Interpolator:
    """Substitutes variables from `env`; warns once per unset variable that defaults to blank."""

    def __init__(self, env: Mapping[str, str], warn: bool = True) -> None:
        self.env = env
        self.warn = warn
        self.warned: set[str] = set()

    def string(self, text: str, where: str) -> str:
        out, i = self._scan(text, 0, where, stop=None)
        return out

    def value(self, obj: Any, where: str) -> Any:
        """Walk a YAML tree; `where` is the dotted path used in error messages."""
        if isinstance(obj, str):
            return self.string(obj, where)
        if isinstance(obj, dict):
            return {k: self.value(v, f"{where}.{k}" if where else str(k)) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.value(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return obj

    # A tiny recursive scanner: defaults may hold further ${...} expressions.
    def _scan(self, text: str, i: int, where: str, stop: str | None) -> tuple[str, int]:
        out: list[str] = []
        n = len(text)
        while i < n:
            c = text[i]
            if stop is not None and c == stop:
                return "".join(out), i
            if c != "$":
                out.append(c)
                i += 1
                continue
            nxt = text[i + 1] if i + 1 < n else ""
            if nxt == "$":
                out.append("$")
                i += 2
            elif nxt == "{":
                val, i = self._braced(text, i + 2, where)
                out.append(val)
            else:
                m = _NAME.match(text, i + 1)
                if not m:
                    out.append("$")
                    i += 1
                    continue
                out.append(self._lookup(m.group(0), where))
                i = m.end()
        if stop is not None:
            raise InterpolationError(f"invalid interpolation format for {where}: {text!r}: missing '}}'")
        return "".join(out), i

    def _braced(self, text: str, i: int, where: str) -> tuple[str, int]:
        m = _NAME.match(text, i)
        if not m:
            raise InterpolationError(f"invalid interpolation format for {where}: {text!r}")
        name = m.group(0)
        i = m.end()
        if i < len(text) and text[i] == "}":
            return self._lookup(name, where), i + 1
        for op in (":-", ":?", ":+", "-", "?", "+"):
            if text.startswith(op, i):
                break
        else:
            raise InterpolationError(f"invalid interpolation format for {where}: {text!r}")
        arg, j = self._scan(text, i + len(op), where, stop="}")
        value = self.env.get(name)
        is_set = value is not None
        non_empty = bool(value)
        present = non_empty if op.startswith(":") else is_set
        kind = op[-1]
        if kind == "-":
            result = value if present else arg
        elif kind == "+":
            result = arg if present else ""
        else:  # "?": required
            if not present:
                detail = f": {arg}" if arg else ""
                raise InterpolationError(
                    f"error while interpolating {where}: required variable {name} is missing a value{detail}")
            result = value
        return result or "", j + 1

    def _lookup(self, name: str, where: str) -> str:
        value = self.env.get(name)
        if value is None:
            if self.warn and name not in self.warned:
                self.warned.add(name)
                print(f'WARN[0000] The "{name}" variable is not set. Defaulting to a blank string.',
                      file=sys.stderr)
            return ""
        return value


def parse_dotenv(path: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """KEY=VALUE lines; `export`, comments, single quotes (literal), double quotes (escapes, ${})."""
    result: dict[str, str] = {}
    lookup: dict[str, str] = dict(env or {})
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise ComposeError(f"failed to read {path}: {e.strerror}") from e
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not _NAME.fullmatch(key):
            raise ComposeError(f"{path}:{lineno}: unexpected character in variable name {key!r}")
        if not sep:
            if key in lookup:
                result[key] = lookup[key]
            continue
        value = value.strip()
        interp = Interpolator({**lookup, **result}, warn=False)
        if value[:1] == "'" and value.rfind("'") > 0:
            value = value[1:value.rfind("'")]
        elif value[:1] == '"' and value.rfind('"') > 0:
            value = value[1:value.rfind('"')]
            value = value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
            value = interp.string(value, f"{path.name}:{lineno}")
        else:
            hash_at = value.find(" #")
            if hash_at >= 0:
                value = value[:hash_at].rstrip()
            value = interp.string(value, f"{path.name}:{lineno}")
        result[key] = value
    return result
