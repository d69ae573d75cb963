"""A test authorization plugin (AuthZPlugin.AuthZReq/AuthZRes).

`--policy allow`: allows everything (and logs it). `--policy strict`: forbids privileged
containers and bind mounts of the host's `/` (as -v /:/x or --mount type=bind,src=/), and
withholds any response whose body names the label `authz.hide`. `--policy readers`: the TLS user
`bob` may only read (GET and HEAD); anyone else anything.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import pluginhttp


def _body(req: Any, key: str) -> Any:
    raw = (req or {}).get(key)
    if not raw:
        return None
    try:
        return json.loads(base64.b64decode(raw))
    except ValueError:
        return None


def strict_request(req: Any) -> dict[str, Any]:
    uri = (req or {}).get("RequestUri", "")
    if req.get("RequestMethod") == "POST" and uri.partition("?")[0].endswith("/containers/create"):
        hc = (_body(req, "RequestBody") or {}).get("HostConfig") or {}
        if hc.get("Privileged"):
            return {"Allow": False, "Msg": "privileged containers are forbidden here"}
        for bind in hc.get("Binds") or []:
            if bind.split(":")[0] == "/":
                return {"Allow": False, "Msg": "binding the host's / is forbidden here"}
        for m in hc.get("Mounts") or []:
            if m.get("Type") == "bind" and m.get("Source") == "/":
                return {"Allow": False, "Msg": "binding the host's / is forbidden here"}
    return {"Allow": True}


def strict_response(req: Any) -> dict[str, Any]:
    raw = (req or {}).get("ResponseBody")
    if raw and b"authz.hide" in base64.b64decode(raw):
        return {"Allow": False, "Msg": "this answer names a hidden object"}
    return {"Allow": True}


def main() -> None:
    a = pluginhttp.args("test authorization plugin")
    policy = sys.argv[sys.argv.index("--policy") + 1] if "--policy" in sys.argv else "allow"
    if policy == "readers":
        def readers(req: Any) -> dict[str, Any]:
            if req.get("User") == "bob" and req.get("RequestMethod") not in ("GET", "HEAD"):
                return {"Allow": False, "Msg": f"user bob may only read (authenticated by {req.get('UserAuthNMethod')})"}
            return {"Allow": True}

        handlers = {"/AuthZPlugin.AuthZReq": readers, "/AuthZPlugin.AuthZRes": lambda _r: {"Allow": True}}
    elif policy == "strict":
        handlers = {"/AuthZPlugin.AuthZReq": strict_request, "/AuthZPlugin.AuthZRes": strict_response}
    else:
        handlers = {"/AuthZPlugin.AuthZReq": lambda _r: {"Allow": True},
                    "/AuthZPlugin.AuthZRes": lambda _r: {"Allow": True}}
    pluginhttp.serve(a, ["authz"], handlers)


if __name__ == "__main__":
    main()
