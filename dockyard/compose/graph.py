"""The service dependency graph: checks (unknown service, cycles) and start/stop order."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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


def walk(services: Mapping[str, Any], selected: Iterable[str], fn: Callable[[str], None],
         reverse: bool = False, workers: int = 8) -> None:
    """Run fn(service) in parallel, each once its dependencies are done (reverse: once its dependants
    are), as Compose does; after a failure nothing new starts, and the first error is raised."""
    chosen = set(selected)
    deps = {n: {d for d in _deps(services[n]) if d in chosen} for n in chosen}
    if reverse:
        deps = {n: {m for m in chosen if n in deps[m]} for n in chosen}
    order(services, chosen)  # raises on a cycle before anything runs
    done: set[str] = set()
    running: dict[Future[None], str] = {}
    error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while True:
            if error is None:
                for n in sorted(chosen - done - set(running.values())):
                    if deps[n] <= done:
                        running[pool.submit(fn, n)] = n
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                name = running.pop(f)
                exc = f.exception()
                if exc is not None and error is None:
                    error = exc
                done.add(name)
    if error is not None:
        raise error
