"""Compose's own error: a message that names the file, the service and the key at fault."""

from __future__ import annotations


class ComposeError(Exception):
    pass
