"""The adapters as the services see them: the OCI runtime, network attachment and the image
layers, each a Protocol. `daemon/wiring.py` hands in the real ones (runtime/monitor.Monitor,
services/networks.NetworkService, services/images.ImageService); the unit tests of the state
machines above them hand in fakes (tests/unit/fakes.py).

The runtime boundary is podman's `OCIRuntime` in spirit: a thin wrapper over conmon + runc that
keeps no container state of its own beyond what the kernel and conmon's files say.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import os

    from dockyard.runtime.attach import AttachSocket
    from dockyard.runtime.monitor import ExecSession
    from dockyard.runtime.spec import Resources


class ContainerRuntime(Protocol):
    """One container's process lifecycle under its monitor (runtime/monitor.Monitor)."""

    exit_dir: Path  # where the monitor drops `<cid>` when the container's process is gone

    async def create(self, cid: str, bundle_dir: str | os.PathLike[str], runtime: str = "runc",
                     log_path: str | None = None, tty: bool = False, stdin: bool = False,
                     log_max: int | None = None, leave_stdin_open: bool = False, timeout: float = 60,
                     spec: dict[str, Any] | None = None) -> int:
        """Create the container from its OCI bundle (not yet running); returns its pid. `spec` is the
        bundle's config.json as the caller built it (the trace names what the runtime was asked)."""
        ...

    async def start(self, cid: str) -> None: ...
    async def kill(self, cid: str, sig: int | str = signal.SIGTERM, all_: bool = False) -> None: ...
    async def pause(self, cid: str) -> None: ...
    async def resume(self, cid: str) -> None: ...
    async def state(self, cid: str) -> dict[str, Any] | None:
        """The runtime's view (`runc state`: "status" is created, running, paused or stopped); None if unknown."""
        ...

    async def update(self, cid: str, res: Resources) -> None: ...
    async def delete(self, cid: str, force: bool = False) -> None:
        """Drop the runtime's state and cgroup; a container it never knew is fine."""
        ...

    async def attach(self, cid: str) -> AttachSocket: ...
    def resize(self, cid: str, height: int, width: int) -> None: ...
    def exit_code(self, cid: str) -> int | None:
        """The exit status once the process is gone (128+n for signal n), else None."""
        ...

    def oom_killed(self, cid: str) -> bool: ...
    def conmon_alive(self, cid: str) -> bool: ...
    def conmon_pid(self, cid: str) -> int | None: ...
    async def exec_(self, cid: str, exec_id: str, process: dict[str, Any], tty: bool = False,
                    stdin: bool = False, attach: bool = True, timeout: float = 60,
                    hold: bool = False) -> ExecSession: ...


class Attachment(Protocol):
    """What attaching a container to its networks gives the spec builder."""

    @property
    def netns_path(self) -> Path | None: ...
    @property
    def hosts_path(self) -> Path: ...
    @property
    def resolv_path(self) -> Path: ...
    @property
    def hostname_path(self) -> Path: ...
    @property
    def network_settings(self) -> dict[str, Any]: ...
    @property
    def plumb(self) -> Callable[[], None] | None: ...


class NetworkAttacher(Protocol):
    """A container's network life (services/networks.NetworkService): declare at create, attach at
    start, detach at exit, forget at removal; rename keeps its DNS names current."""

    async def declare(self, cid: str, network_mode: str, endpoints_config: dict[str, Any] | None,
                      links: list[str] | None = None, durable: bool = True) -> None: ...
    async def attach(self, cid: str, name: str, hostname: str, network_mode: str,
                     endpoints_config: dict[str, Any], port_bindings: dict[str, Any],
                     exposed_ports: dict[str, Any], publish_all: bool, dns: list[str],
                     dns_search: list[str], dns_options: list[str], extra_hosts: list[str], mac: str | None,
                     domainname: str = "", defer_plumbing: bool = False,
                     link_hosts: list[tuple[str, list[str]]] | None = None) -> Attachment: ...
    async def detach(self, cid: str, wait: bool = True) -> None:
        """Release the container's network; wait=False: in the background if it is deferrable."""
        ...

    async def forget(self, cid: str, wait: bool = True) -> None: ...
    def deferrable(self, cid: str) -> bool:
        """Its network may be released after the container's removal has answered."""
        ...

    def settings(self, cid: str) -> dict[str, Any]: ...
    def has_sandbox(self, cid: str) -> bool:
        """The container holds a network sandbox (netns, veths, addresses: made at start, released at exit)."""
        ...

    def netns_left(self, cid: str) -> bool:
        """The container's own netns file exists (perhaps with no sandbox row: a start cut short by a crash)."""
        ...

    async def reconcile(self, cid: str) -> None:
        """A running container adopted after a crash: drop the endpoints the kernel does not have."""
        ...

    def rename(self, cid: str, name: str) -> None: ...


class ImageConfig(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...


class ImageLayers(Protocol):
    """What containers need of the image store: an image's config and its layer dirs."""

    def resolve(self, ref_or_id: str) -> ImageConfig: ...
    def layer_dirs(self, image_id: str) -> list[Path]: ...
