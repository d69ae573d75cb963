"""Builds the API router: every group of endpoints (a class whose methods are the handlers, over
its Protocols in api/backends.py) adds its table of routes, in this order."""

from __future__ import annotations

from dockyard.api.backends import Backends
from dockyard.api.containers import ContainerRoutes
from dockyard.api.plugins import PluginRoutes
from dockyard.api.server import Router
from dockyard.api.swarm import SwarmRoutes
from dockyard.api.system import SystemRoutes
from dockyard.api.trace import TraceRoutes


def build_router(engine: Backends) -> Router:
    router = Router()
    router.authz = engine.authz if engine.authz else None
    router.include(SystemRoutes(engine.system).routes())
    router.include(ContainerRoutes(engine.containers, engine.container_io, engine.container_files,
                                   engine.container_resources, engine.commits, engine.images, engine.pods).routes())
    router.include(PluginRoutes(engine.managed_plugins, engine.registry).routes())
    router.include(SwarmRoutes(engine.swarm).routes())
    # The other groups are imported only when the engine has their backend (start-up time).
    from dockyard.api.images import ImageRoutes

    router.include(ImageRoutes(engine.images, engine.registry).routes())
    if engine.registry is not None:
        from dockyard.api.distribution import DistributionRoutes

        router.include(DistributionRoutes(engine.registry).routes())
    if engine.builder is not None:
        from dockyard.api.build import BuildRoutes

        router.include(BuildRoutes(engine.builder).routes())
    if engine.networks is not None:
        from dockyard.api.networks import NetworkRoutes

        router.include(NetworkRoutes(engine.networks).routes())
    if engine.volumes is not None:
        from dockyard.api.volumes import VolumeRoutes

        router.include(VolumeRoutes(engine.volumes).routes())
    if engine.execs is not None:
        from dockyard.api.execs import ExecRoutes

        router.include(ExecRoutes(engine.execs).routes())
    router.include(TraceRoutes().routes())
    if engine.internals is not None:
        from dockyard.api.internals import InternalsRoutes

        router.include(InternalsRoutes(engine.internals).routes())
    if engine.pods is not None:
        from dockyard.api.pods import PodRoutes

        router.include(PodRoutes(engine.pods).routes())
        from dockyard.api.kube import KubeRoutes

        router.include(KubeRoutes(engine.loopback).routes())
    return router
