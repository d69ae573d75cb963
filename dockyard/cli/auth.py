"""~/.docker/config.json credentials (base64 `auths`), as docker's login/logout keep them."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

INDEX_SERVER = "https://index.docker.io/v1/"


def config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    return Path(base) / "config.json"


def load_config() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(config_path().read_text())
        return data
    except (OSError, ValueError):
        return {}


def save_config(cfg: dict[str, Any]) -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cfg, indent="\t") + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def registry_of(image: str) -> str:
    """The registry host of an image reference (docker.io's index for bare names)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return INDEX_SERVER


def normalize_server(server: str | None) -> str:
    if not server or server in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return INDEX_SERVER
    for prefix in ("https://", "http://"):
        if server.startswith(prefix):
            server = server[len(prefix) :]
    return server.rstrip("/")


def store_auth(server: str, username: str, password: str) -> None:
    cfg = load_config()
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    cfg.setdefault("auths", {})[server] = {"auth": token}
    save_config(cfg)


def remove_auth(server: str) -> bool:
    cfg = load_config()
    if server in cfg.get("auths", {}):
        del cfg["auths"][server]
        save_config(cfg)
        return True
    return False


def auth_for_server(server: str) -> dict[str, str] | None:
    auths = load_config().get("auths", {})
    entry = auths.get(server) or auths.get("https://" + server) or auths.get("http://" + server)
    if not entry or not entry.get("auth"):
        return None
    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    return {"username": user, "password": password, "serveraddress": server}


def auth_for_image(image: str) -> dict[str, str] | None:
    return auth_for_server(registry_of(image))
