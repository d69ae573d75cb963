"""Field names of request bodies not yet decoded into wire structs (exec's), matched as Go does.
Container create and update bodies are decoded by dockyard/wire (types, names, nulls: Go's rules)."""

from __future__ import annotations

from typing import Any

EXEC_CONFIG = ("User", "Privileged", "Tty", "ConsoleSize", "AttachStdin", "AttachStderr", "AttachStdout", "Detach",
               "DetachKeys", "Env", "WorkingDir", "Cmd")
EXEC_START = ("Detach", "Tty", "ConsoleSize")

def go_names(body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Keys spelled as Go's encoding/json matches them: case-insensitively (docker-py sends the exec's
    `detachKeys` so), an exact match winning over a folded one."""
    canon = {f.lower(): f for f in fields}
    out: dict[str, Any] = {}
    for key, value in body.items():
        name = canon.get(key.lower(), key) if key not in fields else key
        if name in out and key != name:
            continue  # the exact spelling was already there
        out[name] = value
    return out
