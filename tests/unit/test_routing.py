"""The router's buckets try only the patterns that can match a path: the answer must be the one trying
every pattern gives (the most specific; of equals, one with a literal first segment, then the first added)."""

from __future__ import annotations

import itertools
from typing import Any
from unittest.mock import MagicMock

import pytest

from dockyard.api.router_setup import build_router
from dockyard.errors import NotFound
from dockyard.http.routing import MethodNotAllowed, Router, _first_segment


def _every_pattern(router: Router, method: str, path: str) -> tuple[Any, dict[str, str]] | str:
    """The rule before the buckets: every route in (literal first segment first, then added) order."""
    routes = sorted(router._routes, key=lambda r: (-r.tie[0], -r.tie[1]))
    best, known = None, False
    for r in routes:
        m = r.regex.match(path)
        if m is None:
            continue
        known = known or r.method != "OPTIONS"
        if r.method == method and (best is None or r.specificity > best[0].specificity):
            best = (r, m.groupdict())
    if best is not None:
        return best[0].handler, best[1]
    return "405" if known else "404"


def _answer(router: Router, method: str, path: str) -> tuple[Any, dict[str, str]] | str:
    try:
        return router.match(method, path)
    except MethodNotAllowed:
        return "405"
    except NotFound:
        return "404"


def test_the_api_routes_answer_as_trying_every_pattern() -> None:
    engine = MagicMock()
    engine.authz = None
    router = build_router(engine)
    paths = {r.pattern.replace("{id}", "abc").replace("{name}", "n").replace("{name:path}", "a/b")
             for r in router._routes}
    segs = sorted({s for r in router._routes for s in r.pattern.split("/") if s and "{" not in s})
    paths |= {"/", "", "x", "/containers", "/containers/", "//", "/containers//stats", "/containers/abc/stats/",
              "/images/a/b/c/json", "/images/json", "/_ping/", "/nosuch/abc"}
    paths |= {f"/{a}/x/{b}" for a, b in itertools.product(segs[:40], segs[:40])}
    paths |= {f"/{a}/{b}" for a, b in itertools.product(segs, segs[:20])}
    assert len(paths) > 1500
    for method in ("GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS"):
        for path in paths:
            assert _answer(router, method, path) == _every_pattern(router, method, path), (method, path)


def _h(name: str) -> Any:
    async def handler(req: Any) -> str:
        return name
    return handler


@pytest.mark.parametrize("order", [0, 1])
def test_ties_and_params_in_any_segment(order: int) -> None:
    rows = [("GET", "/a/{x}/c", _h("literal-first")), ("GET", "/{x}/b/c", _h("param-first")),
            ("GET", "/a/b/{y}", _h("param-last")), ("GET", "/{rest:path}", _h("greedy")),
            ("GET", "/a/{p:path}", _h("greedy-a")), ("GET", "/v{n}/b", _h("partial"))]
    router = Router()
    router.include(rows if order == 0 else rows[::-1])
    for method, path in itertools.product(("GET", "POST"), ("/a/b/c", "/a/z/c", "/q/b/c", "/a/b/q", "/a/q",
                                                              "/v1/b", "/q", "/a/b/c/d", "/", "")):
        assert _answer(router, method, path) == _every_pattern(router, method, path), (order, method, path)
    assert _first_segment("/a/b") == "a"
