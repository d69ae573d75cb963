"""A modest Go text/template subset for `--format`/`-f`.

Supported: {{.A.B}}, {{.}}, {{$}}, {{$x}}, pipelines with |, parenthesised sub-pipelines,
string/number/bool literals, if/else if/else, range (with `$i, $v :=`), with, end,
`{{- -}}` trimming, and the functions docker adds: json, join, split, lower, upper, title,
truncate, pad, println, printf (%s %d %v %q), index, len, eq, ne, lt, le, gt, ge, and, or, not,
table headers are handled by the caller.
"""

from __future__ import annotations

import json
import re

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every command's start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class TemplateError(Exception):
    pass


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<num>-?\d+(?:\.\d+)?)|(?P<assign>:=|=)'
    r"|(?P<field>(?:\$[\w]*)?(?:\.[\w]+)+|\.|\$[\w]*)|(?P<ident>[A-Za-z_]\w*)"
    r"|(?P<punct>[|(),]))"
)


def go_value(v: Any) -> str:
    """Go's %v for a decoded JSON value."""
    if v is None:
        return "<nil>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, float):
        return f"{v:g}" if v != int(v) or abs(v) >= 1e21 else str(int(v))
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_value(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(go_value(x) for x in v) + "]"
    return str(v)


def _truth(v: Any) -> bool:
    return bool(v) and v != "0001-01-01T00:00:00Z" if isinstance(v, str) else bool(v)


def _printf(fmt: str, *args: Any) -> str:
    it = iter(args)

    def sub(m: re.Match[str]) -> str:
        verb = m.group(0)
        if verb == "%%":
            return "%"
        v = next(it, None)
        if verb[-1] == "q":
            return json.dumps(str(v))
        return go_value(v)

    return re.sub(r"%[-+# 0-9.]*[svdqfg%]", sub, fmt)


def _index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if v is None:
            return None
        v = v[int(k)] if isinstance(v, list) else v.get(k) if isinstance(v, dict) else None
    return v


def _json(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _truncate(s: Any, n: int) -> str:
    return str(s)[: int(n)]


FUNCS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "join": lambda items, sep: sep.join(go_value(x) for x in (items or [])),
    "split": lambda s, sep: str(s).split(sep),
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
    "title": lambda s: str(s).title(),
    "truncate": _truncate,
    "pad": lambda s, before, after: " " * int(before) + go_value(s) + " " * int(after),
    "println": lambda *a: " ".join(go_value(x) for x in a) + "\n",
    "print": lambda *a: "".join(go_value(x) for x in a),
    "printf": _printf,
    "index": _index,
    "len": lambda v: len(v or []),
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "not": lambda a: not _truth(a),
    "and": lambda *a: next((x for x in a if not _truth(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truth(x)), a[-1]),
}


class _Node:
    pass


class _Text(_Node):
    def __init__(self, text: str) -> None:
        self.text = text


class _Action(_Node):
    def __init__(self, pipe: list[Any], decl: list[str]) -> None:
        self.pipe, self.decl = pipe, decl


class _Block(_Node):
    def __init__(self, kind: str, pipe: list[Any], decl: list[str]) -> None:
        self.kind, self.pipe, self.decl = kind, pipe, decl
        self.body: list[_Node] = []
        self.orelse: list[_Node] = []


def _tokens(src: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    src = src.strip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"unexpected {src[pos:]!r} in command")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(src) and src[pos].isspace():
            pos += 1
    return out


def _parse_pipe(toks: list[tuple[str, str]]) -> tuple[list[Any], list[str]]:
    """Returns (commands, declared variables). A command is a list of operands."""
    decl: list[str] = []
    if len(toks) >= 2 and any(k == "assign" for k, _ in toks):
        i = next(i for i, (k, _) in enumerate(toks) if k == "assign")
        decl = [v for k, v in toks[:i] if k == "field"]
        toks = toks[i + 1 :]
    pos = 0

    def command() -> list[Any]:
        nonlocal pos
        cmd: list[Any] = []
        while pos < len(toks):
            kind, val = toks[pos]
            if kind == "punct" and val in "|)":
                break
            pos += 1
            if kind == "punct" and val == "(":
                sub = pipeline()
                pos += 1  # ')'
                cmd.append(("pipe", sub))
            elif kind == "punct":
                continue
            else:
                cmd.append((kind, val))
        return cmd

    def pipeline() -> list[list[Any]]:
        nonlocal pos
        cmds = [command()]
        while pos < len(toks) and toks[pos] == ("punct", "|"):
            pos += 1
            cmds.append(command())
        return cmds

    return pipeline(), decl


class Template:
    def __init__(self, src: str, strict: bool = False) -> None:
        self.strict = strict  # docker inspect's missingkey=error
        self.root: list[_Node] = []
        stack: list[tuple[_Block, list[_Node]]] = []  # (block, the list it was opened in)
        pos = 0
        target = self.root
        for m in _ACTION.finditer(src):
            text = src[pos : m.start()]
            if m.group(1):
                text = text.rstrip()
            if text:
                target.append(_Text(text))
            pos = m.end()
            if m.group(3):
                rest = src[pos:]
                pos += len(rest) - len(rest.lstrip())
            body = m.group(2).strip()
            if body.startswith("/*"):
                continue
            word = body.split(None, 1)[0] if body else ""
            rest_src = body[len(word) :]
            if word in ("if", "range", "with"):
                pipe, decl = _parse_pipe(_tokens(rest_src))
                block = _Block(word, pipe, decl)
                target.append(block)
                stack.append((block, target))
                target = block.body
            elif word == "else":
                if not stack:
                    raise TemplateError("unexpected {{else}}")
                blk = stack[-1][0]
                inner = rest_src.strip()
                if inner.startswith(("if ", "with ")):
                    w2 = inner.split(None, 1)[0]
                    pipe, decl = _parse_pipe(_tokens(inner[len(w2) :]))
                    nested = _Block(w2 + "-chain", pipe, decl)
                    blk.orelse.append(nested)
                    stack.append((nested, blk.orelse))
                    target = nested.body
                else:
                    target = blk.orelse
            elif word == "end":
                if not stack:
                    raise TemplateError("unexpected {{end}}")
                while True:
                    blk, parent = stack.pop()
                    if not blk.kind.endswith("-chain"):
                        break
                target = parent
            else:
                pipe, decl = _parse_pipe(_tokens(body))
                target.append(_Action(pipe, decl))
        if stack:
            raise TemplateError("unexpected EOF")
        tail = src[pos:]
        if tail:
            target.append(_Text(tail))

    def render(self, data: Any) -> str:
        out: list[str] = []
        self._exec(self.root, data, {"$": data}, out)
        return "".join(out)

    # -- evaluation ----------------------------------------------------------
    def _exec(self, nodes: list[_Node], dot: Any, vars: dict[str, Any], out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                val = self._pipe(node.pipe, dot, vars)
                if node.decl:
                    vars[node.decl[0]] = val
                else:
                    out.append(go_value(val) if not isinstance(val, str) else val)
            elif isinstance(node, _Block):
                self._block(node, dot, vars, out)

    def _block(self, node: _Block, dot: Any, vars: dict[str, Any], out: list[str]) -> None:
        val = self._pipe(node.pipe, dot, vars)
        kind = node.kind.replace("-chain", "")
        scope = dict(vars)
        if kind == "range":
            items: list[tuple[Any, Any]]
            if isinstance(val, dict):
                items = [(k, val[k]) for k in sorted(val)]
            else:
                items = list(enumerate(val or []))
            if not items:
                self._exec(node.orelse, dot, scope, out)
            for k, v in items:
                if len(node.decl) == 2:
                    scope[node.decl[0]], scope[node.decl[1]] = k, v
                elif node.decl:
                    scope[node.decl[0]] = v
                self._exec(node.body, v, scope, out)
            return
        if node.decl:
            scope[node.decl[0]] = val
        if _truth(val):
            self._exec(node.body, val if kind == "with" else dot, scope, out)
        else:
            self._exec(node.orelse, dot, scope, out)

    def _pipe(self, pipe: list[list[Any]], dot: Any, vars: dict[str, Any]) -> Any:
        val: Any = None
        for i, cmd in enumerate(pipe):
            val = self._command(cmd, dot, vars, val if i else _NOARG)
        return val

    def _command(self, cmd: list[Any], dot: Any, vars: dict[str, Any], piped: Any) -> Any:
        if not cmd:
            raise TemplateError("empty command")
        kind, val = cmd[0]
        if kind == "ident" and val not in ("true", "false", "nil"):
            fn = FUNCS.get(val)
            if fn is None:
                raise TemplateError(f'function "{val}" not defined')
            args = [self._operand(a, dot, vars) for a in cmd[1:]]
            if piped is not _NOARG:
                args.append(piped)
            try:
                return fn(*args)
            except (TypeError, ValueError, IndexError, KeyError) as e:
                raise TemplateError(f"error calling {val}: {e}") from e
        return self._operand(cmd[0], dot, vars)

    def _operand(self, tok: tuple[str, Any], dot: Any, vars: dict[str, Any]) -> Any:
        kind, val = tok
        if kind == "pipe":
            return self._pipe(val, dot, vars)
        if kind == "str":
            return json.loads(val) if val.startswith('"') else val[1:-1]
        if kind == "num":
            return float(val) if "." in val else int(val)
        if kind == "ident":
            return {"true": True, "false": False, "nil": None}.get(val)
        if kind == "field":
            base = dot
            path = val
            if val.startswith("$"):
                name, _, path = val.partition(".")
                if name not in vars:
                    raise TemplateError(f"undefined variable: {name}")
                base = vars[name]
                path = "." + path if path else ""
            for part in [p for p in path.split(".") if p]:
                if isinstance(base, dict):
                    if part in base:
                        base = base[part]
                    else:
                        # Go's struct fields are case-exact; JSON keys from dockerd sometimes differ.
                        match = next((k for k in base if k.lower() == part.lower()), None)
                        if match is None:
                            if self.strict:
                                raise TemplateError(
                                    f'executing "" at <{val}>: map has no entry for key "{part}"')
                            return _NoValue()
                        base = base[match]
                elif base is None or isinstance(base, _NoValue):
                    return _NoValue()
                else:
                    raise TemplateError(f"can't evaluate field {part} in type {type(base).__name__}")
            return base
        raise TemplateError(f"unexpected {val}")


class _NoValue:
    def __str__(self) -> str:
        return "<no value>"

    def __bool__(self) -> bool:
        return False


_NOARG = object()


def render(src: str, data: Any) -> str:
    return Template(src).render(data)
