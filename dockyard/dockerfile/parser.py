"""Dockerfile parser: directives, comments, continuations, heredocs, JSON/shell forms, stages.

Parsing is purely syntactic; variable expansion (`expand_word`, `expand_words`) happens at build
time because ARG/ENV values are only known then. Errors carry the 1-based line number, worded as
dockerd's classic builder words them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from dockyard.errors import InvalidParameter

INSTRUCTIONS = {
    "from", "run", "cmd", "entrypoint", "env", "arg", "label", "expose", "copy", "add", "workdir", "user",
    "volume", "stopsignal", "healthcheck", "shell", "onbuild", "maintainer",
}
# Instructions whose arguments get ARG/ENV expansion (Docker's replaceEnvAllowed list).
EXPANDED = {"from", "env", "arg", "label", "expose", "copy", "add", "workdir", "user", "volume", "stopsignal"}
HEREDOC_INSTRUCTIONS = {"run", "copy", "add"}
FLAG_INSTRUCTIONS = {"from", "run", "copy", "add", "healthcheck"}
# Args any build may pass without an ARG line; they reach RUN's env but never the image or cache key.
PROXY_ARGS = {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
              "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"}

# BuildKit's parser directives: `syntax` names a frontend image (the built-in one is used, nothing is
# pulled), `check` configures its build checks (read, kept in Dockerfile.directives).
DIRECTIVES = ("escape", "syntax", "check")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_.-]*)\2")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ParseError(InvalidParameter):
    def __init__(self, line: int, msg: str) -> None:
        super().__init__(f"Dockerfile parse error line {line}: {msg}")
        self.line = line


@dataclass
class Heredoc:
    name: str
    content: str
    expand: bool  # unquoted delimiter: the body gets variable expansion
    chomp: bool  # `<<-`: leading tabs were stripped


@dataclass
class Instruction:
    cmd: str  # lower-case keyword
    rest: str  # everything after the keyword and flags, continuations joined
    line: int
    original: str  # the keyword and its arguments as written (for error messages)
    flags: dict[str, str | None] = field(default_factory=dict)
    heredocs: list[Heredoc] = field(default_factory=list)
    # every value of a flag that may repeat (`RUN --mount`, `COPY --exclude`), in order
    multi: dict[str, list[str]] = field(default_factory=dict)

    @property
    def json_args(self) -> list[str] | None:
        """The arguments when written in JSON (exec) form, else None."""
        s = self.rest.strip()
        if not s.startswith("["):
            return None
        try:
            v = json.loads(s)
        except ValueError:
            return None
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return v
        return None

    def flag(self, name: str, default: str | None = None) -> str | None:
        return self.flags.get(name, default) if name in self.flags else default


@dataclass
class Stage:
    index: int
    name: str  # lower-cased `AS` name, "" when unnamed
    base: str  # unexpanded base reference
    platform: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)
    original: str = ""  # the FROM line as written (the classic builder shows it unexpanded)


@dataclass
class Dockerfile:
    directives: dict[str, str]
    escape: str
    meta_args: list[Instruction]  # ARG lines before the first FROM
    stages: list[Stage]

    def stage_index(self, name_or_index: str) -> int | None:
        key = name_or_index.lower()
        for s in self.stages:
            if s.name and s.name == key:
                return s.index
        if key.isdigit() and int(key) < len(self.stages):
            return int(key)
        return None


# ---------------------------------------------------------------- lines


def _read_directives(lines: list[str]) -> tuple[dict[str, str], int]:
    out: dict[str, str] = {}
    i = 0
    for i, raw in enumerate(lines):
        m = _DIRECTIVE.match(raw.strip())
        if not m or not raw.lstrip().startswith("#"):
            return out, i
        key = m.group(1).lower()
        if key not in DIRECTIVES:  # BuildKit: an unknown directive is a comment, and ends the directives
            return out, i
        if key in out:
            raise ParseError(i + 1, f"only one {key} parser directive can be used")
        out[key] = m.group(2)
    return out, len(lines)


def _strip_continuation(line: str, escape: str) -> tuple[str, bool]:
    s = line.rstrip(" \t\r")
    if s.endswith(escape):
        # An escaped escape (`\\`) at the end is still a continuation in Docker's grammar.
        return s[:-1], True
    return line.rstrip("\r"), False


def parse(text: str | bytes) -> Dockerfile:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.removeprefix("\ufeff")
    lines = text.split("\n")
    directives, i = _read_directives(lines)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise ParseError(1, f"invalid escape token '{escape}' does not match ` or \\")
    instructions: list[Instruction] = []
    n = len(lines)
    while i < n:
        raw = lines[i]
        start = i + 1
        i += 1
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        text_line, cont = _strip_continuation(raw, escape)
        parts = [text_line.lstrip()]
        while cont and i < n:
            nxt = lines[i]
            i += 1
            ns = nxt.strip()
            if ns.startswith("#") or not ns:  # comments and blank lines inside a continuation vanish
                continue
            text_line, cont = _strip_continuation(nxt, escape)
            parts.append(text_line)
        full = "".join(parts).strip()
        m = re.match(r"(\S+)\s*(.*)", full, re.S)
        assert m is not None
        word, rest = m.group(1), m.group(2)
        cmd = word.lower()
        if cmd not in INSTRUCTIONS:
            raise ParseError(start, f"unknown instruction: {word.upper()}")
        flags: dict[str, str | None] = {}
        multi: dict[str, list[str]] = {}
        if cmd in FLAG_INSTRUCTIONS:
            flags, multi, rest = _split_flags(cmd, rest, start)
        inst = Instruction(cmd, rest.strip(), start, full, flags, multi=multi)
        if cmd in HEREDOC_INSTRUCTIONS:
            for hm in _HEREDOC.finditer(rest):
                if cmd == "run" and inst.json_args is not None:
                    break
                body: list[str] = []
                while True:
                    if i >= n:
                        raise ParseError(start, f"unterminated heredoc {hm.group(3)}")
                    ln = lines[i].rstrip("\r")
                    i += 1
                    if hm.group(1):
                        ln = ln.lstrip("\t")
                    if ln == hm.group(3):
                        break
                    body.append(ln + "\n")
                inst.heredocs.append(Heredoc(hm.group(3), "".join(body), not hm.group(2), bool(hm.group(1))))
        _check_args(inst)
        instructions.append(inst)
    return _stages(directives, escape, instructions)


# The flags each instruction takes (BuildKit's set); any other is "Unknown flag: X" on its line.
KNOWN_FLAGS: dict[str, set[str]] = {
    "from": {"platform"},
    "run": {"mount", "network", "security"},
    "copy": {"from", "chown", "chmod", "link", "parents", "exclude"},
    "add": {"chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"},
    "healthcheck": {"interval", "timeout", "start-period", "start-interval", "retries"},
}
MULTI_FLAGS = {"mount", "exclude"}


def _split_flags(cmd: str, rest: str, line: int) -> tuple[dict[str, str | None], dict[str, list[str]], str]:
    flags: dict[str, str | None] = {}
    multi: dict[str, list[str]] = {}
    while rest.startswith("--"):
        m = re.match(r"(\S+)\s*", rest)
        assert m is not None
        tok = m.group(1)
        remainder = rest[m.end():]
        if tok == "--":
            rest = remainder
            break
        name, eq, val = tok[2:].partition("=")
        if not name:
            raise ParseError(line, f"invalid flag: {tok}")
        name = name.lower()
        if name not in KNOWN_FLAGS.get(cmd, set()):
            raise ParseError(line, f"Unknown flag: {name}")
        if name in flags and name not in MULTI_FLAGS:
            raise ParseError(line, f"Duplicate flag specified: {name}")
        flags[name] = val if eq else None
        multi.setdefault(name, []).append(val if eq else "")
        rest = remainder
    return flags, multi, rest


def _check_args(inst: Instruction) -> None:
    c, rest = inst.cmd, inst.rest
    if not rest and not inst.heredocs and c not in ("cmd", "entrypoint", "run"):
        raise ParseError(inst.line, f"{c.upper()} requires at least one argument" if c != "from"
                         else "FROM requires either one or three arguments")
    if c in ("run",) and not rest and not inst.heredocs:
        raise ParseError(inst.line, f"{c.upper()} requires at least one argument")
    if c in ("copy", "add") and not inst.heredocs and len(_fields(inst)) < 2:
        raise ParseError(inst.line, f"{c.upper()} requires at least two arguments, but only one was provided. "
                                    "Destination could not be determined")
    if c == "from":
        words = rest.split()
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
            raise ParseError(inst.line, "FROM requires either one or three arguments")
    if c == "healthcheck":
        hw = rest.split(None, 1)
        if hw and hw[0].upper() not in ("NONE", "CMD"):
            raise ParseError(inst.line, f"Unknown type {hw[0].upper()!r} in HEALTHCHECK (try CMD)")
    if c == "shell" and inst.json_args is None:
        raise ParseError(inst.line, "SHELL requires the arguments to be in JSON form")
    if c == "onbuild":
        w = rest.split(None, 1)[0].lower()
        if w in ("onbuild", "from", "maintainer"):
            raise ParseError(inst.line, f"{w.upper()} isn't allowed as an ONBUILD trigger")
        if w not in INSTRUCTIONS:
            raise ParseError(inst.line, f"unknown instruction: {w.upper()}")


def _fields(inst: Instruction) -> list[str]:
    """COPY/ADD/VOLUME arguments: JSON form or whitespace-separated."""
    ja = inst.json_args
    return ja if ja is not None else inst.rest.split()


def fields(inst: Instruction) -> list[str]:
    return _fields(inst)


def _stages(directives: dict[str, str], escape: str, insts: list[Instruction]) -> Dockerfile:
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for inst in insts:
        if inst.cmd == "from":
            words = inst.rest.split()
            name = words[2].lower() if len(words) == 3 else ""
            if name and not re.fullmatch(r"[a-z][a-z0-9\-_.]*", name):
                raise ParseError(inst.line, f"invalid name for build stage: {words[2]!r}, name can't start with "
                                            "a number or contain symbols")
            if name and any(s.name == name for s in stages):
                raise ParseError(inst.line, f"duplicate stage name {name!r}")
            stages.append(Stage(len(stages), name, words[0], inst.flags.get("platform"), inst.line,
                                original=inst.original))
        elif not stages:
            if inst.cmd != "arg":
                raise ParseError(inst.line, "no build stage in current context" if inst.cmd != "from" else "")
            meta.append(inst)
        else:
            stages[-1].instructions.append(inst)
    if not stages:
        raise InvalidParameter("Dockerfile parse error: file with no instructions" if not meta
                               else "Dockerfile parse error: no build stage in current context")
    return Dockerfile(directives, escape, meta, stages)


# ---------------------------------------------------------------- words and expansion


def split_words(s: str, escape: str = "\\") -> list[str]:
    """Whitespace-separated words keeping quotes and escapes (for ENV/LABEL/ARG name=value pairs)."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    i = 0
    in_word = False
    while i < len(s):
        ch = s[i]
        if not quote and ch in " \t\n":
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            i += 1
            continue
        in_word = True
        if ch == escape and i + 1 < len(s) and quote != "'":
            cur.append(ch + s[i + 1])
            i += 2
            continue
        if ch in "'\"":
            quote = "" if quote == ch else (quote or ch)
        cur.append(ch)
        i += 1
    if in_word:
        words.append("".join(cur))
    return words


def name_values(inst: Instruction, escape: str = "\\") -> list[tuple[str, str]]:
    """ENV/LABEL pairs (unexpanded, quotes kept): `K=V K2="a b"` or legacy `K some value`."""
    words = split_words(inst.rest, escape)
    if not words:
        raise ParseError(inst.line, f"{inst.cmd.upper()} requires at least one argument")
    if "=" not in words[0]:
        if inst.cmd == "label":
            raise ParseError(inst.line, "LABEL requires at least one argument" if len(words) < 2
                             else f"Syntax error - can't find = in {words[0]!r}. Must be of the form: name=value")
        key, _, val = inst.rest.strip().partition(" ")
        if not val.strip():
            raise ParseError(inst.line, f"{inst.cmd.upper()} must have two arguments")
        return [(key, val.strip())]
    out: list[tuple[str, str]] = []
    for w in words:
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise ParseError(inst.line, f"Syntax error - can't find = in {w!r}. Must be of the form: name=value")
        out.append((k, v))
    return out


class _Lexer:
    def __init__(self, s: str, env: Mapping[str, str], escape: str, line: int) -> None:
        self.s, self.env, self.esc, self.line = s, env, escape, line
        self.i = 0

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def take(self) -> str:
        ch = self.peek()
        self.i += 1
        return ch

    def words(self, split: bool) -> list[str]:
        """Process the whole string; with `split`, unquoted whitespace separates words."""
        words: list[str] = []
        cur: list[str] = []
        has = False
        while self.i < len(self.s):
            ch = self.take()
            if split and ch in " \t\n":
                if has:
                    words.append("".join(cur))
                cur, has = [], False
                continue
            has = True
            if ch == self.esc:
                if self.i < len(self.s):
                    cur.append(self.take())
            elif ch == "'":
                cur.append(self._until_single())
            elif ch == '"':
                cur.append(self._double())
            elif ch == "$":
                val = self._dollar()
                if split:
                    # An unquoted variable's value splits on whitespace, like the shell.
                    pieces = re.split(r"[ \t\n]+", val)
                    cur.append(pieces[0])
                    for p in pieces[1:]:
                        words.append("".join(cur))
                        cur = [p]
                else:
                    cur.append(val)
            else:
                cur.append(ch)
        if has:
            words.append("".join(cur))
        return [w for w in words if w != ""] if split else words

    def _until_single(self) -> str:
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise ParseError(self.line, "unexpected end of statement while looking for matching single-quote")
            ch = self.take()
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def _double(self) -> str:
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise ParseError(self.line, "unexpected end of statement while looking for matching double-quote")
            ch = self.take()
            if ch == '"':
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
            elif ch == self.esc and self.i < len(self.s):
                nxt = self.take()
                out.append(nxt if nxt in ('"', "$", self.esc) else ch + nxt)
            else:
                out.append(ch)

    def _dollar(self) -> str:
        ch = self.peek()
        if ch == "{":
            self.take()
            m = _NAME.match(self.s, self.i)
            if not m:
                raise ParseError(self.line, f"missing ':' in substitution: {self.s}")
            name = m.group(0)
            self.i = m.end()
            ch = self.take()
            if ch == "}":
                return self.env.get(name, "")
            op = ch
            if ch == ":":
                op += self.take()
            if op not in (":-", ":+", ":?", "-", "+", "?"):
                raise ParseError(self.line, f"unsupported modifier ({op}) in substitution")
            word = self._word_until_brace()
            val = self.env.get(name)
            colon = op.startswith(":")
            unset = val is None or (colon and val == "")
            kind = op[-1]
            if kind == "-":
                return word if unset else str(val)
            if kind == "+":
                return "" if unset else word
            if unset:
                raise ParseError(self.line, f"{name}: {word or 'is not allowed to be unset'}")
            return str(val)
        m = _NAME.match(self.s, self.i)
        if m:
            self.i = m.end()
            return self.env.get(m.group(0), "")
        if ch.isdigit():  # positional parameters are always empty
            self.take()
            return ""
        return "$"

    def _word_until_brace(self) -> str:
        depth = 0
        start = self.i
        while self.i < len(self.s):
            ch = self.s[self.i]
            if ch == self.esc:
                self.i += 2
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                if depth == 0:
                    inner = self.s[start:self.i]
                    self.i += 1
                    return _Lexer(inner, self.env, self.esc, self.line).words(False)[0] if inner else ""
                depth -= 1
            self.i += 1
        raise ParseError(self.line, "syntax error: missing '}'")


def expand_word(s: str, env: Mapping[str, str], escape: str = "\\", line: int = 0) -> str:
    """One word with quotes removed and $VAR, ${VAR}, ${VAR:-d}, ${VAR:+alt} expanded."""
    out = _Lexer(s, env, escape, line).words(False)
    return out[0] if out else ""


def expand_words(s: str, env: Mapping[str, str], escape: str = "\\", line: int = 0) -> list[str]:
    """Like the shell: expand, then split on unquoted whitespace."""
    return _Lexer(s, env, escape, line).words(True)
