"""One function per instruction that changes only the image config (moby's dispatchers.go): the
builder's steps and `commit`/`import --change` (moby's BuildFromConfig) go through the same table.

RUN, COPY, ADD, FROM and ARG touch more than the config and stay with the builder.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dockyard.dockerfile.parser import (
    EXPANDED,
    Instruction,
    ParseError,
    expand_word,
    expand_words,
    fields,
    name_values,
    parse,
)
from dockyard.errors import InvalidParameter

DEFAULT_SHELL = ["/bin/sh", "-c"]


@dataclass
class ConfigState:
    """What a dispatcher changes: the config (the image config's `config`), the variables `$X`
    sees (ARGs, then ENV), and whether this stage set CMD (an ENTRYPOINT then keeps it)."""

    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    escape: str = "\\"
    cmd_set: bool = False

    def expand(self, inst: Instruction, s: str) -> str:
        return expand_word(s, self.env, self.escape, inst.line) if inst.cmd in EXPANDED else s

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)


# A dispatcher applies the instruction and returns the history text (`#(nop)  <text>`).
Dispatcher = Callable[[ConfigState, Instruction], str]


def env(st: ConfigState, inst: Instruction) -> str:
    envl = list(st.config.get("Env") or [])
    pairs = name_values(inst, st.escape)
    for k, v in pairs:
        val = st.expand(inst, v)
        envl = [e for e in envl if e.partition("=")[0] != k] + [f"{k}={val}"]
        st.env[k] = val
    st.config["Env"] = envl
    return "ENV " + " ".join(envl[-len(pairs):])


def label(st: ConfigState, inst: Instruction) -> str:
    labels = dict(st.config.get("Labels") or {})
    for k, v in name_values(inst, st.escape):
        labels[st.expand(inst, k)] = st.expand(inst, v)
    st.config["Labels"] = labels
    return "LABEL " + inst.rest


def _command(st: ConfigState, inst: Instruction, key: str) -> str:
    ja = inst.json_args
    val = ja if ja is not None else [*st.shell, inst.rest]
    st.config[key] = val
    return f"{key.upper()} {json.dumps(val)}"


def cmd(st: ConfigState, inst: Instruction) -> str:
    st.cmd_set = True
    return _command(st, inst, "Cmd")


def entrypoint(st: ConfigState, inst: Instruction) -> str:
    text = _command(st, inst, "Entrypoint")
    if not st.cmd_set:
        st.config["Cmd"] = None  # an inherited CMD does not survive a new ENTRYPOINT (Docker's rule)
    return text


def expose(st: ConfigState, inst: Instruction) -> str:
    ports = dict(st.config.get("ExposedPorts") or {})
    for p in expand_words(inst.rest, st.env, st.escape, inst.line):
        ports[p if "/" in p else p + "/tcp"] = {}
    st.config["ExposedPorts"] = ports
    return "EXPOSE " + " ".join(sorted(ports))


def volume(st: ConfigState, inst: Instruction) -> str:
    vols = dict(st.config.get("Volumes") or {})
    for v in fields(inst):
        vols[st.expand(inst, v)] = {}
    st.config["Volumes"] = vols
    return "VOLUME " + json.dumps(list(vols))


def workdir(st: ConfigState, inst: Instruction) -> str:
    wd = st.expand(inst, inst.rest)
    if not wd.startswith("/"):
        wd = os.path.join(st.config.get("WorkingDir") or "/", wd)
    wd = os.path.normpath(wd)
    st.config["WorkingDir"] = wd
    return "WORKDIR " + wd


def user(st: ConfigState, inst: Instruction) -> str:
    name = st.config["User"] = st.expand(inst, inst.rest)
    return "USER " + name


def stopsignal(st: ConfigState, inst: Instruction) -> str:
    sig = st.config["StopSignal"] = st.expand(inst, inst.rest)
    return "STOPSIGNAL " + sig


def shell(st: ConfigState, inst: Instruction) -> str:
    st.config["Shell"] = inst.json_args
    return "SHELL " + json.dumps(inst.json_args)


def healthcheck(st: ConfigState, inst: Instruction) -> str:
    st.config["Healthcheck"] = _healthcheck(inst, st.shell)
    return "HEALTHCHECK " + json.dumps(st.config["Healthcheck"])


def onbuild(st: ConfigState, inst: Instruction) -> str:
    st.config["OnBuild"] = [*(st.config.get("OnBuild") or []), inst.rest]
    return "ONBUILD " + inst.rest


def maintainer(st: ConfigState, inst: Instruction) -> str:
    return "MAINTAINER " + inst.rest  # the builder records it as the image's author


DISPATCH: dict[str, Dispatcher] = {
    "env": env, "label": label, "cmd": cmd, "entrypoint": entrypoint, "expose": expose, "volume": volume,
    "workdir": workdir, "user": user, "stopsignal": stopsignal, "shell": shell, "healthcheck": healthcheck,
    "onbuild": onbuild, "maintainer": maintainer,
}

# What `--change` may say (moby's validCommitCommands, less HEALTHCHECK which Dockyard never took there).
CHANGE_COMMANDS = ("cmd", "entrypoint", "env", "expose", "label", "onbuild", "stopsignal", "user", "volume", "workdir")


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Apply `--change` lines (`commit`, `import`) to a container config, through the builder's
    dispatchers; `$X` sees the config's own Env."""
    st = ConfigState(dict(config))
    for e in st.config.get("Env") or []:
        k, _, v = e.partition("=")
        st.env[k] = v
    for line in (ln.strip() for ch in changes for ln in ch.splitlines()):
        if not line or line.startswith("#"):
            continue
        word = line.split(None, 1)[0].lower()
        if word not in CHANGE_COMMANDS:
            raise InvalidParameter(f"{word} is not a valid change command")
        try:  # the line parsed as the one instruction of a stage: line 2 of that, line 1 of the user's
            inst = parse(f"FROM scratch\n{line}").stages[0].instructions[0]
            DISPATCH[inst.cmd](st, inst)
        except ParseError as e:
            raise InvalidParameter(e.message.replace("parse error line 2:", "parse error line 1:", 1)) from None
    return st.config


_UNITS = {"ns": 1, "us": 1000, "ms": 1000_000, "s": 1000_000_000, "m": 60_000_000_000, "h": 3600_000_000_000}


def _duration(s: str) -> int:
    total = 0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", s):
        total += int(float(num) * _UNITS[unit])
    if not total and s not in ("0", "0s"):
        raise InvalidParameter(f"time: invalid duration {s!r}")
    return total


def _healthcheck(inst: Instruction, shell: list[str]) -> dict[str, Any]:
    kind, _, rest = inst.rest.partition(" ")
    if kind.upper() == "NONE":
        return {"Test": ["NONE"]}
    hc: dict[str, Any] = {}
    tmp = Instruction("cmd", rest.strip(), inst.line, rest)
    ja = tmp.json_args
    hc["Test"] = ["CMD", *ja] if ja is not None else ["CMD-SHELL", rest.strip()]
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                      ("start-interval", "StartInterval")):
        if inst.flags.get(flag):
            hc[key] = _duration(str(inst.flags[flag]))
    if inst.flags.get("retries"):
        hc["Retries"] = int(str(inst.flags["retries"]))
    return hc
