"""`dockyard kube generate|play|down` (dockyard/kube/ does the work)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dockyard.cli.common import CLIError, Command, Ctx

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"


def _project(ctx: Ctx, name: str, g: Any) -> None:
    from dockyard.compose.convert import L_FILES, L_WORKDIR
    from dockyard.compose.errors import ComposeError
    from dockyard.compose.loader import Options, load
    from dockyard.kube import generate as gen

    ctrs = ctx.client.containers(all=True, filters={"label": [f"{COMPOSE_PROJECT}={name}"]})
    if not ctrs:
        raise CLIError(f"Error: no containers of compose project {name!r}", 125)
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
        gen.from_project(project, g)
        return
    except (ComposeError, OSError) as e:
        g.note(f"project {name}: {e}; generated from its containers (configs, secrets, init containers "
               "and start order are not known from containers)")
    by_service: dict[str, list[dict[str, Any]]] = {}
    for c in ctrs:
        by_service.setdefault((c.get("Labels") or {}).get(COMPOSE_SERVICE) or c["Names"][0].lstrip("/"), []).append(c)
    for svc_name, members in sorted(by_service.items()):
        info = ctx.client.inspect_container(members[0]["Id"])
        svc = gen.service_of_container(info, _image_config(ctx, info))
        gen.pod_manifest(g, svc_name, [(svc_name, svc)], kind="deployment", replicas=len(members))


def _image_config(ctx: Ctx, info: dict[str, Any]) -> dict[str, Any] | None:
    from dockyard.client import APIError

    try:
        cfg: dict[str, Any] = ctx.client.inspect_image(info["Image"]).get("Config") or {}
        return cfg
    except APIError:
        return None


def _pod_or_container(ctx: Ctx, ref: str, kind: str, g: Any) -> None:
    from dockyard.client import APIError
    from dockyard.kube import generate as gen

    try:
        pod = ctx.client.inspect_pod(ref)
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
            info = ctx.client.inspect_container(c["Id"])
            members.append((info["Name"].lstrip("/"), gen.service_of_container(info, _image_config(ctx, info))))
        if not members:
            raise CLIError(f"Error: pod {ref} has no containers to generate", 125)
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
    info = ctx.client.inspect_container(ref)
    name = info["Name"].lstrip("/")
    gen.pod_manifest(g, name, [(name, gen.service_of_container(info, _image_config(ctx, info)))], kind=kind)


def cmd_kube_generate(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.kube.generate import Generated

    if not args.project and not args.names:
        raise CLIError("Error: name a container, a pod or a compose project (-p NAME)", 125)
    g = Generated()
    for p in args.project:
        _project(ctx, p, g)
    for ref in args.names:
        _pod_or_container(ctx, ref, args.type, g)
    if args.registry:
        from dockyard.kube.push import push_and_pin

        for note in push_and_pin(ctx.client, g.docs, args.registry):
            g.note(note)
    for note in g.notes:
        print(f"WARNING: {note}", file=sys.stderr)
    text = g.yaml()
    if args.filename:
        Path(args.filename).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def setup_kube_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--project", action="append", default=[],
                   help="A compose project (running here) to generate: Deployments, Services, claims ...")
    p.add_argument("-t", "--type", choices=["pod", "deployment"], default="pod",
                   help="What a container or pod becomes: a Pod or a Deployment")
    p.add_argument("-f", "--filename", help="Write the YAML to this file, not to standard output")
    p.add_argument("--registry", help="Push the images to this registry and pin their references by digest")
    p.add_argument("names", nargs="*", help="Containers and pods")


def _read(path: str) -> str:
    return sys.stdin.read() if path == "-" else Path(path).read_text()


def cmd_kube_play(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.kube.play import Player, PlayError, load, plan

    try:
        p = plan(load(_read(args.file)))
        report = Player(ctx.client, network=args.network, replace=args.replace).play(p)
    except PlayError as e:
        raise CLIError(f"Error: kube play: {e}", 125) from None
    for note in p.notes:
        print(f"WARNING: {note}", file=sys.stderr)
    for pod, ctrs in report.items():
        print("Pod:")
        print(pod)
        print("Containers:")
        for c in ctrs:
            print(c)
        print()
    return 0


def setup_kube_play(p: argparse.ArgumentParser) -> None:
    p.add_argument("--replace", action="store_true", help="Remove the file's pods first if they exist")
    p.add_argument("--network", default="dockyard-kube", help="The network the pods join (made if missing)")
    p.add_argument("file", help="The YAML file, or - for standard input")


def cmd_kube_down(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.kube.play import Player, PlayError, load, plan

    try:
        p = plan(load(_read(args.file)))
    except PlayError as e:
        raise CLIError(f"Error: kube down: {e}", 125) from None
    gone = Player(ctx.client, network=args.network).down(p)
    if gone:
        print("Pods stopped and removed:")
        for name in gone:
            print(name)
    return 0


def setup_kube_down(p: argparse.ArgumentParser) -> None:
    p.add_argument("--network", default="dockyard-kube", help="The network kube play used")
    p.add_argument("file", help="The YAML file kube play ran, or - for standard input")


K = "kube"
COMMANDS = [
    Command("generate", cmd_kube_generate, setup_kube_generate, K, top=False,
            help="Generate Kubernetes YAML from containers, pods or compose projects"),
    Command("play", cmd_kube_play, setup_kube_play, K, top=False, help="Run the pods a Kubernetes YAML describes"),
    Command("down", cmd_kube_down, setup_kube_down, K, top=False, help="Remove what kube play of a YAML made"),
]
