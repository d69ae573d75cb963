"""Routes to handlers: `{name}` is one path segment, `{name:path}` the rest of the path (image names
contain slashes). The most specific pattern wins; a known path with another method is a 405."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from dockyard.errors import DockyardError, NotFound
from dockyard.http.messages import Request

Handler = Callable[[Request], Awaitable[Any]]  # returns a Response (or, where the site allows, a Hijack)
Route = tuple[str, str, Handler]  # (method, pattern, handler): one row of a group's table

_PARAM = re.compile(r"\{(\w+)(:path)?\}")


class MethodNotAllowed(DockyardError):
    status = 405


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Callable[..., Any]
    specificity: tuple[int, int]  # (literal chars, -rest-of-path params): higher wins
    tie: tuple[int, int]  # of two as specific, the higher wins: a literal first segment's, then the first added


def _compile(pattern: str) -> tuple[re.Pattern[str], tuple[int, int]]:
    parts: list[str] = []
    literal, greedy, pos = 0, 0, 0
    for m in _PARAM.finditer(pattern):
        parts.append(re.escape(pattern[pos : m.start()]))
        literal += m.start() - pos
        if m.group(2):
            greedy += 1
            parts.append(f"(?P<{m.group(1)}>.+)")
        else:
            parts.append(f"(?P<{m.group(1)}>[^/]+)")
        pos = m.end()
    parts.append(re.escape(pattern[pos:]))
    literal += len(pattern) - pos
    return re.compile("".join(parts) + r"\Z"), (literal, -greedy)


def _key(segs: list[str], literal_first: bool) -> tuple[str | None, int, str | None]:
    """A pattern's bucket (its `/`-split segments): its first and last segments where they are literal
    (a segment with a param in it may be any text: None), and how many there are."""
    last = segs[-1] if "{" not in segs[-1] and "}" not in segs[-1] else None
    return segs[1] if literal_first else None, len(segs), last


def _first_segment(path: str) -> str:
    return path.split("/", 2)[1] if path.startswith("/") else ""


class Router:
    def __init__(self) -> None:
        self._routes: list[_Route] = []
        # A pattern without a rest-of-path param matches only paths of as many segments: such routes by
        # (first segment, segment count, last segment), a segment that holds a param as None; the others by
        # their first segment when it is all literal ("containers"), and the rest, which any path may match.
        # A request tries the few patterns that can match it, not all ~200 (~0.15 ms a request) nor the
        # ~25 under /containers (~30 µs: `docker stats` of 500 containers is 1,000 requests).
        self._exact: dict[tuple[str | None, int, str | None], list[_Route]] = {}
        self._by_segment: dict[str, list[_Route]] = {}
        self._anywhere: list[_Route] = []

    def add(self, method: str, pattern: str, handler: Callable[..., Any]) -> None:
        regex, spec = _compile(pattern)
        first = _first_segment(pattern)
        literal_first = bool(first) and "{" not in first and "}" not in first
        route = _Route(method.upper(), pattern, regex, handler, spec, (int(literal_first), -len(self._routes)))
        self._routes.append(route)
        if not any(m.group(2) for m in _PARAM.finditer(pattern)):
            self._exact.setdefault(_key(pattern.split("/"), literal_first), []).append(route)
        elif literal_first:
            self._by_segment.setdefault(first, []).append(route)
        else:
            self._anywhere.append(route)

    def include(self, routes: Iterable[Route]) -> None:
        """Add a group's table (its `routes()`)."""
        for method, pattern, handler in routes:
            self.add(method, pattern, handler)

    def match(self, method: str, path: str) -> tuple[Callable[..., Any], dict[str, str]]:
        """The most specific route for (method, path); NotFound or MethodNotAllowed otherwise."""
        best: tuple[_Route, dict[str, str]] | None = None
        path_known = False
        segs = path.split("/")
        n, first, last = len(segs), segs[1] if len(segs) > 1 else None, segs[-1]
        exact = self._exact
        for route in (*exact.get((first, n, last), ()), *exact.get((first, n, None), ()),
                      *exact.get((None, n, last), ()), *exact.get((None, n, None), ()),
                      *self._by_segment.get(_first_segment(path), ()), *self._anywhere):
            m = route.regex.match(path)
            if m is None:
                continue
            path_known = path_known or route.method != "OPTIONS"  # the catch-all preflight knows no path
            if route.method == method and (best is None or (route.specificity, route.tie) >
                                           (best[0].specificity, best[0].tie)):
                best = (route, m.groupdict())
        if best is not None:
            return best[0].handler, best[1]
        if path_known:
            raise MethodNotAllowed("method not allowed")
        raise NotFound("page not found")
