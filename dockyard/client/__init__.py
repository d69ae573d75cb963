"""Engine API client (unix/tcp), shared by the CLI and compose."""

from dockyard.client.api import APIClient, auth_header
from dockyard.client.base import STDERR, STDIN, STDOUT, APIError, ConnectError, Hijacked, Stream, demux

__all__ = ["APIClient", "APIError", "ConnectError", "Hijacked", "Stream", "demux", "auth_header",
           "STDIN", "STDOUT", "STDERR"]
