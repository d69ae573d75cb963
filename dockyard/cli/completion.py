"""`dockyard completion bash|zsh|fish`: shell completion of commands, flags and, from the daemon, names.

The scripts are thin: the shell hands the words typed so far to `dockyard __complete`, which walks our own
parser (so completion can never disagree with it) and asks the daemon for container, image, network or
volume names where the command takes one.
"""

from __future__ import annotations

import argparse
import sys

from dockyard.cli.common import Command, Ctx

BASH = r"""# dockyard completion for bash: source <(dockyard completion bash)
_dockyard() {
    local IFS=$'\n'
    COMPREPLY=( $(dockyard __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null) )
}
complete -o default -o nospace -F _dockyard dockyard 2>/dev/null || complete -o default -F _dockyard dockyard
"""

ZSH = r"""#compdef dockyard
# dockyard completion for zsh: source <(dockyard completion zsh)
_dockyard() {
    local -a candidates
    candidates=("${(@f)$(dockyard __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    compadd -Q -a candidates
}
compdef _dockyard dockyard
"""

FISH = r"""# dockyard completion for fish: dockyard completion fish | source
function __dockyard_complete
    set -l tokens (commandline -opc) (commandline -ct)
    dockyard __complete $tokens[2..-1] 2>/dev/null
end
complete -c dockyard -f -a '(__dockyard_complete)'
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}

# The kind of name a command's first argument is (its later ones too, unless said otherwise).
_CONTAINER = {"start", "stop", "restart", "kill", "rm", "pause", "unpause", "rename", "wait", "diff", "export",
              "cp", "top", "stats", "port", "update", "commit", "logs", "attach", "exec", "inspect", "explain",
              "trace", "container start", "container stop", "container restart", "container kill", "container rm",
              "container pause", "container unpause", "container rename", "container wait", "container diff",
              "container export", "container cp", "container top", "container stats", "container port",
              "container update", "container commit", "container logs", "container attach", "container exec",
              "container inspect"}
_IMAGE = {"run", "create", "pull", "push", "tag", "rmi", "save", "history", "container run", "container create",
          "image rm", "image inspect", "image history", "image push", "image pull", "image save", "image tag"}
_NETWORK = {"network rm", "network inspect", "network connect", "network disconnect"}
_VOLUME = {"volume rm", "volume inspect"}


def names(ctx: Ctx, kind: str) -> list[str]:
    """Names of the daemon's objects of a kind; none when the daemon cannot be reached."""
    from dockyard.cli.common import CLIError
    from dockyard.client import APIError, ConnectError

    try:
        c = ctx.client
        if kind == "container":
            return [n.lstrip("/") for x in c.containers(all=True) for n in (x.get("Names") or [])[:1]]
        if kind == "image":
            return [t for x in c.images() for t in (x.get("RepoTags") or []) if t != "<none>:<none>"]
        if kind == "network":
            return [x["Name"] for x in c.networks()]
        return [x["Name"] for x in c.volumes().get("Volumes") or []]
    except (APIError, ConnectError, CLIError, OSError):
        return []


def candidates(words: list[str], ctx: Ctx) -> list[str]:
    """What may come next, given the words after `dockyard` (the last one being typed)."""
    from dockyard.cli.main import _WORD_MODULES, build_parser

    current = words[-1] if words else ""
    before = words[:-1]
    parser = build_parser(next((w for w in before if w in _WORD_MODULES), None))
    for flag, value in zip(before, before[1:], strict=False):
        if flag in ("-H", "--host"):
            ctx.host = value  # names come from the daemon the command line names
        elif flag in ("-c", "--context"):
            ctx.context = value
    path: list[str] = []
    positionals = 0
    skip = False
    for w in before:
        if skip:
            skip = False
            continue
        if w.startswith("-"):
            action = parser._option_string_actions.get(w.split("=", 1)[0])
            skip = action is not None and action.nargs != 0 and "=" not in w
            continue
        sub = parser._subcommands() if positionals == 0 else None
        if sub is not None and w in sub.choices:
            parser = sub.choices[w]
            path.append(w)
            continue
        positionals += 1
    if current.startswith("-"):
        out = [o for a in parser._actions if a.help != argparse.SUPPRESS for o in a.option_strings]
    else:
        sub = parser._subcommands()
        if sub is not None and positionals == 0:
            out = [n for n in sub.choices if not n.startswith("_")]
        else:
            key = " ".join(path)
            kind = ("container" if key in _CONTAINER else "image" if key in _IMAGE else
                    "network" if key in _NETWORK else "volume" if key in _VOLUME else None)
            if key in ("network connect", "network disconnect") and positionals >= 1:
                kind = "container"
            if key in ("run", "create", "container run", "container create") and positionals >= 1:
                kind = None  # the command to run inside: the shell's own completion
            out = names(ctx, kind) if kind else []
    return sorted(x for x in set(out) if x.startswith(current))


def cmd_complete(ctx: Ctx, args: argparse.Namespace) -> int:
    for c in candidates(list(args.args), ctx):
        print(c)
    return 0


def setup_complete(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs=argparse.REMAINDER, help="The words typed so far")


def cmd_completion(ctx: Ctx, args: argparse.Namespace) -> int:
    sys.stdout.write(SCRIPTS[args.shell])
    return 0


def setup_completion(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=sorted(SCRIPTS), help="The shell to print the completion script for")


COMMANDS = [
    Command("completion", cmd_completion, setup_completion,
            help="Print a shell completion script (bash, zsh or fish) that completes names from the daemon"),
    Command("__complete", cmd_complete, setup_complete, help="What the completion scripts ask for (internal)"),
]
