"""The service dependency graph: checks (unknown service, cycles) and start/stop order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dockyard.compose.errors import ComposeError


def _deps(svc: Mapping[str, Any]) -> list[str]:
    deps = list((svc.get("depends_on") or {}).keys())
    for ref in (svc.get("network_mode") or "", ):
        if ref.startswith("service:"):
            deps.append(ref.split(":", 1)[1])
    for vf in svc.get("volumes_from") or []:
        if not str(vf).startswith("container:"):
            deps.append(str(vf).split(":")[0])
    return deps


def check_dependencies(services: Mapping[str, Any], disabled: Mapping[str, Any]) -> None:
    for name, svc in services.items():
        for dep in _deps(svc):
            if dep not in services:
                required = (svc.get("depends_on") or {}).get(dep, {}).get("required", True)
                if dep in disabled and not required:
                    continue
                why = " (its profile is not enabled)" if dep in disabled else ""
                raise ComposeError(f"service {name!r} depends on undefined service {dep!r}{why}: "
                                   "invalid compose project")
    order(services)


def order(services: Mapping[str, Any], only: Iterable[str] | None = None) -> list[str]:
    """Dependencies first; with `only`, those services and what they depend on."""
    result: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise ComposeError(f"dependency cycle detected: {' -> '.join(cycle)}")
        state[name] = 1
        for dep in _deps(services[name]):
            if dep in services:
                visit(dep, [*path, name])
        state[name] = 2
        result.append(name)

    for name in sorted(only if only is not None else services):
        visit(name, [])
    return result


def dependants(services: Mapping[str, Any], name: str) -> list[str]:
    return [n for n, s in services.items() if name in _deps(s)]
