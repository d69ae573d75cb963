"""`dockyard rootless setup [--apply]`: what rootless mode (issue 17) needs on this host, and what is missing.

Run as the user who will run the daemon. Without --apply it changes nothing and prints the commands
(sudo for the packages, the subordinate ids and the device); with --apply it runs them through sudo
(as root, directly). Exit status 1 while something required is missing."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess

from dockyard.cli.common import Command, Ctx


def setup_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--apply", action="store_true", help="run the fixes (through sudo) instead of printing them")
    p.add_argument("--user", help="the user to check (default: you; needs root for another)")


def cmd_setup(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.util import rootless

    if os.geteuid() == 0 and not args.user:
        print("note: you are root; rootless mode is for the user who will run the daemon "
              "(run this as that user, or pass --user NAME)")
    checks = rootless.checks(args.user)
    width = max(len(c.name) for c in checks)
    for c in checks:
        mark = "ok" if c.ok else ("MISSING" if c.required else "note")
        print(f"{c.name:<{width}}  {mark:<7}  {c.detail}")
    fixes: list[str] = []  # what --apply runs: the required ones only
    for c in checks:
        if c.fix and not c.ok and c.required and c.fix not in fixes:
            fixes.append(c.fix)
    optional = [c.fix for c in checks if c.fix and not c.ok and not c.required]
    if optional:
        print("\noptional (not applied by --apply):")
        for f in optional:
            print(f"  {f}")
    missing = [c for c in checks if c.required and not c.ok]
    if not fixes:
        print("\nrootless mode is ready: run `dockyard daemon` as this user; our CLI finds its socket, the docker "
              "CLI needs:\n  export DOCKER_HOST=unix://$XDG_RUNTIME_DIR/dockyard.sock")
        return 0
    if not args.apply:
        print("\nto fix (or run `dockyard rootless setup --apply`):")
        for f in fixes:
            print(f"  {f}")
        return 1 if missing else 0
    for f in fixes:
        argv = shlex.split(f)
        if argv and argv[0] == "sudo" and os.geteuid() == 0:
            argv = argv[1:]
        print(f"+ {' '.join(argv)}", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if subprocess.run(argv, env=env).returncode != 0:
            print(f"dockyard rootless setup: failed: {f}")
            return 1
    still = [c for c in rootless.checks(args.user) if c.required and not c.ok]
    for c in still:
        print(f"still missing: {c.name}: {c.detail}")
    return 1 if still else 0


COMMANDS = [Command("setup", cmd_setup, setup_setup, group="rootless", top=False,
                    help="Check (and with --apply, fix) what rootless mode needs (Dockyard only)")]
