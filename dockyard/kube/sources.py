"""What `kube generate` reads: compose projects, pods and containers, through the Engine API (and the
libpod pod paths), for the CLI and for the daemon's `GET /libpod/generate/kube` alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dockyard.client import APIClient, APIError
from dockyard.kube import generate as gen


class SourceError(Exception):
    pass


COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"


def project(client: APIClient, name: str, g: gen.Generated) -> None:
    from dockyard.compose.convert import L_FILES, L_WORKDIR
    from dockyard.compose.errors import ComposeError
    from dockyard.compose.loader import Options, load

    ctrs = client.containers(all=True, filters={"label": [f"{COMPOSE_PROJECT}={name}"]})
    if not ctrs:
        raise SourceError(f"no containers of compose project {name!r}")
    labels = ctrs[0].get("Labels") or {}
    files = [f for f in (labels.get(L_FILES) or "").split(",") if f]
    try:
        if not files or not all(Path(f).exists() for f in files):
            raise ComposeError(f"its compose files ({', '.join(files) or 'none recorded'}) are not readable here")
        project = load(Options(files=files, project_name=name, project_directory=labels.get(L_WORKDIR)))
        env_files = gen.env_files_of(project)
        for svc_name, svc in project.services.items():
            if env_files.get(svc_name):
                svc["x-env-files"] = env_files[svc_name]
        def image_ports(ref: str) -> list[str]:
            try:
                return list((client.inspect_image(ref).get("Config") or {}).get("ExposedPorts") or {})
            except APIError:
                return []

        gen.from_project(project, g, image_ports)
        return
    except (ComposeError, OSError) as e:
        g.note(f"project {name}: {e}; generated from its containers (configs, secrets, init containers "
               "and start order are not known from containers)")
    by_service: dict[str, list[dict[str, Any]]] = {}
    for c in ctrs:
        by_service.setdefault((c.get("Labels") or {}).get(COMPOSE_SERVICE) or c["Names"][0].lstrip("/"), []).append(c)
    for svc_name, members in sorted(by_service.items()):
        info = client.inspect_container(members[0]["Id"])
        svc = gen.service_of_container(info, _image_config(client, info))
        gen.pod_manifest(g, svc_name, [(svc_name, svc)], kind="deployment", replicas=len(members))


def _image_config(client: APIClient, info: dict[str, Any]) -> dict[str, Any] | None:
    try:
        cfg: dict[str, Any] = client.inspect_image(info["Image"]).get("Config") or {}
        return cfg
    except APIError:
        return None


def pod_or_container(client: APIClient, ref: str, kind: str, g: gen.Generated) -> None:
    try:
        pod = client.inspect_pod(ref)
    except APIError as e:
        if e.status not in (404, 400):
            raise
        pod = None
    if pod is not None:
        infra = pod.get("InfraContainerID")
        members = []
        for c in pod.get("Containers") or []:
            if c["Id"] == infra:
                continue
            info = client.inspect_container(c["Id"])
            members.append((info["Name"].lstrip("/"), gen.service_of_container(info, _image_config(client, info))))
        if not members:
            raise SourceError(f"pod {ref} has no containers to generate")
        extra = []
        for key, binds in ((pod.get("InfraConfig") or {}).get("PortBindings") or {}).items():
            port, _, proto = key.partition("/")
            for b in binds or []:
                if b.get("HostIp") not in (None, "", "0.0.0.0", "::"):
                    g.note(f"pod {pod['Name']}: host address {b['HostIp']} of port {b.get('HostPort')} not "
                           "expressed: a LoadBalancer listens where the cluster puts it")
                extra.append({"port": int(port), "protocol": (proto or "tcp").upper(),
                              "published": b.get("HostPort") or port, "host_ip": b.get("HostIp")})
        gen.pod_manifest(g, pod["Name"], members, kind=kind, hostname=pod.get("Hostname"), extra_ports=extra)
        return
    info = client.inspect_container(ref)
    name = info["Name"].lstrip("/")
    gen.pod_manifest(g, name, [(name, gen.service_of_container(info, _image_config(client, info)))], kind=kind)
