""".dockerignore-style patterns: rooted at their directory (unlike gitignore), `**`, `!` exceptions;
a path is excluded when the last pattern matching it or one of its parent directories is not a `!`."""

from __future__ import annotations

from pathlib import Path

from pathspec.patterns.gitwildmatch import GitWildMatchPattern


class Ignore:
    def __init__(self, patterns: list[str]) -> None:
        self.rules: list[tuple[GitWildMatchPattern, bool]] = []
        for raw in patterns:
            p = raw.strip()
            if not p or p.startswith("#"):
                continue
            neg = p.startswith("!")
            p = p[1:].strip() if neg else p
            p = p.removeprefix("./").lstrip("/").rstrip("/")
            if p:
                # Anchored: a .dockerignore pattern is relative to the root (gitignore's would float).
                self.rules.append((GitWildMatchPattern("/" + p), neg))

    @classmethod
    def file(cls, path: Path, extra: list[str] | None = None) -> Ignore:
        lines = path.read_text().splitlines() if path.is_file() else []
        return cls([*lines, *(extra or [])])

    def __bool__(self) -> bool:
        return bool(self.rules)

    def match(self, rel: str) -> bool:
        """True when `rel` (relative, '/'-separated) is excluded."""
        if not self.rules or not rel or rel == ".":
            return False
        parts = rel.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        excluded = False
        for pat, neg in self.rules:
            if any(pat.match_file(p) is not None for p in prefixes):
                excluded = not neg
        return excluded
