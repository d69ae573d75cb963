"""`dockyard kube generate|play|down` (dockyard/kube/ does the work)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dockyard.cli.common import CLIError, Command, Ctx


def cmd_kube_generate(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.kube.generate import Generated
    from dockyard.kube.sources import SourceError, pod_or_container, project

    if not args.project and not args.names:
        raise CLIError("Error: name a container, a pod or a compose project (-p NAME)", 125)
    g = Generated()
    try:
        for p in args.project:
            project(ctx.client, p, g)
        for ref in args.names:
            pod_or_container(ctx.client, ref, args.type, g)
    except SourceError as e:
        raise CLIError(f"Error: {e}", 125) from None
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
