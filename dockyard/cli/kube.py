"""`dockyard kube ...`."""

from __future__ import annotations

from dockyard.cli.common import Command

COMMANDS: list[Command] = []
