"""Builds the API router from every endpoint module."""

from __future__ import annotations

from typing import Any

from dockyard.api import containers, system
from dockyard.api.server import Router


def build_router(engine: Any) -> Router:
    router = Router()
    system.register(router, engine)
    containers.register(router, engine)
    from dockyard.api import images

    images.register(router, engine.images)
    if engine.registry is not None:
        from dockyard.api import distribution

        distribution.register(router, engine.registry)
    if engine.builder is not None:
        from dockyard.api import build

        build.register(router, engine.builder)
    if engine.networks is not None:
        from dockyard.api import networks

        networks.register(router, engine.networks)
    if engine.volumes is not None:
        from dockyard.api import volumes

        volumes.register(router, engine.volumes)
    if engine.execs is not None:
        from dockyard.api import execs as exec_api

        exec_api.register(router, engine.execs)
    if getattr(engine, "internals", None) is not None:
        from dockyard.api import internals

        internals.register(router, engine.internals)
    return router
