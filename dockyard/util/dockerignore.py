""".dockerignore as Docker reads and applies it (moby's dockerignore.ReadAll and fileutils.PatternMatcher).

- Reading: a line starting with `#` is a comment (only at the very start); spaces around a pattern
  and after a leading `!` are trimmed; each pattern is cleaned (`a/../b` is `b`) and a leading `/`
  dropped: patterns are rooted at the context, never floating as in gitignore.
- Matching: `*` and `?` stay within one path segment, `**` spans any number of them, `\\` escapes;
  the last pattern that matches decides, and a `!` pattern re-includes. A pattern also matches
  everything under a directory it matches (`ignored` excludes `ignored/subdir/file`).
- The build: the client leaves out what the patterns exclude, except that it always sends the
  Dockerfile and .dockerignore; the daemon, once it has read the Dockerfile, drops those two from
  the context if the patterns exclude them (so neither ends up in the image through `COPY .`).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field


def read_patterns(text: str) -> list[str]:
    """dockerignore.ReadAll: the file's patterns, `!` kept in front of exceptions."""
    out = []
    for n, line in enumerate(text.splitlines()):
        if n == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = posixpath.normpath(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        out.append("!" + pattern if invert else pattern)
    return out


def _regex(pattern: str) -> re.Pattern[str]:
    """fileutils' translation of one cleaned pattern to a regular expression, quirks included
    (only `.` and `$` are escaped; other regexp characters keep their meaning, as in moby)."""
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < len(pattern) and pattern[i] == "*":
                i += 1
                if i < len(pattern) and pattern[i] == "/":
                    i += 1
                out += ".*" if i >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch in ".$":
            out += "\\" + ch
        elif ch == "\\":
            if i < len(pattern):
                out += "\\" + pattern[i]
                i += 1
            else:
                out += "\\\\"
        else:
            out += ch
    return re.compile(out + "$", re.S)


@dataclass
class _Pattern:
    text: str
    exclusion: bool
    dirs: list[str]
    regex: re.Pattern[str]


@dataclass
class PatternMatcher:
    patterns: list[_Pattern] = field(default_factory=list)

    @classmethod
    def of(cls, patterns: Iterable[str]) -> PatternMatcher:
        pm = cls()
        for p in patterns:
            p = p.strip()
            if not p:
                continue
            p = posixpath.normpath(p)
            exclusion = p.startswith("!")
            if exclusion:
                if len(p) == 1:
                    raise ValueError('illegal exclusion pattern: "!"')
                p = p[1:]
            try:
                rx = _regex(p)
            except re.error as e:
                raise ValueError(f"syntax error in pattern {p!r}: {e}") from None
            pm.patterns.append(_Pattern(p, exclusion, p.split("/"), rx))
        return pm

    @property
    def exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def matches(self, path: str) -> bool:
        """Whether `path` (relative, `/`-separated) is excluded: the last matching pattern decides,
        and a pattern matching one of its parent directories counts."""
        path = posixpath.normpath(path)
        parent = posixpath.dirname(path) or "."
        parent_dirs = parent.split("/")
        matched = False
        for p in self.patterns:
            hit = p.regex.match(path) is not None
            if not hit and parent != "." and len(p.dirs) <= len(parent_dirs):
                hit = p.regex.match("/".join(parent_dirs[:len(p.dirs)])) is not None
            if hit:
                matched = not p.exclusion
        return matched

    def may_reinclude_under(self, dir_path: str) -> bool:
        """Whether an exception could bring back something below an excluded directory (the walk
        must then go into it, as the docker CLI's tar writer does)."""
        prefix = posixpath.normpath(dir_path) + "/"
        for p in self.patterns:
            if not p.exclusion:
                continue
            if p.text.startswith(prefix) or "**" in p.text or p.text.startswith("*"):
                return True
            if any(ch in p.text for ch in "*?[") and _could_be_under(p.text, prefix):
                return True
        return False


def _could_be_under(pattern: str, prefix: str) -> bool:
    """A wildcard exception whose leading segments match the directory's (cheap, conservative)."""
    segs, dirs = pattern.split("/"), prefix.rstrip("/").split("/")
    if len(segs) <= len(dirs):
        return False
    return all(_regex(s).match(d) is not None for s, d in zip(segs, dirs, strict=False))


def build_files_to_drop(dockerignore: str | None, dockerfile: str) -> list[str]:
    """What dockerd's classic builder removes from a context after reading the Dockerfile: the
    .dockerignore and the Dockerfile, each only when .dockerignore's own patterns exclude it."""
    if dockerignore is None:
        return []
    pm = PatternMatcher.of(read_patterns(dockerignore))
    return [f for f in (".dockerignore", dockerfile) if pm.matches(f)]
