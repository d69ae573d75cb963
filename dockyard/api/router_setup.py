"""Builds the API router from every endpoint module."""

from __future__ import annotations

from dockyard.api import containers, plugins, swarm, system
from dockyard.api.backends import Backends
from dockyard.api.server import Router


def build_router(engine: Backends) -> Router:
    router = Router()
    router.authz = engine.authz if engine.authz else None
    system.register(router, engine.system)
    containers.register(router, engine.containers, engine.container_io, engine.container_files,
                        engine.container_resources, engine.commits, engine.images, engine.pods)
    plugins.register(router, engine.managed_plugins, engine.registry)
    swarm.register(router, engine.swarm)
    from dockyard.api import images

    images.register(router, engine.images, engine.registry)
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
    from dockyard.api import trace as trace_api

    trace_api.register(router)
    if engine.internals is not None:
        from dockyard.api import internals

        internals.register(router, engine.internals)
    if engine.pods is not None:
        from dockyard.api import pods

        pods.register(router, engine.pods)
    return router
