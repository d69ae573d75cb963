"""Parity: one compose project brought up by `dockyard compose` on Dockyard and on the real dockerd
leaves the same containers, labels (Compose v2's), networks and volumes on both."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker

ROOT = Path(__file__).resolve().parents[2]
LOOP = "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"

PROJECT = f"""
include:
  - lib/cache.yaml
services:
  db:
    image: busybox
    command: ["sh", "-c", "touch /data/ready; {LOOP}"]
    healthcheck: {{test: ["CMD", "test", "-f", "/data/ready"], interval: 1s, retries: 60}}
    volumes: [dbdata:/data]
    networks: [back]
    secrets: [dbpass]
    stop_grace_period: 2s
  web:
    image: busybox
    command: ["sh", "-c", "{LOOP}"]
    depends_on: {{db: {{condition: service_healthy}}}}
    networks: {{front: {{aliases: [www]}}, back: {{}}}}
    expose: ["80"]
    labels: {{tier: web}}
    environment: {{MODE: "${{MODE:-prod}}"}}
    restart: unless-stopped
  worker:
    image: busybox
    command: ["sh", "-c", "{LOOP}"]
    depends_on: [db, cache]
    networks: [back, default]
    volumes: ["dbdata:/data:ro", "./conf:/conf"]
    deploy: {{replicas: 2}}
  debug:
    image: busybox
    profiles: [debug]
networks:
  front: {{labels: {{purpose: front}}}}
  back: {{}}
volumes:
  dbdata: {{labels: {{keep: "yes"}}}}
secrets:
  dbpass: {{file: ./dbpass.txt}}
"""

CACHE = f"""
services:
  cache:
    image: busybox
    command: ["sh", "-c", "{LOOP}"]
"""


def compose(host: str, directory: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": host, "PYTHONPATH": str(ROOT)}
    env.pop("COMPOSE_PROJECT_NAME", None)
    p = subprocess.run([sys.executable, "-m", "dockyard.compose", "-p", name, *args], cwd=directory, env=env,
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, f"compose {' '.join(args)} on {host} -> {p.returncode}\n{p.stderr}"
    return p


def inventory(host: str, name: str) -> dict[str, Any]:
    """What the project left on an engine, minus what differs by nature (ids, data roots, timestamps)."""
    client = docker.DockerClient(base_url=host)
    try:
        ctrs = {}
        for c in client.containers.list(all=True, filters={"label": f"com.docker.compose.project={name}"}):
            a = c.attrs
            img = client.images.get("busybox")
            # The two engines' busybox differ (the peers' carries a label): the image's own labels go.
            labels = {k: v for k, v in a["Config"]["Labels"].items()
                      if k not in (img.attrs["Config"].get("Labels") or {})}
            assert labels.pop("com.docker.compose.image") == img.id  # v2 writes the image's ID
            nets = a["NetworkSettings"]["Networks"]
            ctrs[a["Name"].lstrip("/")] = {
                "labels": labels, "state": a["State"]["Status"], "cmd": a["Config"]["Cmd"],
                "env": sorted(e for e in a["Config"]["Env"] or [] if not e.startswith("PATH=")),
                "healthcheck": a["Config"].get("Healthcheck"), "restart": a["HostConfig"]["RestartPolicy"]["Name"],
                "exposed": sorted(a["Config"].get("ExposedPorts") or {}),
                # The daemon adds the short id to the aliases; compose's own are the service name and its list.
                "networks": {n: sorted(set(v.get("Aliases") or []) - {c.id[:12]}) for n, v in nets.items()},
                "mounts": sorted((m["Type"], m.get("Name") if m["Type"] == "volume" else m["Source"],
                                  m["Destination"], m["RW"]) for m in a["Mounts"]),
            }
        nets = {n.name: {"labels": n.attrs["Labels"], "driver": n.attrs["Driver"],
                         "containers": len(n.attrs.get("Containers") or {})}
                for n in (client.networks.get(n.id) for n in
                          client.networks.list(filters={"label": f"com.docker.compose.project={name}"}))}
        vols = {v.name: {"labels": v.attrs["Labels"], "driver": v.attrs["Driver"]}
                for v in client.volumes.list(filters={"label": f"com.docker.compose.project={name}"})}
        return {"containers": ctrs, "networks": nets, "volumes": vols}
    finally:
        client.close()


def test_same_project_same_result_on_both_engines(daemon: Any, real_dockerd: str, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(PROJECT)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "cache.yaml").write_text(CACHE)
    (tmp_path / "conf").mkdir()
    (tmp_path / "dbpass.txt").write_text("pw")
    name = "par" + secrets.token_hex(4)
    engines = {"dockyard": str(daemon.host), "dockerd": real_dockerd}
    try:
        seen = {}
        for engine, host in engines.items():
            compose(host, tmp_path, name, "up", "-d")
            seen[engine] = inventory(host, name)
        ours, theirs = seen["dockyard"], seen["dockerd"]
        assert sorted(ours["containers"]) == sorted(f"{name}-{s}" for s in (
            "cache-1", "db-1", "web-1", "worker-1", "worker-2"))
        for key in ("containers", "networks", "volumes"):
            for n in sorted(set(ours[key]) | set(theirs[key])):
                a, b = ours[key].get(n) or {}, theirs[key].get(n) or {}
                assert {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)} == {}, (key, n)
        web = ours["containers"][f"{name}-web-1"]
        assert web["labels"]["com.docker.compose.depends_on"] == "db:service_healthy:false"
        assert web["networks"] == {f"{name}_back": [f"{name}-web-1", "web"],
                                   f"{name}_front": [f"{name}-web-1", "web", "www"]}
        assert ours["networks"][f"{name}_front"]["labels"] == {
            "purpose": "front", "com.docker.compose.network": "front",
            "com.docker.compose.project": name, "com.docker.compose.version": "2.29.7"}
        assert ours["volumes"][f"{name}_dbdata"]["labels"]["keep"] == "yes"

        # A recreate carries v2's replace label (the replaced container's id) on both engines.
        for host in engines.values():
            client = docker.DockerClient(base_url=host)
            try:
                old = client.containers.get(f"{name}-web-1").id
                compose(host, tmp_path, name, "up", "-d", "--no-deps", "--force-recreate", "web")
                assert client.containers.get(f"{name}-web-1").labels["com.docker.compose.replace"] == old
            finally:
                client.close()
    finally:
        for host in engines.values():
            try:
                compose(host, tmp_path, name, "down", "-v", "-t", "1")
            except AssertionError:
                pass
